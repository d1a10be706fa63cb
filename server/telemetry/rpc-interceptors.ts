import { Code, ConnectError, type Interceptor, type StreamResponse } from "@connectrpc/connect";
import { codeToString, parseTimeout as parseConnectTimeout } from "@connectrpc/connect/protocol-connect";
import { parseTimeout as parseGrpcTimeout } from "@connectrpc/connect/protocol-grpc";
import {
  type Attributes,
  type Context,
  context,
  propagation,
  SpanKind,
  SpanStatusCode,
  type TextMapGetter,
  type TextMapSetter,
  type Tracer,
  trace,
} from "@opentelemetry/api";
import { ApprovalService } from "../../gen/countersign/v1/approval_service_pb.js";
import { callerKey } from "../services/caller.js";
import { peerKey } from "../transport/peer.js";
import type { Metrics } from "./metrics.js";

/** Span attribute naming the approval a span is about. */
export const approvalIdAttribute = "countersign.approval_id";

/** The status code label of an RPC outcome: `ok`, or Connect's name of the code (`permission_denied`, …). */
export function codeLabel(err: unknown): string {
  if (err === undefined) return "ok";
  return codeToString(ConnectError.from(err).code);
}

/** The status codes that count as server errors (5xx in Connect's HTTP mapping). */
export const serverErrorCodes: readonly string[] = [
  "unknown",
  "internal",
  "unimplemented",
  "unavailable",
  "data_loss",
  "deadline_exceeded",
];

const headerGetter: TextMapGetter<Headers> = {
  keys: (h) => [...h.keys()],
  get: (h, key) => h.get(key) ?? undefined,
};
const headerSetter: TextMapSetter<Headers> = { set: (h, key, value) => h.set(key, value) };

/** The `id` of a unary request message, when it has one. */
function requestId(message: unknown): string | undefined {
  const id = (message as { id?: unknown } | undefined)?.id;
  return typeof id === "string" && id !== "" ? id : undefined;
}

/** The approval id of a response message that carries an approval. */
function responseApprovalId(message: unknown): string | undefined {
  const id = (message as { approval?: { id?: unknown } } | undefined)?.approval?.id;
  return typeof id === "string" && id !== "" ? id : undefined;
}

/** Re-yields `source`, each step in `ctx`, and calls `done` with the error (or undefined) at the end. */
async function* observeStream<T>(
  source: AsyncIterable<T>,
  ctx: Context | undefined,
  done: (err: unknown) => void,
): AsyncGenerator<T> {
  const it = source[Symbol.asyncIterator]();
  let failure: unknown;
  try {
    for (;;) {
      const step = ctx === undefined ? await it.next() : await context.with(ctx, () => it.next());
      if (step.done === true) return;
      yield step.value;
    }
  } catch (err) {
    failure = err;
    throw err;
  } finally {
    if (failure === undefined) await it.return?.();
    done(failure);
  }
}

/**
 * Server spans for every RPC, on both transports: the span is named `service/method`, is a child of the
 * caller's `traceparent` (Connect) or of instrumentation-grpc's server span (grpc-js), carries the
 * approval id, ends when a stream ends, and is the parent of the store calls and Slack calls it makes.
 */
export function createTracingInterceptor(tracer: Tracer): Interceptor {
  return (next) => async (req) => {
    const active = trace.getSpan(context.active());
    const parent =
      active === undefined
        ? propagation.extract(context.active(), req.header, headerGetter)
        : context.active();
    const attributes: Attributes = {
      "rpc.system": active === undefined ? "connect_rpc" : "grpc",
      "rpc.service": req.service.typeName,
      "rpc.method": req.method.name,
    };
    const id = req.stream ? undefined : requestId(req.message);
    if (id !== undefined) attributes[approvalIdAttribute] = id;
    const span = tracer.startSpan(
      `${req.service.typeName}/${req.method.name}`,
      { kind: active === undefined ? SpanKind.SERVER : SpanKind.INTERNAL, attributes },
      parent,
    );
    const ctx = trace.setSpan(parent, span);
    const end = (err: unknown) => {
      if (err !== undefined && !(req.signal.aborted && ConnectError.from(err).code === Code.Canceled)) {
        const ce = ConnectError.from(err);
        span.setAttribute("rpc.connect_rpc.error_code", codeToString(ce.code));
        span.setStatus({ code: SpanStatusCode.ERROR, message: ce.rawMessage });
      }
      span.end();
    };
    let res: Awaited<ReturnType<typeof next>>;
    try {
      res = await context.with(ctx, () => next(req));
    } catch (err) {
      end(err);
      throw err;
    }
    if (res.stream) {
      return { ...res, message: observeStream(res.message, ctx, end) } as StreamResponse;
    }
    const created = responseApprovalId(res.message);
    if (created !== undefined && id === undefined) span.setAttribute(approvalIdAttribute, created);
    end(undefined);
    return res;
  };
}

/**
 * Client spans for calls made through a Connect transport (the probe, the SDK, the Slack gateway): a
 * CLIENT span per call, whose context travels to the server in the `traceparent` header.
 */
export function createClientTracingInterceptor(tracer: Tracer): Interceptor {
  return (next) => async (req) => {
    const span = tracer.startSpan(`${req.service.typeName}/${req.method.name}`, {
      kind: SpanKind.CLIENT,
      attributes: {
        "rpc.system": "connect_rpc",
        "rpc.service": req.service.typeName,
        "rpc.method": req.method.name,
      },
    });
    const ctx = trace.setSpan(context.active(), span);
    propagation.inject(ctx, req.header, headerSetter);
    const end = (err: unknown) => {
      if (err !== undefined) span.setStatus({ code: SpanStatusCode.ERROR, message: String(err) });
      span.end();
    };
    try {
      const res = await context.with(ctx, () => next(req));
      if (res.stream)
        return { ...res, message: observeStream(res.message, undefined, end) } as StreamResponse;
      end(undefined);
      return res;
    } catch (err) {
      end(err);
      throw err;
    }
  };
}

/** An RPC refused with PERMISSION_DENIED or UNAUTHENTICATED, as the metrics interceptor reports it. */
export interface RefusedCall {
  /** `service/method`. */
  rpc: string;
  /** The caller's identity ("" without a certificate). */
  caller: string;
  /** The peer's remote address. */
  address: string;
  /** The approval the request named, if any. */
  approvalId?: string;
  /** The approver a SubmitDecision acted for. */
  approver?: string;
  /** The error the caller receives (its `cause` is the domain error). */
  error: ConnectError;
}

/** Options of `createMetricsInterceptor`. */
export interface MetricsInterceptorOptions {
  metrics: Metrics;
  /** Called for every ApprovalService call refused with PERMISSION_DENIED or UNAUTHENTICATED. */
  onRefused?: (call: RefusedCall) => void;
}

const create = ApprovalService.method.createApproval;
const submitDecision = ApprovalService.method.submitDecision;

/**
 * RPC metrics on both transports: every call by service, method and status code, the latency of unary
 * calls, create and decision processing latency, and open streams. Runs first, so it also sees calls
 * that the identity, admin and rate-limit interceptors refuse.
 */
export function createMetricsInterceptor(options: MetricsInterceptorOptions): Interceptor {
  const { metrics, onRefused } = options;
  const refused = (req: Parameters<Parameters<Interceptor>[0]>[0], err: unknown): void => {
    if (onRefused === undefined || req.service.typeName !== ApprovalService.typeName) return;
    const error = ConnectError.from(err);
    if (error.code !== Code.PermissionDenied && error.code !== Code.Unauthenticated) return;
    const message = req.stream ? undefined : (req.message as { id?: unknown; approver?: unknown });
    const approvalId = requestId(message);
    const approver = req.method === submitDecision ? message?.approver : undefined;
    onRefused({
      rpc: `${req.service.typeName}/${req.method.name}`,
      caller: req.contextValues.get(callerKey)?.identity ?? "",
      address: req.contextValues.get(peerKey).address,
      ...(approvalId === undefined ? {} : { approvalId }),
      ...(typeof approver === "string" && approver !== "" ? { approver } : {}),
      error,
    });
  };

  return (next) => async (req) => {
    const start = performance.now();
    const timeoutMs = requestTimeoutMs(req.header);
    const service = req.service.typeName;
    const method = req.method.name;
    let res: Awaited<ReturnType<typeof next>>;
    try {
      res = await next(req);
    } catch (err) {
      metrics.rpc(service, method, codeLabel(err), (performance.now() - start) / 1000);
      refused(req, err);
      throw err;
    }
    if (res.stream) {
      metrics.watchStreams(method, 1);
      const done = (err: unknown) => {
        metrics.watchStreams(method, -1);
        const code = err === undefined ? undefined : ConnectError.from(err).code;
        const cutShort = code === undefined || code === Code.Canceled || code === Code.DeadlineExceeded;
        const ended = cutShort ? endLabel(req.signal, start, timeoutMs) : undefined;
        metrics.rpc(service, method, ended ?? codeLabel(err));
        if (err !== undefined) refused(req, err);
      };
      return { ...res, message: observeStream(res.message, undefined, done) } as StreamResponse;
    }
    const seconds = (performance.now() - start) / 1000;
    metrics.rpc(service, method, "ok", seconds);
    if (req.method === create) metrics.createProcessed(seconds);
    else if (req.method === submitDecision) metrics.decideProcessed(seconds);
    return res;
  };
}

/** The client's timeout of a Connect, gRPC or gRPC-Web request, from its headers. */
function requestTimeoutMs(header: Headers): number | undefined {
  const grpc = header.get("grpc-timeout");
  if (grpc !== null) return parseGrpcTimeout(grpc, Number.MAX_SAFE_INTEGER).timeoutMs;
  return parseConnectTimeout(header.get("connect-timeout-ms"), Number.MAX_SAFE_INTEGER).timeoutMs;
}

/**
 * The code of a stream that ended without an error of its own, or was cancelled: `deadline_exceeded`
 * when the abort says so or the client's deadline has passed (a client closes its stream at its
 * deadline, often before the server's own timer fires), `canceled` when the client went away earlier,
 * `ok` otherwise.
 */
function endLabel(signal: AbortSignal, start: number, timeoutMs: number | undefined): string {
  if (signal.reason instanceof ConnectError && signal.reason.code === Code.DeadlineExceeded)
    return "deadline_exceeded";
  if (timeoutMs !== undefined && performance.now() - start >= timeoutMs - deadlineSlackMs)
    return "deadline_exceeded";
  return signal.aborted ? "canceled" : "ok";
}

/** How early before its deadline a client may close a stream and still be counted as timed out. */
const deadlineSlackMs = 50;
