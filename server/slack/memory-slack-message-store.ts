import type { Clock } from "../domain/clock.js";
import type { SlackMessageRecord, SlackMessageStore } from "./slack-message-store.js";

/** Options of `createMemorySlackMessageStore`. */
export interface MemorySlackMessageStoreOptions {
  /** Time source for `expire`. */
  clock: Clock;
}

/** Message records in this process only: correct for one replica; use a shared adapter for several. */
export function createMemorySlackMessageStore(options: MemorySlackMessageStoreOptions): SlackMessageStore {
  const { clock } = options;
  const byApproval = new Map<string, { records: Map<string, SlackMessageRecord>; expiresAt: number }>();

  const entry = (id: string) => {
    const found = byApproval.get(id);
    if (found === undefined) return undefined;
    if (found.expiresAt <= clock.now()) {
      byApproval.delete(id);
      return undefined;
    }
    return found;
  };
  const sweep = () => {
    const now = clock.now();
    for (const [id, e] of byApproval) if (e.expiresAt <= now) byApproval.delete(id);
  };

  return {
    async list(approvalId) {
      return [...(entry(approvalId)?.records.values() ?? [])].map((r) => ({ ...r }));
    },
    async put(approvalId, record) {
      let e = entry(approvalId);
      if (e === undefined) {
        e = { records: new Map(), expiresAt: Number.POSITIVE_INFINITY };
        byApproval.set(approvalId, e);
      }
      e.records.set(record.key, { ...record });
    },
    async remove(approvalId, key) {
      entry(approvalId)?.records.delete(key);
    },
    async expire(approvalId, afterMs) {
      const e = entry(approvalId);
      if (e !== undefined) e.expiresAt = clock.now() + afterMs;
      sweep();
    },
    async openApprovals(limit) {
      const open: string[] = [];
      for (const [id, e] of byApproval) {
        if (open.length >= limit) break;
        if (e.expiresAt === Number.POSITIVE_INFINITY && e.records.size > 0) open.push(id);
      }
      return open;
    },
    async close() {
      byApproval.clear();
    },
  };
}
