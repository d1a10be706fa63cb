/**
 * What the benchmark runner asks of its load-generator processes, and what they answer (over the
 * `child_process.fork` IPC channel). Times are `process.hrtime.bigint()` nanoseconds as numbers: the
 * monotonic clock is the same in every process of the machine, so the runner compares them directly.
 */
import type { Pem } from "../test/support/certs.js";
import type { BenchProtocol, BenchTarget } from "./transports.js";

/** The server, the protocol and the identities a job uses. */
export interface JobTarget {
  target: BenchTarget;
  protocol: BenchProtocol;
  /** Client certificate with the requester role. */
  requester: Pem;
  /** Client certificate with the decider role (the Slack gateway's, in production). */
  decider: Pem;
}

/** Operations the closed-loop job repeats. */
export type ClosedLoopOp = "echo" | "create" | "decide" | "e2e";

/**
 * `concurrency` callers, each repeating `op` as fast as the server answers, for a warm-up then a measured
 * period. `decide` times only the SubmitDecision (the create before it is set-up); `e2e` times create →
 * WatchApproval open → quorum of SubmitDecision → the watcher has the terminal state.
 */
export interface ClosedLoopJob {
  kind: "closed-loop";
  op: ClosedLoopOp;
  concurrency: number;
  /** Connections the callers share (round robin). */
  connections: number;
  warmupMs: number;
  durationMs: number;
}

/** Creates at a fixed rate whatever the latency (open loop: latency counts from the scheduled time). */
export interface OpenLoopCreateJob {
  kind: "open-loop-create";
  ratePerSecond: number;
  warmupMs: number;
  durationMs: number;
}

/** Creates `count` pending approvals (set-up for the stream scenarios), `concurrency` at a time. */
export interface CreateManyJob {
  kind: "create-many";
  action: string;
  count: number;
  concurrency: number;
}

/**
 * Opens one WatchApproval stream per entry of `ids` over `connections` connections (at most 200 waiting
 * for their first message at a time), answers `ready` once every stream has its first snapshot, then
 * records when each gets the terminal state. Ends when all have it, after `timeoutMs` from ready, or on
 * `stop`; fails when a stream fails before its snapshot or they are not all open within 60 s.
 */
export interface WatchJob {
  kind: "watch";
  ids: string[];
  connections: number;
  timeoutMs: number;
}

/** Submits one approving vote to each approval in `ids`, `concurrency` at a time, as fast as possible. */
export interface DecideAllJob {
  kind: "decide-all";
  ids: string[];
  concurrency: number;
}

/** Any job. */
export type Job = ClosedLoopJob | OpenLoopCreateJob | CreateManyJob | WatchJob | DecideAllJob;

/** Latencies and counts of a load job. */
export interface LoadResult {
  /** HDR histogram of the measured latencies (µs), compressed (see `histogram.ts`). */
  histogram: string;
  /** Operations finished in the measured period. */
  count: number;
  /** Operations that failed in the measured period. */
  errors: number;
  /** The first failure's message, when there was one. */
  firstError?: string;
  /** Length of the measured period, ms. */
  elapsedMs: number;
  /** With `open-loop-create`: service time (from the actual send) rather than from the scheduled time. */
  serviceHistogram?: string;
}

/** Result of `create-many`. */
export interface CreateManyResult {
  ids: string[];
}

/** Result of `watch`. */
export interface WatchResult {
  /** Streams that had the first snapshot. */
  opened: number;
  /** Per stream in `ids` order: when the terminal state arrived, or null when it did not. */
  terminalAtNs: (number | null)[];
  /** Streams that ended with an error (other than by `stop`). */
  errors: number;
  firstError?: string;
}

/** Result of `decide-all`: when each vote was sent, in `ids` order. */
export interface DecideAllResult {
  sentAtNs: number[];
  errors: number;
  firstError?: string;
}

/** Runner → worker. */
export type ToWorker =
  | { type: "job"; jobId: number; target: JobTarget; job: Job }
  | { type: "stop"; jobId: number };

/** Worker → runner (`up` once, when the worker listens for jobs). */
export type FromWorker =
  | { type: "up" }
  | { type: "ready"; jobId: number; opened: number }
  | { type: "result"; jobId: number; result: unknown }
  | { type: "failed"; jobId: number; message: string };
