import { ConflictError } from "../domain/errors.js";
import type { Approval, ApprovalState } from "../domain/types.js";
import type {
  ApprovalPage,
  ApprovalQuery,
  ApprovalStats,
  ApprovalStore,
  ChangeListener,
  CreateResult,
  PurgeCandidate,
  Unsubscribe,
} from "./approval-store.js";
import { ChangeFeed } from "./change-feed.js";
import { decodePageToken, encodePageToken } from "./page-token.js";

/** Options of the in-memory store. */
export interface MemoryApprovalStoreOptions {
  /** Receives errors thrown by change listeners. */
  onListenerError?: (err: unknown) => void;
  /** Time source of `restore` (the start of a restored approval's retention). @default Date.now */
  now?: () => number;
}

/**
 * The development store: everything in this process, nothing persisted. Transitions are atomic because
 * each method's read-check-write runs without awaiting.
 */
export function createMemoryApprovalStore(options: MemoryApprovalStoreOptions = {}): ApprovalStore {
  const approvals = new Map<string, Approval>();
  /** Ids in creation order; ids are time-sortable, so this is also id order. */
  const order: string[] = [];
  const idempotency = new Map<string, { id: string; fingerprint: string }>();
  const lineages = new Map<string, number[]>();
  const expiries = new ExpiryHeap();
  const feed = new ChangeFeed(options.onListenerError);
  /** Terminal approvals by the start of their retention; `retention` holds the current entry of each. */
  const retained = new ExpiryHeap();
  const retention = new Map<string, { at: number; archived: boolean }>();
  const idempotencyOf = new Map<string, string>();
  const now = options.now ?? Date.now;

  function retain(a: Approval, at: number, archived: boolean): void {
    retention.set(a.id, { at, archived });
    retained.push(at, a.id);
  }

  const store: ApprovalStore = {
    async create(approval, idem): Promise<CreateResult> {
      if (idem !== undefined) {
        const known = idempotency.get(idem.key);
        if (known !== undefined) {
          const existing = approvals.get(known.id);
          if (known.fingerprint !== idem.fingerprint || existing === undefined) {
            throw new ConflictError(
              `idempotency key "${idem.key}" was already used for a different request (approval ${known.id})`,
            );
          }
          return { approval: existing, created: false };
        }
      }
      const stored: Approval = { ...approval, version: 1 };
      approvals.set(stored.id, stored);
      order.push(stored.id);
      if (idem !== undefined) {
        idempotency.set(idem.key, { id: stored.id, fingerprint: idem.fingerprint });
        idempotencyOf.set(stored.id, idem.key);
      }
      if (stored.state !== "pending") retain(stored, stored.decideTime, false);
      const lineage = lineages.get(stored.lineageId);
      if (lineage === undefined) lineages.set(stored.lineageId, [stored.createTime]);
      else lineage.push(stored.createTime);
      if (stored.state === "pending") expiries.push(stored.expireTime, stored.id);
      feed.publish(stored);
      return { approval: stored, created: true };
    },

    async get(id) {
      return approvals.get(id);
    },

    async compareAndSet(next, expectedVersion) {
      const current = approvals.get(next.id);
      if (current === undefined || current.version !== expectedVersion) return undefined;
      const stored: Approval = { ...next, version: expectedVersion + 1 };
      approvals.set(stored.id, stored);
      const kept = retention.get(stored.id);
      if (current.state === "pending" && stored.state !== "pending") retain(stored, stored.decideTime, false);
      // A changed version is no longer the one in the archive.
      else if (kept?.archived) retention.set(stored.id, { at: kept.at, archived: false });
      feed.publish(stored);
      return stored;
    },

    async list(query: ApprovalQuery): Promise<ApprovalPage> {
      let end = order.length;
      if (query.pageToken !== undefined && query.pageToken !== "") {
        const after = decodePageToken(query.pageToken);
        end = lowerBound(order, after);
      }
      const page: Approval[] = [];
      let i = end - 1;
      for (; i >= 0 && page.length < query.pageSize; i--) {
        const a = approvals.get(order[i] as string);
        if (a !== undefined && matches(a, query)) page.push(a);
      }
      const more = page.length === query.pageSize && i >= 0;
      const last = page[page.length - 1];
      return { approvals: page, nextPageToken: more && last ? encodePageToken(last.id) : "" };
    },

    async stats(): Promise<ApprovalStats> {
      const counts: Record<ApprovalState, number> = {
        pending: 0,
        approved: 0,
        denied: 0,
        expired: 0,
        cancelled: 0,
      };
      let oldestPending: Approval | undefined;
      for (const a of approvals.values()) {
        counts[a.state]++;
        if (
          a.state === "pending" &&
          (oldestPending === undefined || a.createTime < oldestPending.createTime)
        ) {
          oldestPending = a;
        }
      }
      return oldestPending === undefined ? { counts } : { counts, oldestPending };
    },

    async dueForExpiry(now, limit) {
      const due: { at: number; id: string }[] = [];
      while (due.length < limit) {
        const top = expiries.peek();
        if (top === undefined || top.at > now) break;
        expiries.pop();
        if (approvals.get(top.id)?.state === "pending") due.push(top);
      }
      // A query, not a dequeue: an approval stays due until a transition takes it out of pending, so one
      // whose expiry failed (lost CAS, error) is found again by the next run.
      for (const entry of due) expiries.push(entry.at, entry.id);
      return due.map((entry) => entry.id);
    },

    async countLineage(lineageId, since) {
      return (lineages.get(lineageId) ?? []).filter((t) => t >= since).length;
    },

    async dueForPurge(before, limit): Promise<PurgeCandidate[]> {
      const due: { at: number; id: string }[] = [];
      const candidates: PurgeCandidate[] = [];
      while (candidates.length < limit) {
        const top = retained.peek();
        if (top === undefined || top.at > before) break;
        retained.pop();
        const current = retention.get(top.id);
        const approval = approvals.get(top.id);
        if (current?.at !== top.at || approval === undefined) continue;
        due.push(top);
        candidates.push({ approval, archived: current.archived });
      }
      for (const entry of due) retained.push(entry.at, entry.id);
      return candidates;
    },

    async purge(id, version) {
      const current = approvals.get(id);
      if (current === undefined || current.version !== version) return false;
      approvals.delete(id);
      const at = lowerBound(order, id);
      if (order[at] === id) order.splice(at, 1);
      retention.delete(id);
      const key = idempotencyOf.get(id);
      if (key !== undefined && idempotency.get(key)?.id === id) idempotency.delete(key);
      idempotencyOf.delete(id);
      const lineage = lineages.get(current.lineageId);
      const i = lineage?.indexOf(current.createTime) ?? -1;
      if (lineage !== undefined && i >= 0) lineage.splice(i, 1);
      return true;
    },

    async restore(approval) {
      const current = approvals.get(approval.id);
      if (current !== undefined && current.version >= approval.version) return false;
      approvals.set(approval.id, approval);
      if (current === undefined) {
        order.splice(lowerBound(order, approval.id), 0, approval.id);
        const lineage = lineages.get(approval.lineageId);
        if (lineage === undefined) lineages.set(approval.lineageId, [approval.createTime]);
        else lineage.push(approval.createTime);
      }
      if (approval.state === "pending") {
        retention.delete(approval.id);
        expiries.push(approval.expireTime, approval.id);
      } else {
        retain(approval, now(), true);
      }
      feed.publish(approval);
      return true;
    },

    subscribe(id: string, listener: ChangeListener): Unsubscribe {
      return feed.subscribe(id, listener);
    },

    subscribeAll(listener: ChangeListener): Unsubscribe {
      return feed.subscribeAll(listener);
    },

    async ping() {},

    async close() {},
  };
  return store;
}

function matches(a: Approval, q: ApprovalQuery): boolean {
  return (
    (q.state === undefined || a.state === q.state) &&
    (q.action === undefined || a.action === q.action) &&
    (q.requester === undefined || a.requester === q.requester) &&
    (q.createdAfter === undefined || a.createTime >= q.createdAfter) &&
    (q.createdBefore === undefined || a.createTime < q.createdBefore)
  );
}

/** Index of the first element ≥ `value` in a sorted array. */
function lowerBound(sorted: string[], value: string): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((sorted[mid] as string) < value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** A binary min-heap of (expire time, id). Entries of approvals no longer pending are skipped on pop. */
class ExpiryHeap {
  private readonly items: { at: number; id: string }[] = [];

  push(at: number, id: string): void {
    const items = this.items;
    items.push({ at, id });
    let i = items.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if ((items[parent] as { at: number }).at <= at) break;
      [items[i], items[parent]] = [
        items[parent] as { at: number; id: string },
        items[i] as { at: number; id: string },
      ];
      i = parent;
    }
  }

  peek(): { at: number; id: string } | undefined {
    return this.items[0];
  }

  pop(): void {
    const items = this.items;
    const last = items.pop();
    if (last === undefined || items.length === 0) return;
    items[0] = last;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let smallest = i;
      if (l < items.length && (items[l] as { at: number }).at < (items[smallest] as { at: number }).at)
        smallest = l;
      if (r < items.length && (items[r] as { at: number }).at < (items[smallest] as { at: number }).at)
        smallest = r;
      if (smallest === i) break;
      [items[i], items[smallest]] = [
        items[smallest] as { at: number; id: string },
        items[i] as { at: number; id: string },
      ];
      i = smallest;
    }
  }
}
