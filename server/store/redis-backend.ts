import type { ApprovalStore } from "./approval-store.js";
import type { Claims } from "./claims.js";
import { createRedisApprovalStore } from "./redis-approval-store.js";
import { createRedisClaims } from "./redis-claims.js";
import { createRedisConnections, type RedisConnections, type RedisSettings } from "./redis-connection.js";

/** The logger calls the Redis backend makes. */
export interface RedisBackendLog {
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
  error(fields: object, message: string): void;
}

/** Everything a server shares through Redis. */
export interface RedisBackend {
  store: ApprovalStore;
  claims: Claims;
  /** The connections, for other components that share Redis (closed by `store.close()`). */
  connections: RedisConnections;
}

/** Repeated connection errors are logged at most this often. */
const errorLogIntervalMs = 30_000;

/**
 * Opens the Redis store, claims and their connections, logging connection trouble without flooding the
 * log (the first error, then at most one per 30 s, and each reconnection). Never waits for Redis.
 */
export function openRedisBackend(
  settings: RedisSettings,
  log: RedisBackendLog,
  onListenerError: (err: unknown) => void,
): RedisBackend {
  let lastLogged = 0;
  let suppressed = 0;
  const target = "url" in settings ? redactUrl(settings.url) : `sentinel:${settings.masterName}`;
  const connections = createRedisConnections(settings, (err, connection) => {
    const now = Date.now();
    if (now - lastLogged < errorLogIntervalMs) {
      suppressed++;
      return;
    }
    log.error(
      { err: err.message, connection, redis: target, suppressed },
      "Redis connection failed; retrying",
    );
    lastLogged = now;
    suppressed = 0;
  });
  connections.command.on("ready", () => {
    log.info({ redis: target }, "connected to Redis");
    lastLogged = 0;
  });
  const store = createRedisApprovalStore({
    connections,
    onListenerError,
    onFeedError: (err) => log.warn({ err }, "change feed: catch-up or message failed; retrying"),
  });
  return { store, claims: createRedisClaims(connections, settings.keyPrefix), connections };
}

/** The URL without its password, for logs. */
function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password !== "") parsed.password = "***";
    return parsed.toString();
  } catch {
    return "redis";
  }
}
