/**
 * The Redis side of policy sync (policy/policy-sync.ts). Under the key prefix `p`:
 * - `p policies`: hash of the shared set: `text`, `sha256`, `generation`, `by` (the publishing replica),
 *   `source` (its file), `at` (publish time, epoch ms);
 * - `p policies:generation`: the counter that numbers publications;
 * - `p policy-replicas`: hash of replica name → its last report, as JSON;
 * - channel `p policies`: the generation of every publication.
 */
import type { PolicySyncPort, ReplicaPolicyReport, SharedPolicySet } from "../policy/policy-sync.js";
import { type RedisConnections, toStoreError } from "./redis-connection.js";

/** Numbers the set, stores it and announces it, in one step. */
const publishLua = `
local g = redis.call('INCR', KEYS[1])
redis.call('HSET', KEYS[2], 'text', ARGV[1], 'sha256', ARGV[2], 'generation', g, 'by', ARGV[3],
  'source', ARGV[4], 'at', ARGV[5])
redis.call('PUBLISH', ARGV[6], g)
return g
`;

function parseReport(replica: string, json: string): ReplicaPolicyReport | undefined {
  try {
    const value = JSON.parse(json) as Partial<ReplicaPolicyReport>;
    if (typeof value.sha256 !== "string" || typeof value.generation !== "number") return undefined;
    return {
      replica,
      sha256: value.sha256,
      generation: value.generation,
      reportTime: typeof value.reportTime === "number" ? value.reportTime : 0,
      ...(typeof value.error === "string" ? { error: value.error } : {}),
    };
  } catch {
    return undefined;
  }
}

/** Policy sync through the server's Redis connections (closed with the store, not here). */
export function createRedisPolicySync(connections: RedisConnections): PolicySyncPort {
  const { command: redis, subscriber, settings } = connections;
  const prefix = settings.keyPrefix;
  const setKey = `${prefix}policies`;
  const generationKey = `${prefix}policies:generation`;
  const reportsKey = `${prefix}policy-replicas`;
  const channel = `${prefix}policies`;
  let onMessage: ((from: string, message: string) => void) | undefined;

  const call = async <T>(task: () => Promise<T>): Promise<T> => {
    await connections.whenReady();
    try {
      return await task();
    } catch (err) {
      throw toStoreError(err);
    }
  };

  return {
    read: () =>
      call(async (): Promise<SharedPolicySet | undefined> => {
        const h = await redis.hgetall(setKey);
        const generation = Number(h.generation);
        if (h.text === undefined || h.sha256 === undefined || !Number.isSafeInteger(generation))
          return undefined;
        return {
          text: h.text,
          sha256: h.sha256,
          generation,
          publishedBy: h.by ?? "",
          source: h.source ?? "",
          publishTime: Number(h.at ?? 0),
        };
      }),
    publish: (set) =>
      call(async () => {
        const generation = (await redis.eval(
          publishLua,
          2,
          generationKey,
          setKey,
          set.text,
          set.sha256,
          set.publishedBy,
          set.source,
          String(set.publishTime),
          channel,
        )) as number;
        return { ...set, generation: Number(generation) };
      }),
    async subscribe(listener) {
      onMessage = (from, message) => {
        if (from !== channel) return;
        const generation = Number(message);
        if (Number.isSafeInteger(generation)) listener(generation);
      };
      subscriber.on("message", onMessage);
      await subscriber.subscribe(channel);
    },
    report: (report) =>
      call(async () => {
        const { replica, ...fields } = report;
        await redis.hset(reportsKey, replica, JSON.stringify(fields));
      }),
    reports: () =>
      call(async () =>
        Object.entries(await redis.hgetall(reportsKey)).flatMap(([replica, json]) => {
          const report = parseReport(replica, json);
          return report === undefined ? [] : [report];
        }),
      ),
    forget: (replicas) =>
      call(async () => {
        if (replicas.length > 0) await redis.hdel(reportsKey, ...replicas);
      }),
    async close() {
      if (onMessage !== undefined) subscriber.off("message", onMessage);
      onMessage = undefined;
      // Not awaited: while Redis is down the subscriber queues it, and closing must not wait for Redis.
      subscriber.unsubscribe(channel).catch(() => undefined);
    },
  };
}
