/**
 * Leases: "one replica at a time works on this". The Slack gateway takes an approval's lease around each
 * pass over its Slack messages, so two replicas never post or edit the same message at once, and a
 * replica that dies only delays the work until its lease lapses. Unlike a claim (`Claims.claimOnce`,
 * fire once), a lease is given back when the work is done. Adapters share leases between replicas
 * (memory: one process; Redis: `SET key token NX PX ttl`, and a compare-and-delete script for `release`).
 */
export interface Leases {
  /**
   * Takes the lease on `key` for `ttlMs`. Resolves to a token when this caller got it, or undefined when
   * someone else holds it. A lapsed lease can be taken again.
   */
  acquire(key: string, ttlMs: number): Promise<string | undefined>;
  /** Gives the lease back; a no-op when `token` no longer holds it (it lapsed and was taken). */
  release(key: string, token: string): Promise<void>;
  /** Releases connections and timers. */
  close(): Promise<void>;
}
