import { randomUUID } from "node:crypto";
import type { Clock } from "../domain/clock.js";
import type { Leases } from "./leases.js";

/** Leases held in this process only: correct for one replica; use a shared adapter for several. */
export function createMemoryLeases(clock: Clock): Leases {
  const held = new Map<string, { token: string; until: number }>();
  return {
    async acquire(key, ttlMs) {
      const now = clock.now();
      const current = held.get(key);
      if (current !== undefined && current.until > now) return undefined;
      const token = randomUUID();
      held.set(key, { token, until: now + Math.max(1, ttlMs) });
      // Forget lapsed leases now and then, so the map does not grow without bound.
      if (held.size > 10_000) for (const [k, l] of held) if (l.until <= now) held.delete(k);
      return token;
    },
    async release(key, token) {
      if (held.get(key)?.token === token) held.delete(key);
    },
    async close() {
      held.clear();
    },
  };
}
