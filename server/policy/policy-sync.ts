/**
 * One policy set for every replica that shares a store. The replica that reloads (SIGHUP, the
 * `ReloadPolicies` RPC, the file watch) validates the file, puts it in force and publishes its text, hash
 * and a new generation number through the shared store; every other replica adopts it with its own
 * parser (a set it cannot parse is refused there, and that replica keeps its set and reports why). Each
 * replica reports the hash and generation it has on a heartbeat, so any replica can say whether they all
 * agree (`GetPolicies`, `/readyz`).
 *
 * At start the policy file wins: a replica whose file differs from the stored set publishes its file as
 * the next generation (docs/policies.md, "Several replicas").
 */
import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import type { Clock } from "../domain/clock.js";
import type { LoadedPolicies, PolicyHolder, PolicyReloadEvent, PolicyReloadResult } from "./policy-holder.js";
import { PolicyLoadError } from "./policy-loader.js";

/** A policy set as stored for every replica. */
export interface SharedPolicySet {
  /** The document's text, as the publishing replica read it. */
  text: string;
  sha256: string;
  /** Increases by one with every publication; never reused. */
  generation: number;
  /** The replica that published it. */
  publishedBy: string;
  /** Where that replica read it (its policy file's path). */
  source: string;
  /** When, epoch milliseconds. */
  publishTime: number;
}

/** What one replica last said about its policy set. */
export interface ReplicaPolicyReport {
  replica: string;
  /** Hash of the set in force there. */
  sha256: string;
  /** Generation of the stored set it has in force, 0 when none. */
  generation: number;
  /** When it said so, epoch milliseconds. */
  reportTime: number;
  /** Why it could not adopt the stored set, when it could not. */
  error?: string;
}

/** The shared store's side of policy sync (Redis: store/redis-policy-sync.ts). */
export interface PolicySyncPort {
  /** The stored set, if any replica ever published one. */
  read(): Promise<SharedPolicySet | undefined>;
  /** Stores `set` as the next generation and announces it to every replica; resolves with it stored. */
  publish(set: Omit<SharedPolicySet, "generation">): Promise<SharedPolicySet>;
  /**
   * Calls `listener` with the generation of every announced set (best effort: a missed announcement is
   * caught up by the next heartbeat's read).
   */
  subscribe(listener: (generation: number) => void): Promise<void>;
  /** Records this replica's report, replacing its previous one. */
  report(report: ReplicaPolicyReport): Promise<void>;
  /** Every replica's last report. */
  reports(): Promise<ReplicaPolicyReport[]>;
  /** Forgets replicas' reports (one that shut down, or stale ones). */
  forget(replicas: string[]): Promise<void>;
  /** Stops listening for announcements. */
  close(): Promise<void>;
}

/** One replica's set, as `status()` shows it. */
export interface ReplicaPolicyStatus extends ReplicaPolicyReport {
  /** No report for longer than three heartbeats: the replica is probably gone; not counted. */
  stale: boolean;
}

/** Whether the replicas agree. */
export interface PolicyAgreement {
  /** Generation of the stored set this replica has in force (0: none yet). */
  generation: number;
  /** Every replica that reported, this one first, then by name. */
  replicas: ReplicaPolicyStatus[];
  /** Why they disagree (naming the replicas and hashes); undefined when every live replica agrees. */
  disagreement: string | undefined;
}

/** Options of `createPolicySync`. */
export interface PolicySyncOptions {
  holder: PolicyHolder;
  port: PolicySyncPort;
  /** This replica's name in reports (host name, process id and a random suffix by default). */
  replica: string;
  clock: Clock;
  /** How often the replica reports and re-reads the stored set. @default 5000 */
  heartbeatMs?: number;
  log: {
    info(fields: object, message: string): void;
    warn(fields: object, message: string): void;
    error(fields: object, message: string): void;
  };
}

/** Keeps a replica's policies in step with the others. */
export interface PolicySync {
  /** Forwards the holder's reload events here (its `onReload`): a reload of the file is published. */
  reloaded(event: PolicyReloadEvent): void;
  /**
   * Reloads the file as `PolicyHolder.reload` does and, when it is applied, publishes it to the other
   * replicas before resolving.
   * @throws PolicyLoadError when the file is invalid; UnavailableError-like store errors when it could not
   *   be published (it is in force here, and publishing is retried with every heartbeat)
   */
  reload(options?: { dryRun?: boolean }): Promise<PolicyReloadResult>;
  /** The replicas' sets and whether they agree. */
  status(): Promise<PolicyAgreement>;
  /** First sync (publish or adopt) and the heartbeat; never waits for the store (retried). */
  start(): void;
  /** Stops the heartbeat and withdraws this replica's report. */
  close(): Promise<void>;
}

/** A hash as logs and messages show it: its first 12 hex digits. */
export function shortHash(sha256: string): string {
  return sha256.slice(0, 12);
}

/**
 * Creates the sync of one replica. Nothing happens until `start()`; until its first sync succeeds the
 * replica keeps the set from its file.
 */
export function createPolicySync(options: PolicySyncOptions): PolicySync {
  const { holder, port, replica, clock, log } = options;
  const heartbeatMs = options.heartbeatMs ?? 5_000;
  const staleMs = 3 * heartbeatMs;
  /** Reports older than this are removed from the store. */
  const forgetMs = Math.max(10 * 60_000, 10 * staleMs);
  let generation = 0;
  let started = false;
  /** The set in force came from this replica's file and is not stored yet (a failed publish). */
  let unpublished = false;
  /** Why the stored generation `failedGeneration` cannot be adopted here. */
  let adoptError: string | undefined;
  let failedGeneration = 0;
  let timer: NodeJS.Timeout | undefined;
  let closed = false;
  let queue: Promise<unknown> = Promise.resolve();

  /** Runs sync steps one at a time (publish, adopt, heartbeat). */
  const serialized = <T>(task: () => Promise<T>): Promise<T> => {
    const run = queue.then(task, task);
    queue = run.catch(() => undefined);
    return run;
  };

  const current = (): LoadedPolicies => {
    const loaded = holder.current();
    if (loaded === undefined) throw new Error("policy sync started before the policies were loaded");
    return loaded;
  };

  const report = () =>
    port.report({
      replica,
      sha256: current().sha256,
      generation,
      reportTime: clock.now(),
      ...(adoptError === undefined ? {} : { error: adoptError }),
    });

  /** Publishes the set in force (read from this replica's file). */
  const publish = async (loaded: LoadedPolicies): Promise<void> => {
    unpublished = true;
    const stored = await port.publish({
      text: loaded.text,
      sha256: loaded.sha256,
      publishedBy: replica,
      source: loaded.source,
      publishTime: clock.now(),
    });
    unpublished = false;
    generation = stored.generation;
    adoptError = undefined;
    log.info(
      { policy_sha256: loaded.sha256, generation, replica },
      "policies published to every replica through the store",
    );
    await report();
  };

  /** Adopts the stored set when it is newer than the one in force here. */
  const catchUp = async (): Promise<void> => {
    if (!started) return firstSync();
    const stored = await port.read();
    // Gone after this replica's first sync: the store lost its data; the set in force is stored again.
    if (stored === undefined) return publish(current());
    // Generations only grow, so another one is newer (or the counter restarted after a data loss).
    if (stored.generation === generation || stored.generation === failedGeneration) return;
    if (stored.sha256 === current().sha256) {
      generation = stored.generation;
      adoptError = undefined;
      await report();
      return;
    }
    const source = `${stored.source} (published by ${stored.publishedBy}, generation ${stored.generation})`;
    const fields = {
      generation: stored.generation,
      policy_sha256: stored.sha256,
      published_by: stored.publishedBy,
      replica,
    };
    let reason: string | undefined;
    try {
      const result = await holder.adopt(stored.text, source);
      if (result.current.sha256 !== stored.sha256)
        throw new Error(`it hashes to ${shortHash(result.current.sha256)} here`);
      generation = stored.generation;
      adoptError = undefined;
      // A reload of this replica's that could not be published yet is superseded.
      unpublished = false;
    } catch (err) {
      failedGeneration = stored.generation;
      reason =
        err instanceof PolicyLoadError
          ? err.problems.map((p) => `${p.path}: ${p.message}`).join("; ")
          : (err as Error).message;
      adoptError = `cannot adopt generation ${stored.generation} (${shortHash(stored.sha256)}, published by ${stored.publishedBy}): ${reason}`;
    }
    // Logged once the report is stored, so that whoever reads the log line finds the report too.
    await report().finally(() => {
      if (reason === undefined) log.info(fields, "policies adopted from another replica");
      else
        log.error(
          { ...fields, reason },
          "cannot adopt the policies another replica published; keeping the current ones",
        );
    });
  };

  /** At start: the file wins over a different stored set, else the stored set's generation is taken. */
  const firstSync = async (): Promise<void> => {
    const loaded = current();
    const stored = await port.read();
    if (stored === undefined || stored.sha256 !== loaded.sha256) {
      if (stored !== undefined)
        log.warn(
          {
            policy_sha256: loaded.sha256,
            stored_sha256: stored.sha256,
            stored_generation: stored.generation,
          },
          "the policy file differs from the policies the replicas share; publishing the file",
        );
      await publish(loaded);
    } else {
      generation = stored.generation;
      await report();
      log.info(
        { policy_sha256: loaded.sha256, generation, replica },
        "policies are the ones the replicas share",
      );
    }
    started = true;
  };

  const heartbeat = async (): Promise<void> => {
    if (!started) return firstSync();
    if (unpublished) return publish(current());
    await catchUp();
    await report();
    const now = clock.now();
    const gone = (await port.reports()).filter((r) => now - r.reportTime > forgetMs).map((r) => r.replica);
    if (gone.length > 0) await port.forget(gone);
  };

  const beat = () => {
    serialized(heartbeat).catch((err: unknown) =>
      log.warn({ err: (err as Error).message }, "policy sync with the store failed; retrying"),
    );
  };

  return {
    reloaded(event) {
      if (event.outcome !== "applied" || (event.trigger !== "reload" && event.trigger !== "watch")) return;
      // A SIGHUP or file watch reload: publish (the RPC's reload waits for this through `reload`).
      const loaded = event.current;
      unpublished = true;
      serialized(() => (started ? publish(loaded) : firstSync())).catch((err: unknown) =>
        log.error(
          { err: (err as Error).message },
          "could not publish the reloaded policies to the other replicas; retrying with every heartbeat",
        ),
      );
    },
    async reload(reloadOptions) {
      const result = await holder.reload(reloadOptions);
      if (!result.applied) return result;
      // The publication `reloaded` queued (if the set changed) runs before this.
      await serialized(async () => {
        if (unpublished || !started) await heartbeat();
      });
      return result;
    },
    async status() {
      const reports = await port.reports();
      const now = clock.now();
      const own: ReplicaPolicyReport = {
        replica,
        sha256: current().sha256,
        generation,
        reportTime: now,
        ...(adoptError === undefined ? {} : { error: adoptError }),
      };
      const replicas: ReplicaPolicyStatus[] = [
        { ...own, stale: false },
        ...reports
          .filter((r) => r.replica !== replica)
          .sort((a, b) => a.replica.localeCompare(b.replica))
          .map((r) => ({ ...r, stale: now - r.reportTime > staleMs })),
      ];
      const live = replicas.filter((r) => !r.stale);
      const hashes = new Set(live.map((r) => r.sha256));
      const failing = live.filter((r) => r.error !== undefined);
      const disagreement =
        hashes.size <= 1 && failing.length === 0
          ? undefined
          : `replicas disagree on the policies: ${live
              .map(
                (r) =>
                  `${r.replica} has ${shortHash(r.sha256)} (generation ${r.generation})${r.error === undefined ? "" : `, ${r.error}`}`,
              )
              .join("; ")}`;
      return { generation, replicas, disagreement };
    },
    start() {
      if (timer !== undefined || closed) return;
      port
        .subscribe((announced) => {
          if (announced !== generation) serialized(catchUp).catch(() => undefined);
        })
        .catch((err: unknown) =>
          log.warn({ err: (err as Error).message }, "cannot subscribe to policy announcements; polling"),
        );
      beat();
      timer = setInterval(beat, heartbeatMs);
      timer.unref();
    },
    async close() {
      closed = true;
      if (timer !== undefined) clearInterval(timer);
      timer = undefined;
      await queue;
      await port.forget([replica]).catch(() => undefined);
      await port.close();
    },
  };
}

/** A name for this replica in reports: host name, process id and a random suffix (several per process in tests). */
export function defaultReplicaName(): string {
  return `${hostname()}/${process.pid}/${randomBytes(2).toString("hex")}`;
}
