import type { Approval } from "../domain/types.js";
import type { ChangeListener, Unsubscribe } from "./approval-store.js";

/**
 * In-process fan-out of stored approvals to subscribers, by approval id and to all. A listener that
 * throws is isolated from the others.
 */
export class ChangeFeed {
  private readonly byId = new Map<string, Set<ChangeListener>>();
  private readonly all = new Set<ChangeListener>();

  /** @param onListenerError receives what a listener threw; the other listeners still run. */
  constructor(private readonly onListenerError: (err: unknown) => void = () => {}) {}

  /** Subscribes to one approval. */
  subscribe(id: string, listener: ChangeListener): Unsubscribe {
    let set = this.byId.get(id);
    if (set === undefined) {
      set = new Set();
      this.byId.set(id, set);
    }
    set.add(listener);
    return () => {
      const current = this.byId.get(id);
      if (current === undefined) return;
      current.delete(listener);
      if (current.size === 0) this.byId.delete(id);
    };
  }

  /** Subscribes to every approval. */
  subscribeAll(listener: ChangeListener): Unsubscribe {
    this.all.add(listener);
    return () => {
      this.all.delete(listener);
    };
  }

  /** Delivers a stored approval to its subscribers. */
  publish(approval: Approval): void {
    const set = this.byId.get(approval.id);
    if (set !== undefined) for (const listener of [...set]) this.deliver(listener, approval);
    for (const listener of [...this.all]) this.deliver(listener, approval);
  }

  /** Number of per-approval subscriptions (for tests and metrics). */
  get subscriptionCount(): number {
    let n = 0;
    for (const set of this.byId.values()) n += set.size;
    return n;
  }

  private deliver(listener: ChangeListener, approval: Approval): void {
    try {
      listener(approval);
    } catch (err) {
      this.onListenerError(err);
    }
  }
}
