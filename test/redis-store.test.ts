import { once } from "node:events";
import type { Redis } from "ioredis";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ConfigError, loadServeConfig, type ServeFlags } from "../server/config/config.js";
import { createManualClock } from "../server/domain/clock.js";
import { UnavailableError } from "../server/domain/errors.js";
import type { Approval } from "../server/domain/types.js";
import { createApprovalOperations } from "../server/services/approval-operations.js";
import { approvalFactory, describeApprovalStoreContract } from "../server/store/approval-store.contract.js";
import type { ApprovalStore } from "../server/store/approval-store.js";
import { createMemoryClaims } from "../server/store/claims.js";
import { createRedisApprovalStore } from "../server/store/redis-approval-store.js";
import { createRedisClaims } from "../server/store/redis-claims.js";
import { createRedisConnections, type RedisSettings } from "../server/store/redis-connection.js";
import { createTestPki } from "./support/certs.js";
import { freePort, type RedisServer, startRedis, startReplyLosingProxy } from "./support/redis.js";
import { createTcpProxy } from "./support/tcp-proxy.js";
import { waitFor } from "./support/wait.js";

let redis: RedisServer;
let stores = 0;

beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  await redis?.stop();
});

function settings(url: string, keyPrefix: string, more: Partial<RedisSettings> = {}): RedisSettings {
  return { url, commandTimeoutMs: 2_000, waitReplicas: 0, keyPrefix, ...more } as RedisSettings;
}

/** A Redis store with its own key prefix (so each is empty), on `url` (the private Redis by default). */
function openStore(
  keyPrefix = `t${++stores}:`,
  url = redis.url,
  more: Partial<RedisSettings> & { listScanBudget?: number } = {},
) {
  const { listScanBudget, ...rest } = more;
  const connections = createRedisConnections(settings(url, keyPrefix, rest));
  const store = createRedisApprovalStore({
    connections,
    ...(listScanBudget === undefined ? {} : { listScanBudget }),
  });
  return { store, connections, keyPrefix };
}

describeApprovalStoreContract("redis", async () => {
  const { store } = openStore();
  await store.ping().catch(() => undefined);
  return { store, cleanup: () => store.close() };
});

const opened: ApprovalStore[] = [];
afterEach(async () => {
  await Promise.all(opened.splice(0).map((s) => s.close()));
});

/** Resolves once an ioredis connection is ready (at once when it is), failing after 15 s. */
async function connected(connection: Redis): Promise<void> {
  if (connection.status === "ready") return;
  await once(connection, "ready", { signal: AbortSignal.timeout(15_000) });
}

/** Resolves with the next approval a listener receives for which `test` holds. */
function next(subscribe: (l: (a: Approval) => void) => () => void, test: (a: Approval) => boolean) {
  return new Promise<Approval>((resolve) => {
    const off = subscribe((a) => {
      if (!test(a)) return;
      off();
      resolve(a);
    });
  });
}

describe("redis approval store across replicas", () => {
  it("delivers a change made through one replica to the listeners of another, once each", async () => {
    const a = openStore();
    const b = openStore(a.keyPrefix);
    opened.push(a.store, b.store);
    await Promise.all([a.store.ping(), b.store.ping()]);
    const make = approvalFactory();

    const seenByA: Approval[] = [];
    a.store.subscribeAll((x) => seenByA.push(x));
    const created = (await a.store.create(make())).approval;
    const perId: Approval[] = [];
    a.store.subscribe(created.id, (x) => perId.push(x));

    const atA = next(
      (l) => a.store.subscribe(created.id, l),
      (x) => x.version === 2,
    );
    const decided = await b.store.compareAndSet({ ...created, state: "approved", decidedBy: "U1" }, 1);
    expect(await atA).toEqual(decided);
    // A's own write reached A's listeners once, although its echo came back through Redis as well; pub/sub
    // is ordered, so the echo arrived before B's change did.
    expect(seenByA.map((x) => [x.id, x.version])).toEqual([
      [created.id, 1],
      [created.id, 2],
    ]);
    expect(perId).toEqual([decided]);
  });

  it("catches up from state after the feed's connection was lost, so no decision is missed", async () => {
    const proxy = await createTcpProxy({ target: { host: "127.0.0.1", port: redis.port } });
    const a = openStore(undefined, `redis://${proxy.address}`);
    const b = openStore(a.keyPrefix);
    opened.push(a.store, b.store);
    await Promise.all([a.store.ping(), b.store.ping()]);
    const make = approvalFactory();
    const all: Approval[] = [];
    a.store.subscribeAll((x) => all.push(x));
    const created = (await b.store.create(make())).approval;
    const other = (await b.store.create(make())).approval;
    await waitFor(() => all.length === 2, 10_000, "both creates seen by replica A");
    all.length = 0;
    const perId: Approval[] = [];
    a.store.subscribe(created.id, (x) => perId.push(x));

    proxy.setMode("refuse");
    proxy.dropConnections();
    const decided = await b.store.compareAndSet({ ...created, state: "denied", decidedBy: "U2" }, 1);
    const touched = await b.store.compareAndSet({ ...other, reason: "noted" }, 1);
    expect(perId).toEqual([]);
    proxy.setMode("forward");

    await waitFor(() => perId.length === 1 && all.length === 2, 15_000, "catch-up after reconnect");
    expect(perId).toEqual([decided]);
    expect(all.sort((x, y) => x.id.localeCompare(y.id))).toEqual(
      [decided, touched].sort((x, y) => (x?.id ?? "").localeCompare(y?.id ?? "")),
    );
    await proxy.close();
  });

  it("fails fast with UnavailableError while Redis is unreachable, and recovers when it appears", async () => {
    const port = await freePort();
    const started = Date.now();
    const { store, connections } = openStore(undefined, `redis://127.0.0.1:${port}`, {
      commandTimeoutMs: 500,
    });
    opened.push(store);
    await expect(store.get("01ARZ3NDEKTSV4RRFFQ69G5FAV")).rejects.toBeInstanceOf(UnavailableError);
    await expect(store.ping()).rejects.toBeInstanceOf(UnavailableError);
    expect(Date.now() - started).toBeLessThan(5_000);

    const late = await startRedis({ port });
    try {
      await connected(connections.command);
      await connected(connections.subscriber);
      await expect(store.ping()).resolves.toBeUndefined();
      const created = await store.create(approvalFactory()());
      expect(created.created).toBe(true);
    } finally {
      await late.stop();
    }
  });

  it("never reports a lost race for a write that won but whose reply was lost", async () => {
    const proxy = await startReplyLosingProxy(redis.port);
    const { store, connections } = openStore(undefined, proxy.url, { commandTimeoutMs: 1_000 });
    opened.push(store);
    await store.ping();
    const clock = createManualClock(Date.now());
    const policies = {
      current: () => ({
        policySet: {
          sha256: "a".repeat(64),
          defaults: { channel: "C", timeoutMs: 600_000, unknownAction: "deny" as const, superApprovers: [] },
          policies: [],
        },
      }),
    };
    const operations = createApprovalOperations({ store, policies, clock });
    const make = approvalFactory();
    const approval = (await store.create(make({ createTime: clock.now() }))).approval;
    // Redis knows the scripts by now (a script unknown to Redis would not run, and there would be no
    // write whose reply could be lost).
    const warmUp = (await store.create(make({ createTime: clock.now() }))).approval;
    await store.compareAndSet({ ...warmUp, reason: "warm-up" }, 1);

    // The decisive vote reaches Redis and is stored, but its reply is lost with the connection.
    const lost = proxy.loseReplyTo("EVALSHA");
    const vote = {
      approver: "U-ALICE",
      approverGroups: [],
      decision: "approve" as const,
      reason: "",
      interactionId: "click-1",
      submittedBy: "gateway",
    };
    const failed = await operations.vote(approval.id, vote).then(
      () => undefined,
      (err: unknown) => err,
    );
    await lost;
    expect(failed).toBeInstanceOf(UnavailableError);

    // The caller retries (UNAVAILABLE is retryable): the vote is already there, and it is told so.
    await connected(connections.command);
    const retried = await operations.vote(approval.id, vote);
    expect(retried.changed).toBe(false);
    expect(retried.approval.state).toBe("approved");
    expect(retried.approval.votes.map((v) => v.interactionId)).toEqual(["click-1"]);

    // Another caller's identical compare-and-set is another write: it loses (one winner per version).
    const again = await store.compareAndSet({ ...retried.approval, reason: "x" }, retried.approval.version);
    expect(again?.version).toBe(retried.approval.version + 1);
    expect(
      await store.compareAndSet({ ...retried.approval, reason: "x" }, retried.approval.version),
    ).toBeUndefined();
    await proxy.close();
  });

  it("bounds the work of one list call and still pages through every match exactly once", async () => {
    const { store } = openStore(undefined, redis.url, { listScanBudget: 4 });
    opened.push(store);
    const make = approvalFactory();
    const t0 = Date.UTC(2026, 0, 1);
    const rare: string[] = [];
    for (let i = 0; i < 30; i++) {
      const a = make({
        createTime: t0 + i * 1_000,
        action: i % 7 === 0 ? "db.migrate" : "deploy.production",
      });
      await store.create(a);
      if (a.action === "db.migrate") rare.unshift(a.id);
    }
    const visited: string[] = [];
    let pageToken = "";
    let calls = 0;
    do {
      const page = await store.list({ pageSize: 2, action: "db.migrate", requester: "ci-bot", pageToken });
      calls++;
      visited.push(...page.approvals.map((a) => a.id));
      pageToken = page.nextPageToken;
    } while (pageToken !== "" && calls < 100);
    expect(visited).toEqual(rare);
  });

  it("speaks TLS with rediss://, verifying the server certificate against --redis-tls-ca", async () => {
    const pki = createTestPki();
    const tlsPort = await freePort();
    const tlsRedis = await startRedis({
      args: [
        "--tls-port",
        String(tlsPort),
        "--tls-cert-file",
        pki.paths.serverCert,
        "--tls-key-file",
        pki.paths.serverKey,
        "--tls-ca-cert-file",
        pki.paths.ca,
        "--tls-auth-clients",
        "no",
      ],
    });
    try {
      const url = `rediss://127.0.0.1:${tlsPort}`;
      const { store } = openStore(undefined, url, { tlsCa: pki.ca });
      opened.push(store);
      await store.ping();
      const created = await store.create(approvalFactory()());
      expect(await store.get(created.approval.id)).toEqual(created.approval);

      const untrusted = openStore(undefined, url, { tlsCa: pki.foreignCa, commandTimeoutMs: 500 });
      opened.push(untrusted.store);
      await expect(untrusted.store.get(created.approval.id)).rejects.toBeInstanceOf(UnavailableError);
    } finally {
      await tlsRedis.stop();
    }
  });

  it("fails with UNAVAILABLE when the replicas it must wait for do not confirm a write, which still stands", async () => {
    const { store } = openStore(undefined, redis.url, { waitReplicas: 1, commandTimeoutMs: 400 });
    opened.push(store);
    const approval = approvalFactory()();
    const err = await store.create(approval).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(UnavailableError);
    expect((err as Error).message).toMatch(/1 replica\(s\) did not confirm it in time.*retry/);
    // The retry of an idempotent command finds the write.
    expect((await store.get(approval.id))?.version).toBe(1);
  });

  it("gives a claim to exactly one of many replicas until it lapses", async () => {
    const a = openStore();
    const b = openStore(a.keyPrefix);
    opened.push(a.store, b.store);
    const claimsA = createRedisClaims(a.connections, a.keyPrefix);
    const claimsB = createRedisClaims(b.connections, b.keyPrefix);
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        (i % 2 === 0 ? claimsA : claimsB).claimOnce("retention:run", 60_000),
      ),
    );
    expect(results.filter(Boolean)).toHaveLength(1);
    expect(await claimsA.claimOnce("reminder:x:1", 60_000)).toBe(true);
    expect(await claimsB.claimOnce("reminder:x:2", 60_000)).toBe(true);
    expect(await claimsB.claimOnce("reminder:x:1", 60_000)).toBe(false);

    // The memory twin (one replica) behaves the same, and a claim lapses after its TTL.
    const clock = createManualClock();
    const memory = createMemoryClaims(clock.now);
    expect(await memory.claimOnce("retention:1", 1_000)).toBe(true);
    expect(await memory.claimOnce("retention:1", 1_000)).toBe(false);
    clock.advance(1_000);
    expect(await memory.claimOnce("retention:1", 1_000)).toBe(true);
  });
});

describe("Redis store configuration", () => {
  const problems = (flags: ServeFlags, env: NodeJS.ProcessEnv = {}) => {
    try {
      loadServeConfig({ policy: "p.yaml", ...flags }, env);
      return [];
    } catch (err) {
      if (err instanceof ConfigError) return err.problems;
      throw err;
    }
  };

  it("selects Redis by URL or through Sentinel, with its settings", () => {
    expect(loadServeConfig({ policy: "p.yaml" }, {}).store).toBe("memory");
    expect(loadServeConfig({ policy: "p.yaml", store: "redis://:pw@10.0.0.5:6380/2" }, {})).toMatchObject({
      store: "redis",
      redis: {
        url: "redis://:pw@10.0.0.5:6380/2",
        commandTimeoutMs: 2_000,
        waitReplicas: 0,
        keyPrefix: "countersign:",
      },
    });
    expect(
      loadServeConfig(
        {
          policy: "p.yaml",
          redisSentinels: "s1:26379, [::1]:26380",
          redisMasterName: "countersign",
          redisTimeout: "1500ms",
          redisWaitReplicas: "1",
        },
        { REDIS_PASSWORD: "secret" },
      ).redis,
    ).toEqual({
      sentinels: [
        { host: "s1", port: 26379 },
        { host: "::1", port: 26380 },
      ],
      masterName: "countersign",
      commandTimeoutMs: 1_500,
      waitReplicas: 1,
      keyPrefix: "countersign:",
      password: "secret",
    });
  });

  it("names every problem with the store settings", () => {
    expect(problems({ store: "postgres://x" })).toEqual([
      '--store "postgres://x": expected memory, redis://host:port or rediss://host:port (or --redis-sentinels)',
    ]);
    expect(problems({ redisTimeout: "1s" })).toEqual([
      "--redis-timeout needs a Redis store (--store redis://... or --redis-sentinels)",
    ]);
    expect(problems({ redisSentinels: "s1", redisTimeout: "20ms", redisWaitReplicas: "-1" })).toEqual([
      "--redis-timeout must be between 100ms and 60s",
      "--redis-wait-replicas must be a whole number between 0 and 16",
      '--redis-sentinels: "s1" is not host:port',
      "--redis-sentinels needs --redis-master-name (the master's name in the Sentinel configuration)",
    ]);
    expect(problems({ store: "redis://h:1", redisTlsCa: "/nonexistent/ca.pem" })).toEqual([
      "--redis-tls-ca: cannot read /nonexistent/ca.pem: ENOENT",
      "--redis-tls-ca needs a rediss:// URL",
    ]);
    expect(problems({ store: "memory", redisSentinels: "s1:1", redisMasterName: "m" })).toEqual([
      "--redis-sentinels selects the Redis store: leave --store unset or set it to redis",
    ]);
  });
});
