import { randomUUID } from "node:crypto";
import type { RedisConnections } from "../store/redis-connection.js";
import { toStoreError } from "../store/redis-connection.js";
import type { Leases } from "./leases.js";
import { runSlackLua, slackLuaScript } from "./redis-lua.js";

/** Deletes the lease only while `token` still holds it: a late release never frees someone else's lease. */
const releaseScript = slackLuaScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`);

/** At most this many abandoned tokens are remembered (the oldest are forgotten; their leases lapse). */
const maxAbandoned = 10_000;

/**
 * Leases shared by every replica through Redis: `SET <prefix>lease:<key> <token> NX PX <ttl>` to take
 * one (atomic on the master, lapsing by itself when its holder dies), a compare-and-delete script to give
 * it back.
 *
 * A call whose reply is lost (a time-out, a cut connection) may still have been applied: an acquire may
 * have taken the lease, a release may not have given it back. Such tokens are remembered and given back
 * (compare-and-delete, so only while they still hold the lease) before this process takes the same key
 * again, so a Redis hiccup does not keep the key locked until the lease lapses.
 *
 * Built on the server's Redis connections, which it does not own: `close()` leaves them open (the store
 * closes them).
 * @param connections the server's Redis connections (their key prefix is used)
 */
export function createRedisLeases(connections: RedisConnections): Leases {
  const prefix = `${connections.settings.keyPrefix}lease:`;
  /** Key → a token of ours that may still hold it in Redis although nobody here uses it. */
  const abandoned = new Map<string, string>();

  const abandon = (key: string, token: string) => {
    abandoned.delete(key);
    abandoned.set(key, token);
    if (abandoned.size > maxAbandoned) {
      const oldest = abandoned.keys().next();
      if (oldest.done !== true) abandoned.delete(oldest.value);
    }
  };
  const giveBack = (key: string, token: string) =>
    runSlackLua(connections, releaseScript, [`${prefix}${key}`], [token]);

  return {
    async acquire(key, ttlMs) {
      const stale = abandoned.get(key);
      if (stale !== undefined) {
        await giveBack(key, stale);
        if (abandoned.get(key) === stale) abandoned.delete(key);
      }
      await connections.whenReady();
      const token = randomUUID();
      try {
        const reply = await connections.command.set(
          `${prefix}${key}`,
          token,
          "PX",
          Math.max(1, Math.ceil(ttlMs)),
          "NX",
        );
        return reply === "OK" ? token : undefined;
      } catch (err) {
        abandon(key, token);
        throw toStoreError(err);
      }
    },
    async release(key, token) {
      try {
        await giveBack(key, token);
      } catch (err) {
        abandon(key, token);
        throw err;
      }
    },
    async close() {},
  };
}
