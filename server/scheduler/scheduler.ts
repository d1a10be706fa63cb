import type { Tracer } from "@opentelemetry/api";
import type { Clock } from "../domain/clock.js";
import type { ApprovalOperations } from "../services/approval-operations.js";
import type { ApprovalStore } from "../store/approval-store.js";
import type { Retention } from "./retention.js";
import { inSchedulerSpan } from "./scheduler-span.js";

/** Options of `createScheduler`. */
export interface SchedulerOptions {
  store: ApprovalStore;
  operations: ApprovalOperations;
  clock: Clock;
  /** How often due timers are looked for. @default 250 */
  intervalMs?: number;
  /** Most expirations handled per store query. @default 500 */
  batchSize?: number;
  /** Receives errors of a run; the scheduler keeps running. */
  onError?: (err: unknown) => void;
  /** Archive-and-purge runs, every `retention.intervalMs` (on one replica at a time). */
  retention?: Retention;
  /** Each run is a `scheduler expire` span, with the number of approvals it expired. */
  tracer?: Tracer;
}

/** Runs the approvals' timers. */
export interface Scheduler {
  /** Starts the periodic runs. */
  start(): void;
  /** Stops them and waits for a run in progress. */
  stop(): Promise<void>;
  /** One run: expires every pending approval whose deadline has passed. Returns how many it expired. */
  runOnce(): Promise<number>;
}

/**
 * Expires approvals within `intervalMs` of their deadline. Each expiry is a compare-and-set in the
 * store, so however many replicas run a scheduler, an approval expires once and a decision that came
 * first wins.
 */
export function createScheduler(options: SchedulerOptions): Scheduler {
  const { store, operations, clock } = options;
  const intervalMs = options.intervalMs ?? 250;
  const batchSize = options.batchSize ?? 500;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<number> | undefined;
  let retentionTimer: NodeJS.Timeout | undefined;
  let retaining: Promise<unknown> | undefined;

  async function expireDue(): Promise<number> {
    let expired = 0;
    for (;;) {
      const due = await store.dueForExpiry(clock.now(), batchSize);
      let expiredNow = 0;
      for (const id of due) {
        try {
          if ((await operations.expire(id)).changed) expiredNow++;
        } catch (err) {
          options.onError?.(err);
        }
      }
      expired += expiredNow;
      // A full batch that made progress may hide more; a batch that failed is retried next run.
      if (due.length < batchSize || expiredNow === 0) return expired;
    }
  }

  function runOnce(): Promise<number> {
    running ??= inSchedulerSpan(options.tracer, "scheduler expire", expireDue, (expired) => ({
      "countersign.expired": expired,
    })).finally(() => {
      running = undefined;
    });
    return running;
  }

  return {
    start() {
      if (timer !== undefined) return;
      timer = setInterval(() => {
        runOnce().catch((err: unknown) => options.onError?.(err));
      }, intervalMs);
      timer.unref();
      const retention = options.retention;
      if (retention !== undefined) {
        retentionTimer = setInterval(() => {
          retaining ??= retention
            .runOnce()
            .catch((err: unknown) => options.onError?.(err))
            .finally(() => {
              retaining = undefined;
            });
        }, retention.intervalMs);
        retentionTimer.unref();
      }
    },
    async stop() {
      if (timer !== undefined) clearInterval(timer);
      timer = undefined;
      if (retentionTimer !== undefined) clearInterval(retentionTimer);
      retentionTimer = undefined;
      await Promise.all([running?.catch(() => 0), retaining]);
    },
    runOnce,
  };
}
