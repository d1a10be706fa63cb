import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RedisServer, startRedis } from "../../test/support/redis.js";
import { createRedisConnections, type RedisConnections } from "../store/redis-connection.js";
import { createRedisSlackMessageStore } from "./redis-slack-message-store.js";
import { slackMessageStoreContract } from "./slack-message-store.contract.js";

let redis: RedisServer;
const opened: RedisConnections[] = [];
let made = 0;

beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  await Promise.all(opened.map((c) => c.close()));
  await redis?.stop();
});

/** A store with a key prefix of its own, so it starts empty. */
function open() {
  const connections = createRedisConnections({
    url: redis.url,
    commandTimeoutMs: 2_000,
    waitReplicas: 0,
    keyPrefix: `messages-${++made}:`,
  });
  opened.push(connections);
  return createRedisSlackMessageStore(connections);
}

// Redis's own clock lapses the records.
slackMessageStoreContract("redis", async () => ({
  store: open(),
  advance: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
}));

describe("Redis Slack message records", () => {
  const record = { key: "request:C0PROD", channel: "C0PROD", ts: "1.000001", attemptedAt: 1, version: 2 };

  it("keeps a finished approval out of the open list when a late write comes after it expired", async () => {
    const store = open();
    await store.put("A1", record);
    await store.expire("A1", 60_000);
    await store.put("A1", { ...record, key: "reminder:0:C0PROD" });
    expect(await store.openApprovals(10)).toEqual([]);
    expect(await store.list("A1")).toHaveLength(2);
  });

  it("works on a Redis that lost its scripts (a restart or a failover)", async () => {
    const store = open();
    await store.put("A1", record);
    await redis.client().script("FLUSH");
    await store.put("A2", record);
    await store.remove("A1", record.key);
    expect(await store.openApprovals(10)).toEqual(["A2"]);
  });
});
