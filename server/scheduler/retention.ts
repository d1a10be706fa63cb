import type { Tracer } from "@opentelemetry/api";
import type { ArchiveWriter } from "../archive/archive-writer.js";
import type { Clock } from "../domain/clock.js";
import type { ApprovalStore } from "../store/approval-store.js";
import type { Claims } from "../store/claims.js";
import { inSchedulerSpan } from "./scheduler-span.js";

/** Told what retention actually did, batch by batch (e.g. the metrics). */
export interface RetentionObserver {
  /** `count` approvals were appended to the archive (fsync'ed). */
  archived(count: number): void;
  /** `count` approvals were purged from the store. */
  purged(count: number): void;
  /** An archive write failed: the run stops and purges nothing of that batch. */
  archiveFailed(err: unknown): void;
}

/** Options of `createRetention`. */
export interface RetentionOptions {
  store: ApprovalStore;
  archive: ArchiveWriter;
  /** Makes each run happen on one replica only. */
  claims: Claims;
  clock: Clock;
  /** How long a finished approval stays in the store. @default 7 days */
  retentionMs?: number;
  /** How often a run happens (on one replica among all). @default 60000 */
  intervalMs?: number;
  /** Approvals archived and purged per step. @default 500 */
  batchSize?: number;
  /** Told what each batch did. */
  observer?: RetentionObserver;
  /** Each run is a `scheduler retention` span: whether it ran here, how many it archived and purged. */
  tracer?: Tracer;
}

/** What one retention run did. */
export interface RetentionRun {
  /** False when another replica holds this interval's claim (nothing was done here). */
  ran: boolean;
  archived: number;
  purged: number;
}

/** Archives and purges finished approvals after their retention period. */
export interface Retention {
  /** How often `runOnce` should be called. */
  readonly intervalMs: number;
  /**
   * One run, if this replica wins the claim of the current interval: appends every approval whose
   * retention is over to the archive (fsync'ed), then purges each from the store unless it changed
   * meanwhile. An archive write that fails purges nothing.
   */
  runOnce(): Promise<RetentionRun>;
}

/**
 * Retention: at most one run per interval across all replicas (a claim in the store). An approval that
 * was archived but not purged (the replica died in between) is archived again by a later run: archiving
 * is at least once, and re-importing is idempotent.
 */
export function createRetention(options: RetentionOptions): Retention {
  const { store, archive, claims, clock, observer } = options;
  const retentionMs = options.retentionMs ?? 7 * 24 * 3_600_000;
  const intervalMs = options.intervalMs ?? 60_000;
  const batchSize = options.batchSize ?? 500;
  return {
    intervalMs,
    runOnce() {
      return inSchedulerSpan(options.tracer, "scheduler retention", run, (r) => ({
        "countersign.retention.ran": r.ran,
        "countersign.archived": r.archived,
        "countersign.purged": r.purged,
      }));
    },
  };

  async function run(): Promise<RetentionRun> {
    const now = clock.now();
    const slot = Math.floor(now / intervalMs);
    if (!(await claims.claimOnce(`retention:${slot}`, intervalMs)))
      return { ran: false, archived: 0, purged: 0 };
    let archived = 0;
    let purged = 0;
    for (;;) {
      const due = await store.dueForPurge(now - retentionMs, batchSize);
      if (due.length === 0) break;
      const fresh = due.filter((d) => !d.archived).map((d) => d.approval);
      try {
        await archive.append(fresh, now);
      } catch (err) {
        observer?.archiveFailed(err);
        throw err;
      }
      archived += fresh.length;
      if (fresh.length > 0) observer?.archived(fresh.length);
      let purgedNow = 0;
      for (const { approval } of due) {
        if (await store.purge(approval.id, approval.version)) purgedNow++;
      }
      purged += purgedNow;
      if (purgedNow > 0) observer?.purged(purgedNow);
      if (due.length < batchSize || purgedNow === 0) break;
    }
    return { ran: true, archived, purged };
  }
}
