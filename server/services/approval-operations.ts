import { getRandomValues, randomUUID } from "node:crypto";
import { monotonicFactory } from "ulid";
import type { Clock } from "../domain/clock.js";
import {
  FailedPreconditionError,
  NotFoundError,
  PermissionDeniedError,
  UnavailableError,
  ValidationError,
} from "../domain/errors.js";
import {
  applyVote,
  buildApproval,
  type CreateInput,
  cancelApproval,
  createFingerprint,
  expireApproval,
  isOverdue,
  rerequestWindowStart,
  resolveApproval,
  type Transition,
  type VoteInput,
  validateCreate,
} from "../domain/lifecycle.js";
import { type AdminCaller, type Approval, isTerminal, type PolicySet } from "../domain/types.js";
import { resolvePolicy } from "../policy/policy-match.js";
import type {
  ApprovalPage,
  ApprovalQuery,
  ApprovalStore,
  CreateResult,
  Unsubscribe,
} from "../store/approval-store.js";
import type { ApprovalEvent, ApprovalEventListener } from "./approval-events.js";

/** Where the policy set in force comes from. */
export interface PolicySource {
  current(): { policySet: PolicySet } | undefined;
}

/** Options of `createApprovalOperations`. */
export interface ApprovalOperationsOptions {
  store: ApprovalStore;
  policies: PolicySource;
  clock: Clock;
  /** Makes approval ids. @default monotonic ULIDs */
  newId?: () => string;
  /** Compare-and-set attempts before a transition gives up with UNAVAILABLE. @default 200 */
  maxAttempts?: number;
  /** Receive every approval event (audit, metrics, tracing). */
  listeners?: ApprovalEventListener[];
}

/** How long a write that failed with UNAVAILABLE is watched for, in case the store applied it later. */
const inDoubtMs = 10 * 60_000;

/** A write in flight, or failed with UNAVAILABLE and perhaps applied later (`inDoubt`). */
interface PendingWrite {
  /** The version it was made over; undefined for a create. */
  before: Approval | undefined;
  actor: string;
  since: number;
  inDoubt: boolean;
  /** Its stored version, when delivered while the call was still in flight. */
  seen?: Approval;
}

/** The audit actor of an admin call: its certificate identity, else the admin token's holder. */
function verifiedActor(admin: AdminCaller): string {
  return admin.certificate !== "" ? admin.certificate : `admin-token:${admin.tokenHolder}`;
}

/** One message of a watch: a snapshot, or a heartbeat repeating the last snapshot. */
export interface WatchEvent {
  approval: Approval;
  heartbeat: boolean;
}

/** One message of `watchAll`: an approval snapshot, the end of the initial snapshot, or a heartbeat. */
export type WatchAllEvent =
  | { type: "approval"; approval: Approval }
  | { type: "snapshot_complete" }
  | { type: "heartbeat" };

/**
 * Random numbers in [0, 1) for ULIDs from the system CSPRNG, drawn 4 KiB at a time: the default ULID
 * generator asks the system for one byte per character, 16 calls per id, a visible share of a create.
 * Each byte / 256 picks one of the 32 ULID characters without bias.
 */
function pooledRandom(): () => number {
  const pool = new Uint8Array(4096);
  let next = pool.length;
  return () => {
    if (next === pool.length) {
      getRandomValues(pool);
      next = 0;
    }
    return (pool[next++] as number) / 256;
  };
}

/** The operations both services share, independent of protobuf and of the transport. */
export type ApprovalOperations = ReturnType<typeof createApprovalOperations>;

/**
 * The application layer: runs the domain rules against the store. Every transition is a read, a pure
 * domain step and a compare-and-set, retried when another writer came first; so exactly one terminal
 * transition wins, on one replica or many.
 */
export function createApprovalOperations(options: ApprovalOperationsOptions) {
  const { store, policies, clock } = options;
  const newId = options.newId ?? monotonicFactory(pooledRandom());
  const maxAttempts = options.maxAttempts ?? 200;
  const listeners = options.listeners ?? [];
  /** Set by `shutdown()`: open watches end with UNAVAILABLE so clients resume on another replica. */
  let shuttingDown = false;
  /**
   * Wakes each open watch at shutdown. A Set, not listeners on an AbortSignal: EventTarget checks every
   * listener for duplicates on add and remove, which is quadratic with thousands of open watches.
   */
  const openWatches = new Set<() => void>();

  function emit(event: ApprovalEvent): void {
    for (const listener of listeners) listener(event);
  }

  /**
   * Writes of this process whose outcome is not known yet, by write id. A write that failed with
   * UNAVAILABLE (a timeout) may still have been applied (the command had reached the store): it stays
   * here "in doubt", and is reported (audit, metrics) when its stored version is observed, through the
   * change feed or a later read. Only this process knows the write id, so it is reported once.
   */
  const pendingWrites = new Map<string, PendingWrite>();
  /** Every stored version passes by `observe`, also one delivered while its write was still in flight. */
  let feedOff: Unsubscribe | undefined =
    listeners.length > 0 ? store.subscribeAll((a) => observe(a)) : undefined;

  function reportStored(before: Approval | undefined, stored: Approval, actor: string): void {
    if (listeners.length === 0) return;
    if (before !== undefined) {
      emitTransition(before, stored, actor);
      return;
    }
    emit({ type: "created", approval: stored, actor });
    if (stored.state !== "pending")
      emit({ type: "terminal", approval: stored, previous: stored, actor: stored.decidedBy });
  }

  /** Reports an in-doubt write whose stored version this is (seen on the change feed or read). */
  function observe(approval: Approval): void {
    const writeId = approval.writeId;
    if (writeId === undefined || pendingWrites.size === 0) return;
    const pending = pendingWrites.get(writeId);
    if (pending === undefined) return;
    if (!pending.inDoubt) {
      pending.seen = approval;
      return;
    }
    pendingWrites.delete(writeId);
    reportStored(pending.before, approval, pending.actor);
    forgetOldWrites();
  }

  /** Forgets in-doubt writes older than `inDoubtMs`: never applied. */
  function forgetOldWrites(): void {
    const oldest = clock.now() - inDoubtMs;
    for (const [writeId, pending] of pendingWrites) {
      if (pending.inDoubt && pending.since < oldest) pendingWrites.delete(writeId);
    }
  }

  /**
   * Runs a write of `writeId`; when it fails with UNAVAILABLE, keeps it in doubt until its stored version
   * is observed (see `pendingWrites`). The caller reports a write that succeeded.
   */
  async function tracked<T>(
    writeId: string,
    before: Approval | undefined,
    actor: string,
    write: () => Promise<T>,
  ): Promise<T> {
    if (listeners.length === 0) return write();
    const pending: PendingWrite = { before, actor, since: clock.now(), inDoubt: false };
    pendingWrites.set(writeId, pending);
    try {
      const result = await write();
      pendingWrites.delete(writeId);
      return result;
    } catch (err) {
      if (!(err instanceof UnavailableError)) {
        pendingWrites.delete(writeId);
        throw err;
      }
      if (pending.seen !== undefined) {
        // Stored and delivered, then the call failed (replicas did not confirm in time).
        pendingWrites.delete(writeId);
        reportStored(before, pending.seen, actor);
      } else {
        pending.inDoubt = true;
        forgetOldWrites();
      }
      throw err;
    }
  }

  /** Reports a stored transition: the vote and edit it recorded, and its terminal state. */
  function emitTransition(before: Approval, after: Approval, actor: string): void {
    if (after.votes.length > before.votes.length) {
      const vote = after.votes[after.votes.length - 1];
      if (vote !== undefined) emit({ type: "vote", approval: after, vote });
    }
    if (after.edits.length > before.edits.length) {
      const edit = after.edits[after.edits.length - 1];
      if (edit !== undefined) emit({ type: "edit_applied", approval: after, edit });
    }
    if (before.state === "pending" && after.state !== "pending") {
      emit({ type: "terminal", approval: after, previous: before, actor });
    }
  }

  /** Reports a refused vote or cancel, then rethrows. */
  function refused(err: unknown, current: Approval, actor: string, operation: "vote" | "cancel"): never {
    if (err instanceof ValidationError && err.violations.some((v) => v.field.startsWith("edited_params"))) {
      emit({ type: "edit_rejected", approval: current, actor, violations: err.violations });
    } else if (err instanceof PermissionDeniedError || err instanceof FailedPreconditionError) {
      const reason = err instanceof PermissionDeniedError ? "permission_denied" : "failed_precondition";
      emit({
        type: "refused",
        approval: current,
        actor,
        operation,
        reason,
        message: err.message,
        error: err,
      });
    }
    throw err;
  }

  function policySet(): PolicySet {
    const loaded = policies.current();
    if (loaded === undefined) throw new UnavailableError("no policy set is loaded");
    return loaded.policySet;
  }

  /** The stored approval as it is, or NotFoundError. */
  async function read(id: string): Promise<Approval> {
    const approval = await store.get(id);
    if (approval === undefined) throw new NotFoundError(`approval ${id} does not exist`);
    return approval;
  }

  /**
   * Stores `next` over `current` if nobody wrote in between, and reports it. Only the one caller whose
   * compare-and-set stored the version sees it (and reports it): one audit line, one metric per version.
   */
  async function commit(current: Approval, next: Approval, actor: string): Promise<Approval | undefined> {
    const writeId = randomUUID();
    const stored = await tracked(writeId, current, actor, () =>
      store.compareAndSet({ ...next, writeId }, current.version),
    );
    if (stored !== undefined) reportStored(current, stored, actor);
    return stored;
  }

  /**
   * Runs a transition: read, expire first if the deadline has passed (so `step` sees an expired
   * approval and refuses), apply `step`, compare-and-set; again from the read when another write came
   * first. `changed` says whether this call stored `step`'s change.
   */
  async function transition(
    id: string,
    actor: string,
    step: (current: Approval, now: number) => Transition,
    operation?: "vote" | "cancel",
  ): Promise<Transition> {
    for (let attempt = 0; attempt < maxAttempts; attempt++) {
      let current = await read(id);
      observe(current);
      const now = clock.now();
      if (step !== expireApproval && isOverdue(current, now)) {
        const expired = await commit(current, expireApproval(current, now).approval, "system");
        if (expired === undefined) continue;
        current = expired;
      }
      let next: Transition;
      try {
        next = step(current, now);
      } catch (err) {
        if (operation === undefined) throw err;
        refused(err, current, actor, operation);
      }
      if (!next.changed) return next;
      const stored = await commit(current, next.approval, actor);
      if (stored !== undefined) return { approval: stored, changed: true };
    }
    throw new UnavailableError(`approval ${id} is under heavy contention; retry`);
  }

  /**
   * Expires an approval if its deadline has passed (see `isOverdue`). `changed` only for the caller
   * whose compare-and-set stored the expiry, however many replicas and paths try at once.
   */
  function expire(id: string): Promise<Transition> {
    return transition(id, "system", expireApproval);
  }

  /**
   * The approval as everyone must see it: one past its deadline is expired first, so a read never shows
   * a pending approval that can no longer be decided.
   */
  async function settle(approval: Approval): Promise<Approval> {
    if (!isOverdue(approval, clock.now())) return approval;
    return (await expire(approval.id)).approval;
  }

  async function get(id: string): Promise<Approval> {
    return settle(await read(id));
  }

  /** Approvals matching the query, newest first, each settled; a page filtered by state keeps only matches. */
  async function list(query: ApprovalQuery): Promise<ApprovalPage> {
    const page = await store.list(query);
    if (!page.approvals.some((a) => isOverdue(a, clock.now()))) return page;
    const approvals = await Promise.all(page.approvals.map(settle));
    return {
      approvals: approvals.filter((a) => query.state === undefined || a.state === query.state),
      nextPageToken: page.nextPageToken,
    };
  }

  return {
    /** The approval (settled: see `settle`), or NotFoundError. */
    get,

    /** A page of approvals (settled: see `settle`). */
    list,

    /** Ends every open watch with UNAVAILABLE (graceful shutdown); new watches are refused the same way. */
    shutdown(): void {
      shuttingDown = true;
      feedOff?.();
      feedOff = undefined;
      for (const wakeWatch of openWatches) wakeWatch();
    },

    /**
     * Creates an approval (or returns the one an idempotency key already names).
     * @throws ValidationError, ConflictError, and the re-request errors of `buildApproval`
     */
    async create(input: CreateInput, requester: string): Promise<CreateResult> {
      validateCreate(input);
      const set = policySet();
      const now = clock.now();
      const id = newId(now);
      let previous: Approval | undefined;
      let lineageCountLastDay: number | undefined;
      if (input.rerequestOf !== "") {
        previous = await store.get(input.rerequestOf);
        if (previous !== undefined) {
          previous = await settle(previous);
          lineageCountLastDay = await store.countLineage(previous.lineageId, rerequestWindowStart(now));
        }
      }
      const approval = buildApproval(input, {
        id,
        requester,
        now,
        policySet: set,
        policy: resolvePolicy(set, input.action),
        ...(previous === undefined ? {} : { previous }),
        ...(lineageCountLastDay === undefined ? {} : { lineageCountLastDay }),
      });
      const idempotency =
        input.idempotencyKey === ""
          ? undefined
          : { key: `${requester}\u0000${input.idempotencyKey}`, fingerprint: createFingerprint(input) };
      const writeId = randomUUID();
      const result = await tracked(writeId, undefined, requester, () =>
        store.create({ ...approval, writeId }, idempotency),
      );
      if (result.created) reportStored(undefined, result.approval, requester);
      else observe(result.approval);
      return result;
    },

    /** Records a vote (see `applyVote`). */
    vote(id: string, vote: VoteInput): Promise<Transition> {
      return transition(id, vote.approver, (a, now) => applyVote(a, vote, now), "vote");
    },

    /** Cancels a pending approval as its requester. */
    cancel(id: string, by: string, reason: string): Promise<Transition> {
      return transition(id, by, (a, now) => cancelApproval(a, by, reason, now), "cancel");
    },

    /** Cancels a pending approval as an admin; the audit's actor is the verified caller. */
    adminCancel(id: string, admin: AdminCaller, reason: string): Promise<Transition> {
      const step = (a: Approval, now: number) => cancelApproval(a, admin.name, reason, now, true, admin);
      return transition(id, verifiedActor(admin), step, "cancel");
    },

    /** An admin's break-glass decision; the audit's actor is the verified caller. */
    resolve(
      id: string,
      admin: AdminCaller,
      decision: "approve" | "deny",
      reason: string,
    ): Promise<Transition> {
      const step = (a: Approval, now: number) => resolveApproval(a, admin.name, decision, reason, now, admin);
      return transition(id, verifiedActor(admin), step);
    },

    expire,

    /**
     * Streams the approval: the current snapshot first, then every stored change, a heartbeat after
     * `heartbeatMs` without change, and ends after the terminal state or when `signal` aborts. It
     * subscribes before reading, so no change between the read and the subscription is lost.
     * @param authorize called with the first snapshot; throw to refuse the watch
     */
    async *watch(
      id: string,
      opts: { signal: AbortSignal; heartbeatMs: number; authorize?: (a: Approval) => void },
    ): AsyncGenerator<WatchEvent> {
      const queue: Approval[] = [];
      let wake: (() => void) | undefined;
      const unsubscribe = store.subscribe(id, (a) => {
        queue.push(a);
        wake?.();
      });
      const onAbort = () => wake?.();
      opts.signal.addEventListener("abort", onAbort);
      openWatches.add(onAbort);
      const stopping = () => {
        if (shuttingDown) throw new UnavailableError("the server is shutting down; watch again");
      };
      try {
        stopping();
        let last = await get(id);
        opts.authorize?.(last);
        yield { approval: last, heartbeat: false };
        while (!isTerminal(last.state) && !opts.signal.aborted) {
          stopping();
          if (queue.length === 0 && isOverdue(last, clock.now())) {
            // The expiry is stored (here or by whoever came first) and arrives through the subscription.
            const settled = await settle(last);
            if (settled.version > last.version && !queue.some((a) => a.version >= settled.version))
              queue.push(settled);
          }
          if (queue.length === 0) {
            // Wake at the deadline, so the stream never repeats a pending snapshot after it.
            const untilDeadline = Math.max(1, last.expireTime - clock.now());
            const changed = await new Promise<boolean>((resolve) => {
              const timer = setTimeout(
                () => {
                  wake = undefined;
                  resolve(false);
                },
                Math.min(opts.heartbeatMs, untilDeadline),
              );
              wake = () => {
                clearTimeout(timer);
                wake = undefined;
                resolve(true);
              };
            });
            if (opts.signal.aborted) return;
            stopping();
            if (!changed) {
              if (!isOverdue(last, clock.now())) yield { approval: last, heartbeat: true };
              continue;
            }
          }
          for (let next = queue.shift(); next !== undefined; next = queue.shift()) {
            if (next.version <= last.version) continue;
            last = next;
            yield { approval: last, heartbeat: false };
            if (isTerminal(last.state)) return;
          }
        }
      } finally {
        wake = undefined;
        opts.signal.removeEventListener("abort", onAbort);
        openWatches.delete(onAbort);
        unsubscribe();
      }
    },

    /**
     * Streams every approval for a decider: a snapshot of every pending approval and of each approval in
     * `ids` (whatever its state), then `snapshot_complete`, then every stored change of every approval,
     * with a heartbeat after `heartbeatMs` without change. It subscribes before reading, so nothing
     * stored meanwhile is lost; an approval may come twice (consumers keep the highest version). A
     * consumer more than `maxBacklog` changes behind is cut off with UNAVAILABLE, to watch again.
     */
    async *watchAll(opts: {
      signal: AbortSignal;
      heartbeatMs: number;
      ids?: readonly string[];
      maxBacklog?: number;
    }): AsyncGenerator<WatchAllEvent> {
      const maxBacklog = opts.maxBacklog ?? 10_000;
      const queue: Approval[] = [];
      let overflow = false;
      let wake: (() => void) | undefined;
      const unsubscribe = store.subscribeAll((a) => {
        if (queue.length >= maxBacklog) overflow = true;
        else queue.push(a);
        wake?.();
      });
      const onAbort = () => wake?.();
      opts.signal.addEventListener("abort", onAbort);
      openWatches.add(onAbort);
      const check = () => {
        if (shuttingDown) throw new UnavailableError("the server is shutting down; watch again");
        if (overflow) throw new UnavailableError("the watcher fell too far behind; watch again");
      };
      try {
        let pageToken = "";
        do {
          check();
          const page = await list({ state: "pending", pageSize: 500, pageToken });
          for (const approval of page.approvals) yield { type: "approval", approval };
          pageToken = page.nextPageToken;
        } while (pageToken !== "" && !opts.signal.aborted);
        for (const id of opts.ids ?? []) {
          const approval = await store.get(id);
          if (approval !== undefined) yield { type: "approval", approval: await settle(approval) };
        }
        yield { type: "snapshot_complete" };
        while (!opts.signal.aborted) {
          check();
          if (queue.length === 0) {
            const changed = await new Promise<boolean>((resolve) => {
              const timer = setTimeout(() => {
                wake = undefined;
                resolve(false);
              }, opts.heartbeatMs);
              wake = () => {
                clearTimeout(timer);
                wake = undefined;
                resolve(true);
              };
            });
            if (opts.signal.aborted) return;
            check();
            if (!changed) {
              yield { type: "heartbeat" };
              continue;
            }
          }
          for (let next = queue.shift(); next !== undefined; next = queue.shift()) {
            yield { type: "approval", approval: next };
          }
        }
      } finally {
        wake = undefined;
        opts.signal.removeEventListener("abort", onAbort);
        openWatches.delete(onAbort);
        unsubscribe();
      }
    },
  };
}
