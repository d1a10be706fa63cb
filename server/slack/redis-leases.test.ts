import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RedisServer, startRedis, startReplyLosingProxy } from "../../test/support/redis.js";
import { UnavailableError } from "../domain/errors.js";
import { createRedisConnections, type RedisConnections } from "../store/redis-connection.js";
import { leasesContract } from "./leases.contract.js";
import { createRedisLeases } from "./redis-leases.js";

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

/** Connections with a key prefix of their own (so they start empty), to `url`. */
function connect(url = redis.url, keyPrefix = `leases-${++made}:`): RedisConnections {
  const connections = createRedisConnections({ url, commandTimeoutMs: 2_000, waitReplicas: 0, keyPrefix });
  opened.push(connections);
  return connections;
}

// Redis's own clock lapses the leases.
leasesContract("redis", async () => ({
  leases: createRedisLeases(connect()),
  advance: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
}));

describe("Redis leases when a reply is lost", () => {
  it("gives back a lease whose acquire was applied but unanswered before taking the key again", async () => {
    const proxy = await startReplyLosingProxy(redis.port);
    try {
      const keyPrefix = `lost-${++made}:`;
      const replica = createRedisLeases(connect(proxy.url, keyPrefix));
      const other = createRedisLeases(connect(redis.url, keyPrefix));
      const lost = proxy.loseReplyTo("slack:A1");
      await expect(replica.acquire("slack:A1", 60_000)).rejects.toBeInstanceOf(UnavailableError);
      await lost;
      // Redis did take it: nobody else gets it, although the replica was told it failed.
      expect(await other.acquire("slack:A1", 60_000)).toBeUndefined();
      // The replica itself does not wait a minute for its own lost lease.
      const token = await waitForToken(() => replica.acquire("slack:A1", 60_000));
      expect(await other.acquire("slack:A1", 60_000)).toBeUndefined();
      await replica.release("slack:A1", token);
      expect(await other.acquire("slack:A1", 60_000)).toBeTypeOf("string");
    } finally {
      await proxy.close();
    }
  });
});

/** Retries while the connection comes back after the lost reply (it reconnects by itself). */
async function waitForToken(acquire: () => Promise<string | undefined>): Promise<string> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      const token = await acquire();
      if (token !== undefined) return token;
      throw new Error("the lease is held");
    } catch (err) {
      if (!(err instanceof UnavailableError) || Date.now() > deadline) throw err;
    }
  }
}
