import type { Claims } from "./claims.js";
import { type RedisConnections, toStoreError } from "./redis-connection.js";

/**
 * Claims shared by every replica through Redis: one `SET key owner NX PX ttl`, atomic on the master.
 * @param connections the server's Redis connections
 * @param keyPrefix prefix of the claim keys (the store's key prefix)
 * @param owner recorded as the claim's value, for debugging (e.g. host name and pid)
 */
export function createRedisClaims(
  connections: RedisConnections,
  keyPrefix: string,
  owner = `pid-${process.pid}`,
): Claims {
  const redis = connections.command;
  return {
    async claimOnce(key, ttlMs) {
      await connections.whenReady();
      try {
        const reply = await redis.set(
          `${keyPrefix}claim:${key}`,
          owner,
          "PX",
          Math.max(1, Math.ceil(ttlMs)),
          "NX",
        );
        return reply === "OK";
      } catch (err) {
        throw toStoreError(err);
      }
    },
  };
}
