/**
 * Redis failover under load, on this machine: a master, two replicas and three Sentinels on free ports.
 * Decisions run continuously through the server while the master is killed (`kill -9`), then while the
 * next master is frozen (`SIGSTOP`). No acknowledged decision is lost, writes resume within 10 s, and
 * calls made meanwhile fail fast with UNAVAILABLE.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Decision, State } from "../gen/countersign/v1/approval_pb.js";
import { createTestPki, type TestPki, testIdentities } from "./support/certs.js";
import {
  freePort,
  pollUntil,
  type RedisServer,
  type Sentinels,
  startRedis,
  startSentinels,
} from "./support/redis.js";
import { startTestServer, type TestServer } from "./support/test-server.js";

const policy = `
version: 1
defaults: { channel: C0, timeout: 10m, unknown_action: deny }
policies:
  - name: failover
    match: "failover.*"
    approvers: { users: [U1] }
    required_approvals: 1
`;
/** `--redis-timeout`: a call waits this long for a connection, then this long for its reply. */
const redisTimeoutMs = 1_000;
/** The longest a call may take during the gap and still count as failing fast. */
const failFastMs = 2 * redisTimeoutMs + 1_500;

/** Number of replicas that are online for `server` (from INFO replication). */
async function onlineReplicas(server: RedisServer): Promise<number> {
  const info = await server
    .client()
    .info("replication")
    .catch(() => "");
  return (info.match(/state=online/g) ?? []).length;
}

describe("Redis failover with Sentinel", () => {
  let pki: TestPki;
  const nodes: RedisServer[] = [];
  let sentinels: Sentinels;
  let ts: TestServer;

  beforeAll(async () => {
    pki = createTestPki();
    const master = await startRedis();
    nodes.push(master, await startRedis({ replicaOf: master }), await startRedis({ replicaOf: master }));
    sentinels = await startSentinels(master, { replicas: 2, downAfterMs: 1_000, failoverTimeoutMs: 2_000 });
    ts = await startTestServer({
      pki,
      policy,
      flags: {
        deciders: testIdentities.decider,
        redisSentinels: sentinels.flag,
        redisMasterName: sentinels.masterName,
        redisTimeout: `${redisTimeoutMs}ms`,
        redisWaitReplicas: "1",
      },
    });
  }, 90_000);

  afterAll(async () => {
    await ts?.close();
    await sentinels?.stop();
    await Promise.all(nodes.map((n) => n.stop()));
  });

  it("loses no acknowledged decision, resumes writes within 10 s and fails fast meanwhile, on kill -9 and on SIGSTOP", async () => {
    const requester = ts.clients(pki.requester, "grpc").approvals;
    const decider = ts.clients(pki.decider, "grpc").approvals;
    /** Decisions the server acknowledged: when their create was sent, and when the decision came back. */
    const acknowledged: { id: string; started: number; at: number }[] = [];
    const failures: { code: Code; message: string; ms: number; at: number }[] = [];
    let stop = false;
    let n = 0;

    /** One caller deciding approvals back to back until told to stop. */
    const worker = async () => {
      while (!stop) {
        const i = n++;
        const started = Date.now();
        try {
          const created = await requester.createApproval({
            action: `failover.n${i}`,
            title: `failover ${i}`,
          });
          const id = created.approval?.id ?? "";
          const decided = await decider.submitDecision({
            id,
            approver: "U1",
            decision: Decision.APPROVE,
            interactionId: `click-${i}`,
          });
          expect(decided.approval?.state).toBe(State.APPROVED);
          acknowledged.push({ id, started, at: Date.now() });
        } catch (err) {
          const error = ConnectError.from(err);
          failures.push({
            code: error.code,
            message: error.rawMessage,
            ms: Date.now() - started,
            at: Date.now(),
          });
          // A call that fails at once must not starve the timers this test waits with.
          await new Promise((resolve) => setImmediate(resolve));
        }
      }
    };
    const workers = Array.from({ length: 4 }, () => worker());

    /** Breaks the current master with `fault`, then measures until decisions are acknowledged again. */
    const survive = async (fault: "kill" | "freeze") => {
      const masterPort = await sentinels.masterPort();
      const master = nodes.find((node) => node.port === masterPort);
      if (master === undefined) throw new Error(`no node on the master's port ${masterPort}`);
      const before = acknowledged.length;
      await pollUntil(
        () => acknowledged.length >= before + 20,
        30_000,
        "steady decisions before the fault",
      ).catch((err: unknown) => {
        throw new Error(`${(err as Error).message}; last failures: ${JSON.stringify(failures.slice(-3))}`);
      });
      const switched = sentinels.nextSwitch(30_000);
      const faultAt = Date.now();
      if (fault === "kill") await master.kill();
      else master.freeze();
      await pollUntil(
        () => acknowledged.some((a) => a.started > faultAt),
        10_000,
        `a decision acknowledged after ${fault}`,
      );
      const resumedAfterMs =
        Math.min(...acknowledged.filter((a) => a.started > faultAt).map((a) => a.at)) - faultAt;
      const newMaster = await switched;
      expect(newMaster).not.toBe(masterPort);
      const gap = failures.filter((f) => f.at > faultAt);
      console.log(
        `${fault}: writes resumed after ${resumedAfterMs} ms; ${gap.length} calls failed meanwhile, ` +
          `slowest after ${Math.max(0, ...gap.map((f) => f.ms))} ms`,
      );
      expect(resumedAfterMs).toBeLessThan(10_000);
      return { master, masterPort };
    };

    const killed = await survive("kill");
    // The killed master comes back (empty) and Sentinel makes it a replica of the new master, so the
    // next failover again has a replica holding every acknowledged write.
    const restarted = await startRedis({ port: killed.masterPort });
    nodes.splice(nodes.indexOf(killed.master), 1, restarted);
    await pollUntil(
      async () => {
        const port = await sentinels.masterPort();
        const master = nodes.find((node) => node.port === port);
        return master !== undefined && (await onlineReplicas(master)) === 2;
      },
      60_000,
      "the restarted node replicating from the new master",
    );

    const frozen = await survive("freeze");
    frozen.master.resume();

    stop = true;
    await Promise.all(workers);
    // Every call that failed did so with UNAVAILABLE, and quickly: none hung.
    expect(new Set(failures.map((f) => f.code))).toEqual(
      failures.length === 0 ? new Set() : new Set([Code.Unavailable]),
    );
    expect(failures.filter((f) => f.ms > failFastMs)).toEqual([]);
    // 0 acknowledged decisions lost.
    const lost: string[] = [];
    for (const { id } of acknowledged) {
      const { approval } = await decider.getApproval({ id });
      if (approval?.state !== State.APPROVED) lost.push(id);
    }
    expect(acknowledged.length).toBeGreaterThan(60);
    expect(lost).toEqual([]);
  }, 180_000);
});

describe("Redis down at startup", () => {
  it("starts, reports not ready and refuses calls with UNAVAILABLE, then becomes ready when Redis appears", async () => {
    const pki = createTestPki();
    const port = await freePort();
    const ts = await startTestServer({
      pki,
      policy,
      flags: { deciders: testIdentities.decider, store: `redis://127.0.0.1:${port}`, redisTimeout: "500ms" },
    });
    let redis: RedisServer | undefined;
    try {
      const notReady = await fetch(`${ts.server.opsUrl}/readyz`);
      expect(notReady.status).toBe(503);
      expect(JSON.stringify(await notReady.json())).toMatch(/unavailable/);
      const requester = ts.clients(pki.requester, "grpc").approvals;
      const started = Date.now();
      const refused = await requester.createApproval({ action: "failover.early", title: "too early" }).then(
        () => undefined,
        (err: unknown) => ConnectError.from(err),
      );
      expect(refused?.code).toBe(Code.Unavailable);
      expect(Date.now() - started).toBeLessThan(5_000);

      redis = await startRedis({ port });
      await pollUntil(
        async () => (await fetch(`${ts.server.opsUrl}/readyz`)).status === 200,
        20_000,
        "/readyz 200",
      );
      const created = await requester.createApproval({ action: "failover.late", title: "in time" });
      expect(created.approval?.state).toBe(State.PENDING);
    } finally {
      await ts.close();
      await redis?.stop();
    }
  }, 60_000);
});
