import { Redis, type RedisOptions } from "ioredis";
import { DomainError, UnavailableError } from "../domain/errors.js";

/** Where Redis is and how long a call may take: one node by URL, or a master found through Sentinel. */
export type RedisSettings = (
  | {
      /** `redis://[:password@]host:port[/db]` or `rediss://...` (TLS). */
      url: string;
    }
  | {
      /** Sentinels to ask for the master. */
      sentinels: { host: string; port: number }[];
      /** The master's name in the Sentinel configuration. */
      masterName: string;
    }
) & {
  /** Password of the Redis server (overrides one in the URL). */
  password?: string;
  /** PEM CA that signs the Redis server certificate (`rediss://`); the system CAs otherwise. */
  tlsCa?: string;
  /**
   * Longest time a store call may take before it fails with UNAVAILABLE; also the connect timeout.
   * @default 2000
   */
  commandTimeoutMs: number;
  /**
   * Replicas that must have a write before it is acknowledged (Redis `WAIT`); 0 acknowledges as soon as
   * the master has it. With Sentinel, 1 makes a `kill -9` of the master lose no acknowledged write.
   * @default 0
   */
  waitReplicas: number;
  /** Prefix of every key and channel. @default "countersign:" */
  keyPrefix: string;
};

/** The connections a Redis-backed server holds: one for commands, one for the change feed. */
export interface RedisConnections {
  /** Commands: fails fast while disconnected (no offline queue), every call bounded by the timeout. */
  command: Redis;
  /** Subscriber of the change feed; resubscribes by itself after a reconnect. */
  subscriber: Redis;
  settings: RedisSettings;
  /**
   * Resolves when the command connection is ready: at once while connected, else when it reconnects.
   * Calls wait here (nothing is queued inside ioredis, so nothing is sent after its caller gave up).
   * @throws UnavailableError after `commandTimeoutMs` without a connection
   */
  whenReady(): Promise<void>;
  /** Closes both connections. */
  close(): Promise<void>;
}

/** ioredis options shared by both connections. */
function baseOptions(settings: RedisSettings): RedisOptions {
  const timeout = settings.commandTimeoutMs;
  const options: RedisOptions = {
    connectTimeout: timeout,
    // Reconnect quickly and forever; calls made meanwhile fail at once instead of queueing.
    retryStrategy: (attempt) => Math.min(50 * attempt, 500),
    // A write sent to a master that was demoted to replica: reconnect, which asks Sentinel again.
    reconnectOnError: (err) => err.message.includes("READONLY"),
    ...(settings.password === undefined ? {} : { password: settings.password }),
  };
  if ("sentinels" in settings) {
    Object.assign(options, {
      sentinels: settings.sentinels,
      name: settings.masterName,
      // Without it a frozen master stalls writes until it comes back: it drops the connection as soon
      // as a Sentinel announces a new master.
      failoverDetector: true,
      sentinelRetryStrategy: (attempt: number) => Math.min(100 * attempt, 1_000),
      sentinelMaxConnections: 10,
    } satisfies RedisOptions);
  } else if (settings.tlsCa !== undefined && settings.url.startsWith("rediss:")) {
    options.tls = { ca: settings.tlsCa };
  }
  return options;
}

/**
 * Opens the Redis connections of a server. Never throws for an unreachable Redis: the connections keep
 * retrying in the background, and calls fail with UNAVAILABLE until Redis answers.
 * @param onError receives connection errors (they repeat while Redis is down)
 */
export function createRedisConnections(
  settings: RedisSettings,
  onError: (err: Error, connection: "command" | "subscriber") => void = () => {},
): RedisConnections {
  const base = baseOptions(settings);
  const commandOptions: RedisOptions = {
    ...base,
    enableOfflineQueue: false,
    // A call in flight when the connection drops fails at once and is not re-sent on the next
    // connection: the caller hears UNAVAILABLE, and its retry is idempotent.
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    commandTimeout: settings.commandTimeoutMs,
  };
  const subscriberOptions: RedisOptions = {
    ...base,
    enableOfflineQueue: true,
    maxRetriesPerRequest: null,
    autoResubscribe: true,
  };
  const command = "url" in settings ? new Redis(settings.url, commandOptions) : new Redis(commandOptions);
  const subscriber =
    "url" in settings ? new Redis(settings.url, subscriberOptions) : new Redis(subscriberOptions);
  command.on("error", (err: Error) => onError(err, "command"));
  let closed = false;
  const commandReady = readyGate(command, settings.commandTimeoutMs, () => closed);
  subscriber.on("error", (err: Error) => onError(err, "subscriber"));
  return {
    command,
    subscriber,
    settings,
    whenReady: () => commandReady.wait(),
    async close() {
      closed = true;
      command.disconnect();
      subscriber.disconnect();
    },
  };
}

/** Waits (bounded) for a connection to be ready; one shared listener however many callers wait. */
function readyGate(connection: Redis, timeoutMs: number, isClosed: () => boolean) {
  let ready: Promise<void> | undefined;
  return {
    wait(): Promise<void> {
      if (connection.status === "ready") return Promise.resolve();
      if (isClosed()) return Promise.reject(new UnavailableError("the Redis connection is closed"));
      ready ??= new Promise<void>((resolve) => {
        connection.once("ready", () => {
          ready = undefined;
          resolve();
        });
      });
      const shared = ready;
      return new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () =>
            reject(
              new UnavailableError(
                `the approval store is unavailable (no connection to Redis within ${timeoutMs} ms)`,
              ),
            ),
          timeoutMs,
        );
        shared.then(() => {
          clearTimeout(timer);
          resolve();
        }, reject);
      });
    },
  };
}

/** Reply errors that mean "this Redis cannot take the call right now", not a bug in the call. */
const transientReplies = /(^|\s)(READONLY|LOADING|MASTERDOWN|BUSY|TRYAGAIN|NOREPLICAS|CLUSTERDOWN)\s/;

/**
 * Turns what a Redis call threw into the store's errors: connection loss, timeouts and a master that is
 * not (yet) writable become `UnavailableError` (the call is safe to retry); domain errors pass through;
 * other reply errors (a bug in a script) are kept as they are, so they surface as INTERNAL.
 */
export function toStoreError(err: unknown): Error {
  if (err instanceof DomainError) return err;
  if (err instanceof Error && err.name === "ReplyError" && !transientReplies.test(err.message)) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new UnavailableError(`the approval store is unavailable (${message})`, { cause: err });
}
