/**
 * Claims: "exactly one replica does this". A timer that must fire once across every replica (retention,
 * a Slack reminder or escalation) claims a key first and runs only when the claim succeeds.
 *
 * ```ts
 * if (await claims.claimOnce(`reminder:${approval.id}:${n}`, 24 * 3_600_000)) await postReminder(approval);
 * ```
 */
export interface Claims {
  /**
   * Claims `key` for `ttlMs`: true for the one caller that got it (on any replica sharing the store),
   * false for every other caller until the claim lapses. Choose a key that names the one occurrence
   * (e.g. include the reminder number) and a TTL longer than the window in which others could try.
   * @throws UnavailableError when the store cannot be reached (nobody got the claim; try again later)
   */
  claimOnce(key: string, ttlMs: number): Promise<boolean>;
}

/**
 * Claims within one process (for the memory store, where there is one replica).
 * @param now time source (inject a manual clock in tests) @default Date.now
 */
export function createMemoryClaims(now: () => number = Date.now): Claims {
  const held = new Map<string, number>();
  return {
    async claimOnce(key, ttlMs) {
      const t = now();
      const until = held.get(key);
      if (until !== undefined && until > t) return false;
      held.set(key, t + ttlMs);
      // Forget lapsed claims now and then, so the map does not grow without bound.
      if (held.size > 10_000) for (const [k, u] of held) if (u <= t) held.delete(k);
      return true;
    },
  };
}
