import { randomUUID } from "node:crypto";
import type { MessageInitShape } from "@bufbuild/protobuf";
import {
  type Client,
  Code,
  ConnectError,
  createClient,
  type Interceptor,
  type Transport,
} from "@connectrpc/connect";
import {
  type ApprovalHandle,
  type CallOptions,
  createApprovalHandle,
  type WaitOptions,
} from "./approval-handle.js";
import { backoffDelay, type ReconnectOptions, reconnectPolicy, sleep } from "./backoff.js";
import { AbortedError, CountersignError, notApprovedError, UnavailableError } from "./errors.js";
import { AdminService } from "./gen/countersign/v1/admin_service_pb.js";
import { type Approval, State } from "./gen/countersign/v1/approval_pb.js";
import {
  ApprovalService,
  type CreateApprovalRequestSchema,
} from "./gen/countersign/v1/approval_service_pb.js";
import { createNodeTransport, type Protocol, type TlsOptions, withCallDefaults } from "./transport.js";

/** Options of `createCountersignClient`. */
export interface CountersignClientOptions {
  /**
   * The server's URL, e.g. `https://countersign.internal:8443`, or `http://127.0.0.1:8080` for the
   * development server. For `protocol: "grpc"`, the gRPC port. Required unless `transport` is given.
   */
  baseUrl?: string;
  /** The wire protocol. @default "connect" */
  protocol?: Protocol;
  /** TLS: the CA of the server's certificate and, for mutual TLS, the client's certificate and key. */
  tls?: TlsOptions;
  /** Headers sent with every call. */
  headers?: Record<string, string>;
  /** Deadline of every unary call, in milliseconds; 0 for none. Waits are not limited by it. @default 30000 */
  timeoutMs?: number;
  /** The admin token, sent as `authorization: Bearer <token>` on AdminService calls only. */
  adminToken?: string;
  /** HTTP version for `connect` and `grpc-web`. @default "2" for https, "1.1" for http */
  httpVersion?: "1.1" | "2";
  /** Connect interceptors run on every call (logging, tracing). */
  interceptors?: Interceptor[];
  /** How waits reconnect, and creates retry, after a broken connection. */
  reconnect?: ReconnectOptions;
  /**
   * A ready transport (e.g. `createRouterTransport` to call an in-process server); `baseUrl`, `protocol`,
   * `tls`, `httpVersion` and `interceptors` are then not used.
   */
  transport?: Transport;
}

/** What to ask approval for: the fields of `CreateApprovalRequest` (`action` and `title` are required). */
export type ApprovalRequest = MessageInitShape<typeof CreateApprovalRequestSchema>;

/** Options of `requestApproval`. */
export interface RequestOptions extends CallOptions {
  /**
   * Attempts at the create when the server is unavailable. Retrying is safe: every request carries an
   * idempotency key (yours, or a random one), so a retry never makes a second approval. @default 3
   */
  maxAttempts?: number;
}

/** Options of `requireApproval`. */
export interface RequireApprovalOptions extends WaitOptions {
  /** Called once the approval exists (with its id), before waiting. */
  onRequested?: (handle: RequestedApproval) => void;
}

/** A handle on an approval just requested, with the server's answer. */
export interface RequestedApproval extends ApprovalHandle {
  /** The approval as created (or, for a retried idempotent request, as it is now). */
  readonly approval: Approval;
  /** False when the idempotency key matched an approval that already existed. */
  readonly created: boolean;
}

/** A client of the Countersign API. */
export interface CountersignClient {
  /** The typed client of `countersign.v1.ApprovalService`; every method throws typed SDK errors. */
  readonly approvals: Client<typeof ApprovalService>;
  /** The typed client of `countersign.v1.AdminService` (needs `adminToken`). */
  readonly admin: Client<typeof AdminService>;
  /**
   * Asks for approval and returns a handle on it (`id`, `approval`, `waitForDecision()`, ...). The create
   * is retried on `UnavailableError`, under an idempotency key, so it is never made twice.
   * @throws InvalidArgumentError (with `fieldViolations`), PermissionDeniedError, AlreadyExistsError, ...
   */
  requestApproval(input: ApprovalRequest, options?: RequestOptions): Promise<RequestedApproval>;
  /** A handle on an existing approval (no call is made). */
  getHandle(id: string): ApprovalHandle;
  /**
   * Asks for approval and waits for the decision: resolves to the approval only when it is APPROVED.
   * Every other outcome, and every error, rejects — nothing but an approval ever resolves.
   * @throws ApprovalDeniedError, ApprovalExpiredError, ApprovalCancelledError (with `approval`, `approver`
   *   and `reason`) when it is not approved
   * @throws AbortedError, DeadlineExceededError when the wait is aborted or times out (the approval is
   *   left pending)
   * @throws any other RpcError of the create or the wait
   */
  requireApproval(input: ApprovalRequest, options?: RequireApprovalOptions): Promise<Approval>;
}

/**
 * Creates a client. The connection opens on the first call; HTTP/2 connections are kept alive with pings
 * while calls are open and close by themselves when idle, so there is nothing to close.
 * @throws TypeError for invalid options (no baseUrl, a URL that is not http(s), an unknown protocol, TLS
 *   settings on an http URL)
 */
export function createCountersignClient(options: CountersignClientOptions): CountersignClient {
  const reconnect = reconnectPolicy(options.reconnect);
  let inner = options.transport;
  if (inner === undefined) {
    if (options.baseUrl === undefined || options.baseUrl === "")
      throw new TypeError("createCountersignClient: baseUrl is required (or give a transport)");
    inner = createNodeTransport({
      baseUrl: options.baseUrl,
      ...(options.protocol === undefined ? {} : { protocol: options.protocol }),
      ...(options.tls === undefined ? {} : { tls: options.tls }),
      ...(options.httpVersion === undefined ? {} : { httpVersion: options.httpVersion }),
      ...(options.interceptors === undefined ? {} : { interceptors: options.interceptors }),
    });
  }
  const timeoutMs = options.timeoutMs ?? 30_000;
  if (!Number.isFinite(timeoutMs) || timeoutMs < 0)
    throw new TypeError(`timeoutMs must be a number of milliseconds ≥ 0, got ${String(options.timeoutMs)}`);
  const transport = withCallDefaults(inner, {
    target: options.baseUrl ?? "the server",
    ...(options.headers === undefined ? {} : { headers: options.headers }),
    ...(options.adminToken === undefined ? {} : { adminToken: options.adminToken }),
    ...(timeoutMs === 0 ? {} : { timeoutMs }),
  });
  const approvals = createClient(ApprovalService, transport);
  const admin = createClient(AdminService, transport);
  const context = { approvals, reconnect };

  const requestApproval = async (
    input: ApprovalRequest,
    requestOptions: RequestOptions = {},
  ): Promise<RequestedApproval> => {
    const { maxAttempts = 3, ...call } = requestOptions;
    const request: ApprovalRequest = {
      ...input,
      idempotencyKey:
        input.idempotencyKey === undefined || input.idempotencyKey === ""
          ? randomUUID()
          : input.idempotencyKey,
    };
    for (let attempt = 1; ; attempt++) {
      try {
        const response = await approvals.createApproval(request, call);
        const approval = response.approval;
        if (approval === undefined)
          throw new CountersignError(
            "the server answered CreateApproval without an approval (protocol violation)",
          );
        return { ...createApprovalHandle(context, approval.id), approval, created: response.created };
      } catch (err) {
        if (!(err instanceof UnavailableError) || attempt >= maxAttempts || call.signal?.aborted) throw err;
        await sleep(backoffDelay(attempt, reconnect), call.signal).catch(() => {
          throw new AbortedError(new ConnectError("the request for approval was aborted", Code.Canceled));
        });
      }
    }
  };

  return {
    approvals,
    admin,
    requestApproval,
    getHandle: (id) => createApprovalHandle(context, id),
    async requireApproval(input, requireOptions = {}) {
      const { onRequested, ...wait } = requireOptions;
      const handle = await requestApproval(input, wait.signal === undefined ? {} : { signal: wait.signal });
      onRequested?.(handle);
      const final = await handle.waitForDecision(wait);
      if (final.state === State.APPROVED) return final;
      throw (
        notApprovedError(final) ??
        new CountersignError(`approval ${final.id} ended in state ${State[final.state] ?? final.state}`)
      );
    },
  };
}
