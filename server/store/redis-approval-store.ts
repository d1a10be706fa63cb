import { randomUUID } from "node:crypto";
import type { ChainableCommander } from "ioredis";
import { ConflictError, StoreDataLostError, UnavailableError, ValidationError } from "../domain/errors.js";
import type { Approval, ApprovalState } from "../domain/types.js";
import type {
  ApprovalPage,
  ApprovalQuery,
  ApprovalStats,
  ApprovalStore,
  ChangeListener,
  CreateResult,
  PurgeCandidate,
  Unsubscribe,
} from "./approval-store.js";
import { ChangeFeed } from "./change-feed.js";
import { type RedisConnections, toStoreError } from "./redis-connection.js";
import {
  allScripts,
  compareAndSetScript,
  createScript,
  dueForPurgeScript,
  type LuaScript,
  listScript,
  purgeScript,
  restoreScript,
  statsScript,
} from "./redis-scripts.js";

/** Options of the Redis store. */
export interface RedisApprovalStoreOptions {
  connections: RedisConnections;
  /** Receives errors thrown by change listeners. */
  onListenerError?: (err: unknown) => void;
  /** Receives problems of the change feed (a catch-up that failed and is retried, a bad message). */
  onFeedError?: (err: unknown) => void;
  /**
   * Most ids one `list` call examines before it returns a (possibly short) page with a token to go on,
   * so a query whose filters match little never scans without bound.
   * @default 2000
   */
  listScanBudget?: number;
}

const states: ApprovalState[] = ["pending", "approved", "denied", "expired", "cancelled"];
/** How long a delivered version is remembered, to drop the echo of a change this replica published. */
const dedupeWindowMs = 60_000;
/** Changes up to this long before the feed's connection was lost are re-read after it comes back. */
const catchUpMarginMs = 30_000;
const catchUpRetryMs = 500;

/** Page tokens of this adapter: the create time and id of the last approval examined. */
function encodeRedisPageToken(score: string, id: string): string {
  return Buffer.from(`r1:${score}:${id}`).toString("base64url");
}

function decodeRedisPageToken(token: string): { score: string; id: string } {
  const match = /^r1:(\d{1,16}):([A-Za-z0-9_-]{1,64})$/.exec(Buffer.from(token, "base64url").toString());
  if (match === null) throw ValidationError.of("page_token", "is not a token from a previous page");
  return { score: match[1] as string, id: match[2] as string };
}

function isNoScript(err: unknown): boolean {
  return err instanceof Error && err.message.startsWith("NOSCRIPT");
}

/**
 * The production store: approvals in Redis, shared by any number of replicas. Every transition is one
 * Lua script (record, indexes and change notification together); queries walk sorted-set indexes, never
 * the keyspace; the change feed is Redis pub/sub, caught up from state after its connection comes back.
 */
export function createRedisApprovalStore(options: RedisApprovalStoreOptions): ApprovalStore {
  const { command: redis, subscriber, settings } = options.connections;
  const prefix = settings.keyPrefix;
  const channel = `${prefix}changes`;
  const budget = options.listScanBudget ?? 2_000;
  const onFeedError = options.onFeedError ?? (() => {});
  const feed = new ChangeFeed(options.onListenerError);
  /** Highest version delivered per approval, in order of delivery, for `dedupeWindowMs`. */
  const delivered = new Map<string, { version: number; at: number }>();
  /** Approvals with per-approval subscribers, and how many. */
  const watched = new Map<string, number>();
  let allListeners = 0;
  let closed = false;
  let lostAt: number | undefined;
  let subscribed = false;
  let catchUpTimer: NodeJS.Timeout | undefined;
  /** This replica's view of the store's epoch (`p epoch`), read or written at the first ping. */
  let epoch: string | undefined;
  /** Set for good once the epoch was found gone or changed: the data this replica served is lost. */
  let dataLost: StoreDataLostError | undefined;

  /**
   * Adopts the store's epoch at the first ping (writing one if there is none: a new store), then checks
   * at every ping that it is still there, so a Redis that restarted empty or was flushed is noticed.
   * @throws StoreDataLostError once the epoch is gone or different
   */
  async function checkEpoch(): Promise<void> {
    if (dataLost !== undefined) throw dataLost;
    const key = `${prefix}epoch`;
    let current: string | null;
    try {
      if (epoch === undefined) {
        await redis.set(key, `${new Date().toISOString()} ${randomUUID()}`, "NX");
        epoch = (await redis.get(key)) ?? undefined;
        return;
      }
      current = await redis.get(key);
    } catch (err) {
      throw toStoreError(err);
    }
    if (current === epoch) return;
    dataLost = new StoreDataLostError(
      `Redis lost the approval store's data: the epoch key ${key} is ${
        current === null ? "gone" : `now "${current}" (was "${epoch}")`
      } (restarted empty, flushed, or another Redis); this replica serves nothing until restarted ` +
        "after the data is restored (runbook: Store wiped)",
    );
    throw dataLost;
  }

  /** Runs a script by SHA, sending its body only when Redis does not know it yet. */
  async function run(script: LuaScript, args: (string | number)[], keys: string[] = []): Promise<unknown> {
    if (dataLost !== undefined) throw dataLost;
    await options.connections.whenReady();
    try {
      try {
        return await redis.evalsha(script.sha, keys.length, ...keys, prefix, ...args);
      } catch (err) {
        if (!isNoScript(err)) throw err;
        return await redis.eval(script.lua, keys.length, ...keys, prefix, ...args);
      }
    } catch (err) {
      throw toStoreError(err);
    }
  }

  /**
   * Runs a write script and, when configured, waits until enough replicas have it, in one round trip.
   * @throws UnavailableError when the replicas did not confirm in time (the write may have happened;
   *   a retry is idempotent)
   */
  async function write(script: LuaScript, args: (string | number)[]): Promise<unknown> {
    if (dataLost !== undefined) throw dataLost;
    if (settings.waitReplicas === 0) return run(script, args);
    const send = async (body: boolean) => {
      let pipeline: ChainableCommander = redis.pipeline();
      pipeline = body
        ? pipeline.eval(script.lua, 0, prefix, ...args)
        : pipeline.evalsha(script.sha, 0, prefix, ...args);
      return pipeline
        .wait(settings.waitReplicas, Math.max(1, Math.floor(settings.commandTimeoutMs / 2)))
        .exec();
    };
    let replies: [Error | null, unknown][] | null;
    await options.connections.whenReady();
    try {
      replies = await send(false);
      if (replies !== null && isNoScript(replies[0]?.[0])) replies = await send(true);
    } catch (err) {
      throw toStoreError(err);
    }
    const [scriptReply, waitReply] = replies ?? [];
    if (scriptReply === undefined || waitReply === undefined)
      throw new UnavailableError("no reply from Redis");
    if (scriptReply[0] !== null) throw toStoreError(scriptReply[0]);
    const result = scriptReply[1];
    if (waitReply[0] !== null || Number(waitReply[1]) < settings.waitReplicas) {
      return { result, unconfirmed: waitReply[0] ?? `${String(waitReply[1])} replica(s) confirmed` };
    }
    return result;
  }

  /** Throws for a write the replicas did not confirm, after delivering what it stored. */
  function confirmed<T>(reply: unknown, onStored: (result: unknown) => T): T {
    if (reply !== null && typeof reply === "object" && "unconfirmed" in reply) {
      const { result, unconfirmed } = reply as { result: unknown; unconfirmed: unknown };
      onStored(result);
      throw new UnavailableError(
        `the change was written but ${settings.waitReplicas} replica(s) did not confirm it in time (${String(
          unconfirmed,
        )}); retry`,
      );
    }
    return onStored(reply);
  }

  /**
   * Delivers a stored version to local listeners once, whichever of the write or its echo comes first.
   * @param again deliver even a version delivered before (a restore after a purge)
   */
  function deliver(approval: Approval, again = false): void {
    const seen = delivered.get(approval.id);
    if (!again && seen !== undefined && seen.version >= approval.version) return;
    const now = Date.now();
    delivered.delete(approval.id);
    delivered.set(approval.id, { version: approval.version, at: now });
    for (const [id, entry] of delivered) {
      if (entry.at > now - dedupeWindowMs) break;
      delivered.delete(id);
    }
    feed.publish(approval);
  }

  subscriber.on("message", (from: string, message: string) => {
    if (from !== channel) return;
    let approval: Approval;
    try {
      approval = JSON.parse(message) as Approval;
    } catch (err) {
      onFeedError(err);
      return;
    }
    deliver(approval);
  });
  /** True while the feed's subscription is in place; `feedWaiters` wait for it to be. */
  let feedLive = false;
  const feedWaiters = new Set<() => void>();
  subscriber.on("close", () => {
    lostAt ??= Date.now();
    feedLive = false;
  });
  /** (Re)subscribes; after a reconnect, catches up from state once the subscription is in place. */
  const subscribeFeed = () => {
    subscriber.subscribe(channel).then(
      () => {
        if (subscribed && lostAt !== undefined) catchUp(lostAt);
        subscribed = true;
        lostAt = undefined;
        feedLive = subscriber.status === "ready";
        if (feedLive) for (const wake of [...feedWaiters]) wake();
      },
      (err: unknown) => onFeedError(err),
    );
  };
  subscribeFeed();

  /** Loads the scripts on every (re)connection, so the first call after a failover needs no retry. */
  const loadScripts = () => {
    Promise.all(allScripts.map((script) => redis.script("LOAD", script.lua))).catch((err: unknown) =>
      onFeedError(err),
    );
  };
  if (redis.status === "ready") loadScripts();
  redis.on("ready", loadScripts);
  subscriber.on("ready", () => {
    if (subscribed) subscribeFeed();
  });

  /**
   * After the feed's connection came back: re-reads every approval with subscribers (and, when someone
   * listens to all, every approval changed since shortly before the connection was lost) and delivers
   * what is newer than what was delivered. Retried until it succeeds or the connection is lost again.
   */
  function catchUp(since: number): void {
    if (catchUpTimer !== undefined) clearTimeout(catchUpTimer);
    catchUpTimer = undefined;
    const attempt = async () => {
      const ids = new Set(watched.keys());
      if (allListeners > 0) {
        const changed = (await redis
          .zrangebyscore(`${prefix}i:changed`, since - catchUpMarginMs, "+inf", "LIMIT", 0, 100_000)
          .catch((err: unknown) => {
            throw toStoreError(err);
          })) as string[];
        for (const id of changed) ids.add(id);
      }
      const list = [...ids];
      for (let i = 0; i < list.length; i += 500) {
        const chunk = list.slice(i, i + 500);
        const pipeline = redis.pipeline();
        for (const id of chunk) pipeline.hget(`${prefix}a:${id}`, "j");
        const replies = (await pipeline.exec()) ?? [];
        for (const [err, json] of replies) {
          if (err !== null) throw toStoreError(err);
          if (typeof json === "string") deliver(JSON.parse(json) as Approval);
        }
      }
    };
    const retry = () => {
      if (closed || subscriber.status !== "ready") return;
      attempt().catch((err: unknown) => {
        onFeedError(err);
        catchUpTimer = setTimeout(retry, catchUpRetryMs);
        catchUpTimer.unref();
      });
    };
    retry();
  }

  function createArgs(a: Approval, json: string, idem?: { key: string; fingerprint: string }) {
    return [
      a.id,
      json,
      a.state,
      a.action,
      a.requester,
      a.createTime,
      a.expireTime,
      a.decideTime,
      a.lineageId,
      idem?.key ?? "",
      idem?.fingerprint ?? "",
    ];
  }

  const store: ApprovalStore = {
    async create(approval, idem): Promise<CreateResult> {
      const stored: Approval = { ...approval, version: 1 };
      const json = JSON.stringify(stored);
      const reply = await write(createScript, createArgs(stored, json, idem));
      return confirmed(reply, (result) => {
        const [outcome, detail] = result as [string, string | undefined];
        switch (outcome) {
          case "created":
            deliver(stored);
            return { approval: stored, created: true };
          case "existing":
            return { approval: JSON.parse(detail as string) as Approval, created: false };
          case "conflict":
            throw new ConflictError(
              `idempotency key "${idem?.key ?? ""}" was already used for a different request (approval ${String(detail)})`,
            );
          default:
            throw new Error(`approval id ${approval.id} is already taken`);
        }
      });
    },

    async get(id) {
      let json: string | null;
      await options.connections.whenReady();
      try {
        json = await redis.hget(`${prefix}a:${id}`, "j");
      } catch (err) {
        throw toStoreError(err);
      }
      return json === null ? undefined : (JSON.parse(json) as Approval);
    },

    async compareAndSet(next, expectedVersion) {
      const stored: Approval = { ...next, version: expectedVersion + 1 };
      const json = JSON.stringify(stored);
      const reply = await write(compareAndSetScript, [
        stored.id,
        expectedVersion,
        json,
        stored.state,
        stored.expireTime,
        stored.decideTime,
        randomUUID(),
      ]);
      return confirmed(reply, (result) => {
        if (Number(result) === 0) return undefined;
        deliver(stored);
        return stored;
      });
    },

    async list(query: ApprovalQuery): Promise<ApprovalPage> {
      const cursor =
        query.pageToken === undefined || query.pageToken === ""
          ? undefined
          : decodeRedisPageToken(query.pageToken);
      const keys = [`${prefix}i:all`];
      if (query.state !== undefined) keys.push(`${prefix}i:state:${query.state}`);
      if (query.action !== undefined) keys.push(`${prefix}i:action:${query.action}`);
      if (query.requester !== undefined) keys.push(`${prefix}i:req:${query.requester}`);
      const min = query.createdAfter === undefined ? "-inf" : String(query.createdAfter);
      const max = query.createdBefore === undefined ? "+inf" : `(${query.createdBefore}`;
      const reply = (await run(
        listScript,
        [min, max, query.pageSize, budget, cursor?.score ?? "", cursor?.id ?? ""],
        keys,
      )) as string[];
      const next = reply[reply.length - 1] ?? "";
      const approvals = reply.slice(0, -1).map((json) => JSON.parse(json) as Approval);
      let nextPageToken = "";
      if (next !== "") {
        const colon = next.indexOf(":");
        nextPageToken = encodeRedisPageToken(next.slice(0, colon), next.slice(colon + 1));
      }
      return { approvals, nextPageToken };
    },

    async stats(): Promise<ApprovalStats> {
      const reply = (await run(statsScript, [])) as [...number[], string | null];
      const counts = Object.fromEntries(states.map((s, i) => [s, Number(reply[i])])) as Record<
        ApprovalState,
        number
      >;
      const oldest = reply[states.length];
      return typeof oldest === "string"
        ? { counts, oldestPending: JSON.parse(oldest) as Approval }
        : { counts };
    },

    async dueForExpiry(now, limit) {
      await options.connections.whenReady();
      try {
        return await redis.zrangebyscore(`${prefix}i:expiry`, "-inf", now, "LIMIT", 0, limit);
      } catch (err) {
        throw toStoreError(err);
      }
    },

    async countLineage(lineageId, since) {
      await options.connections.whenReady();
      try {
        return await redis.zcount(`${prefix}i:lin:${lineageId}`, since, "+inf");
      } catch (err) {
        throw toStoreError(err);
      }
    },

    async dueForPurge(before, limit): Promise<PurgeCandidate[]> {
      const reply = (await run(dueForPurgeScript, [before, limit])) as string[];
      const due: PurgeCandidate[] = [];
      for (let i = 0; i < reply.length; i += 2) {
        due.push({ approval: JSON.parse(reply[i] as string) as Approval, archived: reply[i + 1] === "1" });
      }
      return due;
    },

    async purge(id, version) {
      const reply = await write(purgeScript, [id, version]);
      return confirmed(reply, (result) => Number(result) === 1);
    },

    async restore(approval) {
      const json = JSON.stringify(approval);
      const reply = await write(restoreScript, [
        approval.id,
        json,
        approval.version,
        approval.state,
        approval.action,
        approval.requester,
        approval.createTime,
        approval.expireTime,
        approval.decideTime,
        approval.lineageId,
      ]);
      return confirmed(reply, (result) => {
        if (Number(result) === 0) return false;
        deliver(approval, true);
        return true;
      });
    },

    subscribe(id: string, listener: ChangeListener): Unsubscribe {
      watched.set(id, (watched.get(id) ?? 0) + 1);
      const off = feed.subscribe(id, listener);
      let done = false;
      return () => {
        if (done) return;
        done = true;
        off();
        const left = (watched.get(id) ?? 1) - 1;
        if (left === 0) watched.delete(id);
        else watched.set(id, left);
      };
    },

    subscribeAll(listener: ChangeListener): Unsubscribe {
      allListeners++;
      const off = feed.subscribeAll(listener);
      let done = false;
      return () => {
        if (done) return;
        done = true;
        allListeners--;
        off();
      };
    },

    async ping() {
      await options.connections.whenReady();
      try {
        await redis.ping();
      } catch (err) {
        throw toStoreError(err);
      }
      await checkEpoch();
      // Without the change feed, watchers would not hear of changes made by other replicas.
      if (!feedLive) {
        await new Promise<void>((resolve, reject) => {
          const timer = setTimeout(() => {
            feedWaiters.delete(wake);
            reject(new UnavailableError("the change feed is not subscribed in Redis"));
          }, settings.commandTimeoutMs);
          const wake = () => {
            clearTimeout(timer);
            feedWaiters.delete(wake);
            resolve();
          };
          feedWaiters.add(wake);
        });
      }
    },

    async close() {
      closed = true;
      if (catchUpTimer !== undefined) clearTimeout(catchUpTimer);
      await options.connections.close();
    },
  };
  return store;
}
