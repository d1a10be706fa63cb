/**
 * The load a worker process generates: each job of `jobs.ts`, against a real server, through the real
 * clients. Latencies go into HDR histograms; stream arrival times are taken where the client library
 * hands over the message's bytes (grpc-js: its deserializer), so a slow decode in this process does not
 * count against the server.
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { State } from "../gen/countersign/v1/approval_pb.js";
import {
  ApprovalService,
  WatchApprovalRequestSchema,
  WatchApprovalResponseSchema,
} from "../gen/countersign/v1/approval_service_pb.js";
import { encodeHistogram, newHistogram, recordNs } from "./histogram.js";
import type {
  ClosedLoopJob,
  CreateManyJob,
  CreateManyResult,
  DecideAllJob,
  DecideAllResult,
  JobTarget,
  LoadResult,
  OpenLoopCreateJob,
  WatchJob,
  WatchResult,
} from "./jobs.js";
import {
  approveRequest,
  benchActions,
  benchApprovers,
  createRequest,
  createRequestBytes,
} from "./requests.js";
import { type BenchConnection, openConnection } from "./transports.js";

const now = () => process.hrtime.bigint();
const msToNs = (ms: number) => BigInt(Math.round(ms * 1e6));

/** After this many failures a load job stops early: the server is down, more would only spin. */
const maxErrors = 1_000;

/** A unique prefix for this process's idempotency keys and interaction ids. */
const runId = `${process.pid}-${Date.now().toString(36)}`;
let sequence = 0;
const nextKey = () => `${runId}-${sequence++}`;

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Opens `count` connections as `identity`; `closeAll` closes them. */
function connections(target: JobTarget, count: number, identity: "requester" | "decider") {
  const list = Array.from({ length: Math.max(1, count) }, () =>
    openConnection(target.target, target.protocol, target[identity]),
  );
  return {
    at: (i: number) => list[i % list.length] as BenchConnection,
    closeAll: () => {
      for (const c of list) c.close();
    },
  };
}

/** Runs a closed-loop job (see `ClosedLoopJob`). */
export async function runClosedLoop(target: JobTarget, job: ClosedLoopJob): Promise<LoadResult> {
  const requesters = connections(target, job.connections, "requester");
  const deciders =
    job.op === "decide" || job.op === "e2e" ? connections(target, job.connections, "decider") : undefined;
  const payload = new Uint8Array(createRequestBytes()).fill(42);
  const histogram = newHistogram();
  let count = 0;
  let errors = 0;
  let firstError: string | undefined;
  let lastDone = 0n;

  /** One operation; resolves with the duration to record, in ns. */
  const operation = async (caller: number): Promise<bigint> => {
    const requester = requesters.at(caller);
    switch (job.op) {
      case "echo": {
        const start = now();
        await requester.echo.echo({ payload });
        return now() - start;
      }
      case "create": {
        const start = now();
        await requester.approvals.createApproval(createRequest(benchActions.single, nextKey()));
        return now() - start;
      }
      case "decide": {
        const created = await requester.approvals.createApproval(
          createRequest(benchActions.single, nextKey()),
        );
        const id = created.approval?.id ?? "";
        const decider = (deciders as NonNullable<typeof deciders>).at(caller);
        const start = now();
        const res = await decider.approvals.submitDecision(approveRequest(id, benchApprovers[0], nextKey()));
        const took = now() - start;
        if (res.approval?.state !== State.APPROVED) throw new Error(`vote left ${id} not approved`);
        return took;
      }
      case "e2e": {
        const decider = (deciders as NonNullable<typeof deciders>).at(caller);
        const start = now();
        const created = await requester.approvals.createApproval(
          createRequest(benchActions.quorum, nextKey()),
        );
        const id = created.approval?.id ?? "";
        const abort = new AbortController();
        const stream = requester.approvals
          .watchApproval({ id }, { signal: abort.signal })
          [Symbol.asyncIterator]();
        try {
          const first = await stream.next();
          if (first.done === true) throw new Error(`watch of ${id} ended before its snapshot`);
          for (const approver of benchApprovers.slice(0, 2)) {
            await decider.approvals.submitDecision(approveRequest(id, approver, nextKey()));
          }
          for (;;) {
            const next = await stream.next();
            if (next.done === true) throw new Error(`watch of ${id} ended before the decision`);
            if (next.value.approval?.state === State.APPROVED) return now() - start;
          }
        } finally {
          abort.abort();
          await stream.return?.();
        }
      }
    }
  };

  const start = now();
  const measureFrom = start + msToNs(job.warmupMs);
  const end = measureFrom + msToNs(job.durationMs);
  await Promise.all(
    Array.from({ length: job.concurrency }, async (_, caller) => {
      for (let began = now(); began < end && errors < maxErrors; began = now()) {
        try {
          const took = await operation(caller);
          if (began >= measureFrom) {
            recordNs(histogram, took);
            count++;
            lastDone = now();
          }
        } catch (err) {
          if (began >= measureFrom) {
            errors++;
            firstError ??= message(err);
          }
        }
      }
    }),
  );
  requesters.closeAll();
  deciders?.closeAll();
  const elapsedNs = lastDone > measureFrom ? lastDone - measureFrom : msToNs(job.durationMs);
  return {
    histogram: encodeHistogram(histogram),
    count,
    errors,
    ...(firstError === undefined ? {} : { firstError }),
    elapsedMs: Number(elapsedNs) / 1e6,
  };
}

/**
 * Runs an open-loop create job: request i is due at start + i / rate, sent then whatever is still in
 * flight, and its latency counts from when it was due (no coordinated omission).
 */
export async function runOpenLoopCreate(target: JobTarget, job: OpenLoopCreateJob): Promise<LoadResult> {
  const pool = connections(target, 4, "requester");
  const histogram = newHistogram();
  const service = newHistogram();
  const intervalNs = 1e9 / job.ratePerSecond;
  const start = now();
  const measureFrom = start + msToNs(job.warmupMs);
  const end = measureFrom + msToNs(job.durationMs);
  let count = 0;
  let errors = 0;
  let firstError: string | undefined;
  const inFlight = new Set<Promise<void>>();
  const send = (i: number, due: bigint) => {
    const sent = now();
    const call = pool
      .at(i)
      .approvals.createApproval(createRequest(benchActions.single, nextKey()))
      .then(
        () => {
          if (due < measureFrom) return;
          const done = now();
          recordNs(histogram, done - due);
          recordNs(service, done - sent);
          count++;
        },
        (err: unknown) => {
          if (due < measureFrom) return;
          errors++;
          firstError ??= message(err);
        },
      )
      .finally(() => inFlight.delete(call));
    inFlight.add(call);
  };
  for (let i = 0; ; ) {
    const due = start + BigInt(Math.round(i * intervalNs));
    if (due >= end) break;
    const wait = Number(due - now()) / 1e6;
    if (wait > 1) await new Promise((resolve) => setTimeout(resolve, Math.floor(wait)));
    // Send everything due by now (after a late timer, several at once).
    for (let t = now(); ; i++) {
      const nextDue = start + BigInt(Math.round(i * intervalNs));
      if (nextDue > t || nextDue >= end) break;
      send(i, nextDue);
    }
  }
  await Promise.all(inFlight);
  pool.closeAll();
  return {
    histogram: encodeHistogram(histogram),
    serviceHistogram: encodeHistogram(service),
    count,
    errors,
    ...(firstError === undefined ? {} : { firstError }),
    elapsedMs: job.durationMs,
  };
}

/** Creates `job.count` pending approvals and returns their ids. */
export async function runCreateMany(target: JobTarget, job: CreateManyJob): Promise<CreateManyResult> {
  const pool = connections(target, 4, "requester");
  const ids: string[] = new Array(job.count);
  let next = 0;
  try {
    await Promise.all(
      Array.from({ length: Math.min(job.concurrency, job.count) }, async () => {
        for (let i = next++; i < job.count; i = next++) {
          const res = await pool.at(i).approvals.createApproval(createRequest(job.action, nextKey()));
          ids[i] = res.approval?.id ?? "";
        }
      }),
    );
  } finally {
    pool.closeAll();
  }
  return { ids };
}

/** Votes to approve each approval of `job.ids`; returns when each vote was sent. */
export async function runDecideAll(target: JobTarget, job: DecideAllJob): Promise<DecideAllResult> {
  const pool = connections(target, 4, "decider");
  const sentAtNs: number[] = new Array(job.ids.length).fill(0);
  let errors = 0;
  let firstError: string | undefined;
  let next = 0;
  // Connections are opened (TLS handshakes done) before the burst starts.
  await Promise.all(
    Array.from({ length: 4 }, (_, i) =>
      pool
        .at(i)
        .echo.echo({})
        .catch(() => undefined),
    ),
  );
  await Promise.all(
    Array.from({ length: Math.min(job.concurrency, job.ids.length) }, async () => {
      for (let i = next++; i < job.ids.length; i = next++) {
        sentAtNs[i] = Number(now());
        try {
          await pool
            .at(i)
            .approvals.submitDecision(approveRequest(job.ids[i] as string, benchApprovers[0], nextKey()));
        } catch (err) {
          errors++;
          firstError ??= message(err);
        }
      }
    }),
  );
  pool.closeAll();
  return { sentAtNs, errors, ...(firstError === undefined ? {} : { firstError }) };
}

/** Most watch streams waiting for their first message at once, per watch job. */
const openConcurrency = 200;
/** Longest wait for every stream of a watch job to have its first message. */
const openTimeoutMs = 60_000;
/** Longest wait for cancelled streams to end. */
const endGraceMs = 10_000;

/** A watch stream as the watch job tracks it. */
interface Watcher {
  /** Arrival time and bytes (grpc) or state (connect) of every message after the first. */
  later: { at: bigint; bytes?: Uint8Array; state?: State }[];
  opened: boolean;
  ended: boolean;
}

/** The first terminal-state arrival among a watcher's later messages. */
function terminalAt(w: Watcher): number | null {
  for (const m of w.later) {
    const state =
      m.state ??
      (m.bytes === undefined ? undefined : fromBinary(WatchApprovalResponseSchema, m.bytes).approval?.state);
    if (state !== undefined && state !== State.PENDING && state !== State.UNSPECIFIED) return Number(m.at);
  }
  return null;
}

/** A running watch job: `ready` once every stream has its snapshot, `result` once all ended. */
export interface RunningWatch {
  ready: Promise<number>;
  result: Promise<WatchResult>;
  stop(): void;
}

/**
 * Opens the streams of a watch job. With grpc, raw grpc-js clients record each message's arrival in the
 * deserializer and decode after the measurement; with Connect, the connect-node client decodes as a
 * caller would, and the arrival is when it hands over the message.
 */
export function startWatch(target: JobTarget, job: WatchJob): RunningWatch {
  const watchers: Watcher[] = job.ids.map(() => ({ later: [], opened: false, ended: false }));
  let opened = 0;
  let ended = 0;
  let errors = 0;
  let firstError: string | undefined;
  let stopped = false;
  let resolveReady: (opened: number) => void = () => {};
  let rejectReady: (err: Error) => void = () => {};
  const ready = new Promise<number>((resolve, reject) => {
    resolveReady = resolve;
    rejectReady = reject;
  });
  // Nobody may wait for `ready` (a job that failed first); its outcome is handled by `result`.
  ready.catch(() => {});
  let finish: () => void = () => {};
  const allEnded = new Promise<void>((resolve) => {
    finish = resolve;
  });
  const failed = (err: unknown) => {
    errors++;
    firstError ??= message(err);
  };
  const onOpened = (w: Watcher) => {
    if (w.opened) return;
    w.opened = true;
    if (++opened === watchers.length) resolveReady(opened);
    openNext();
  };
  const onEnded = (w: Watcher, err?: unknown) => {
    if (w.ended) return;
    w.ended = true;
    if (!stopped && (err !== undefined || !w.opened)) {
      const problem = err ?? new Error("the stream ended before its first message");
      failed(problem);
      if (!w.opened) {
        rejectReady(new Error(`a watch failed before its snapshot: ${message(problem)}`));
        stop();
      }
    }
    if (!w.opened) openNext();
    if (++ended === watchers.length) finish();
  };

  const closers: (() => void)[] = [];
  const cancels: (() => void)[] = [];
  /** Opens stream `i`. */
  let open: (i: number) => void;
  if (target.protocol === "grpc") {
    const path = `/${ApprovalService.typeName}/${ApprovalService.method.watchApproval.name}`;
    const clients = Array.from(
      { length: Math.max(1, job.connections) },
      () =>
        new grpc.Client(
          target.target.grpcAddress,
          grpc.credentials.createSsl(
            Buffer.from(target.target.ca),
            Buffer.from(target.requester.key),
            Buffer.from(target.requester.cert),
          ),
          { "grpc.use_local_subchannel_pool": 1 },
        ),
    );
    for (const c of clients) closers.push(() => c.close());
    open = (i) => {
      const w = watchers[i] as Watcher;
      const call = (clients[i % clients.length] as grpc.Client).makeServerStreamRequest(
        path,
        (req: { id: string }) =>
          Buffer.from(toBinary(WatchApprovalRequestSchema, create(WatchApprovalRequestSchema, req))),
        (bytes: Buffer) => ({ at: now(), bytes }),
        { id: job.ids[i] as string },
        new grpc.Metadata(),
        {},
      );
      call.on("data", (m: { at: bigint; bytes: Uint8Array }) => {
        if (w.opened) w.later.push(m);
        else onOpened(w);
      });
      call.on("end", () => onEnded(w));
      call.on("error", (err) => onEnded(w, err));
      cancels.push(() => call.cancel());
    };
  } else {
    const pool = connections(target, job.connections, "requester");
    closers.push(pool.closeAll);
    open = (i) => {
      const w = watchers[i] as Watcher;
      const abort = new AbortController();
      cancels.push(() => abort.abort());
      (async () => {
        const stream = pool
          .at(i)
          .approvals.watchApproval({ id: job.ids[i] as string }, { signal: abort.signal });
        for await (const res of stream) {
          if (!w.opened) onOpened(w);
          else if (!res.heartbeat)
            w.later.push({ at: now(), state: res.approval?.state ?? State.UNSPECIFIED });
        }
      })().then(
        () => onEnded(w),
        (err: unknown) => onEnded(w, err),
      );
    };
  }

  // Streams are opened `openConcurrency` at a time (each waits for its first message before the next
  // starts), as watchers arrive in practice, rather than all in the same millisecond.
  let next = 0;
  function openNext(): void {
    if (!stopped && next < watchers.length) open(next++);
  }

  let timer: NodeJS.Timeout | undefined;
  let giveUp: NodeJS.Timeout | undefined;
  function stop(): void {
    if (stopped) return;
    stopped = true;
    clearTimeout(timer);
    for (const cancel of cancels) cancel();
    // Streams never opened count as ended; the others get `endGraceMs` to end after the cancel.
    for (const w of watchers.slice(next)) onEnded(w);
    giveUp = setTimeout(() => {
      const stuck = watchers.filter((w) => !w.ended).length;
      failed(new Error(`${stuck} streams did not end within ${endGraceMs} ms of being cancelled`));
      for (const w of watchers) if (!w.ended) onEnded(w);
    }, endGraceMs);
  }
  timer = setTimeout(() => {
    if (opened === watchers.length) return;
    failed(
      new Error(`only ${opened} of ${watchers.length} streams had their snapshot after ${openTimeoutMs} ms`),
    );
    rejectReady(new Error(firstError ?? "watch streams did not open in time"));
    stop();
  }, openTimeoutMs);
  ready.then(
    () => {
      clearTimeout(timer);
      timer = setTimeout(stop, job.timeoutMs);
    },
    () => {},
  );
  for (let i = 0; i < Math.min(openConcurrency, watchers.length); i++) openNext();
  if (watchers.length === 0) {
    resolveReady(0);
    finish();
  }

  const result = allEnded.then(() => {
    clearTimeout(timer);
    clearTimeout(giveUp);
    for (const close of closers) close();
    return {
      opened,
      terminalAtNs: watchers.map(terminalAt),
      errors,
      ...(firstError === undefined ? {} : { firstError }),
    };
  });
  return { ready, result, stop };
}
