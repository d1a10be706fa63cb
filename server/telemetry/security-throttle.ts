import type { Clock } from "../domain/clock.js";
import type { SecurityEventType, SecurityPeer, SecuritySummary } from "./security-events.js";

/** Options of `createSecurityThrottle`. */
export interface SecurityThrottleOptions {
  clock: Clock;
  /** Length of an interval: one summary per type and peer per interval at most. */
  intervalMs: number;
  /**
   * Type-and-peer pairs tracked at once; beyond, new peers share one entry of address `*` (so a flood
   * from many addresses cannot grow memory or the log either). @default 10000
   */
  maxPeers?: number;
  /** Receives the count of each pair that had events suppressed, at every interval's end and at close. */
  onSummary: (summary: SecuritySummary) => void;
}

/**
 * Aggregates refused calls, so that a flood of them cannot grow the audit log and the server log
 * without bound: the first event of a type and peer is written in full, the next ones in the same
 * interval are only counted, and their count is reported once per interval (`onSummary`). A pair quiet
 * for a whole interval is forgotten: its next event is written in full again.
 */
export interface SecurityThrottle {
  /** Counts one event: true when it is to be written in full, false when a summary will report it. */
  admit(type: SecurityEventType, peer: SecurityPeer): boolean;
  /** Ends the interval: reports every pair with suppressed events, forgets the quiet ones. */
  flush(): void;
  /** Stops the timer and reports what is pending. */
  close(): void;
}

interface Pending {
  type: SecurityEventType;
  peer: SecurityPeer;
  suppressed: number;
  sinceMs: number;
}

/** Creates a throttle whose intervals end on a timer (unref'd) every `intervalMs`. */
export function createSecurityThrottle(options: SecurityThrottleOptions): SecurityThrottle {
  const { clock, onSummary } = options;
  const maxPeers = options.maxPeers ?? 10_000;
  const pending = new Map<string, Pending>();
  let closed = false;

  function flush(): void {
    const now = clock.now();
    for (const [key, entry] of pending) {
      if (entry.suppressed === 0) {
        pending.delete(key);
        continue;
      }
      const { type, peer, suppressed, sinceMs } = entry;
      entry.suppressed = 0;
      entry.sinceMs = now;
      onSummary({ type, peer, suppressed, sinceMs });
    }
  }
  const timer = setInterval(flush, options.intervalMs);
  timer.unref();

  return {
    admit(type, peer) {
      if (closed) return true;
      let key = JSON.stringify([type, peer.address, peer.identity ?? ""]);
      let entry = pending.get(key);
      if (entry === undefined && pending.size >= maxPeers) {
        peer = { address: "*" };
        key = JSON.stringify([type, "*", ""]);
        entry = pending.get(key);
      }
      if (entry !== undefined) {
        entry.suppressed += 1;
        return false;
      }
      pending.set(key, { type, peer, suppressed: 0, sinceMs: clock.now() });
      return true;
    },
    flush,
    close() {
      if (closed) return;
      closed = true;
      clearInterval(timer);
      flush();
      pending.clear();
    },
  };
}
