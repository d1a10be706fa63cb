/**
 * Three `countersign serve` processes share one Redis: approvals created on any replica are decided on
 * any other, and every watcher, wherever it is connected, hears every decision exactly once. Each replica
 * runs the Slack gateway against one fake Slack Web API, and each approval is posted there exactly once.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { type Client, Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Decision, State } from "../gen/countersign/v1/approval_pb.js";
import type { ApprovalService } from "../gen/countersign/v1/approval_service_pb.js";
import { createManualClock } from "../server/domain/clock.js";
import { createTestPki, type Pem, type TestPki, testIdentities } from "./support/certs.js";
import { type ClientFactory, createClientFactory } from "./support/clients.js";
import { type FakeSlack, type FakeSlackCall, startFakeSlack } from "./support/fake-slack.js";
import { pollUntil, type RedisServer, startRedis } from "./support/redis.js";
import { startTestServer } from "./support/test-server.js";

const approvalCount = 500;
const replicaCount = 3;
const policy = `
version: 1
defaults: { channel: C0, timeout: 10m, unknown_action: deny }
policies:
  - name: replicated
    match: "replicated.*"
    approvers: { users: [U1, U2, U3] }
    required_approvals: 1
`;

/** A `countersign serve` process started by the test. */
interface Replica {
  process: ChildProcess;
  grpcAddress: string;
  opsUrl: string;
  exited: Promise<void>;
}

let pki: TestPki;
let redis: RedisServer;
let slack: FakeSlack;
const replicas: Replica[] = [];
const factories: ClientFactory[] = [];

/** Starts `countersign serve` against the shared Redis and resolves with its addresses once it serves. */
async function startReplica(policyPath: string): Promise<Replica> {
  const child = spawn(
    process.execPath,
    [
      "--import",
      "tsx",
      join(import.meta.dirname, "../clients/cli/countersign.ts"),
      "serve",
      "--policy",
      policyPath,
      "--grpc-listen",
      "127.0.0.1:0",
      "--connect-listen",
      "127.0.0.1:0",
      "--ops-listen",
      "127.0.0.1:0",
      "--tls-cert",
      pki.paths.serverCert,
      "--tls-key",
      pki.paths.serverKey,
      "--tls-client-ca",
      pki.paths.ca,
      "--require-client-cert",
      "--deciders",
      testIdentities.decider,
      "--store",
      redis.url,
      "--create-rate-limit",
      "0",
      "--heartbeat-interval",
      "60s",
      "--slack-listen",
      "127.0.0.1:0",
    ],
    {
      stdio: ["ignore", "pipe", "inherit"],
      env: {
        ...process.env,
        NODE_ENV: "production",
        SLACK_BOT_TOKEN: slack.token,
        SLACK_SIGNING_SECRET: "replicas-signing-secret",
        SLACK_API_URL: slack.apiUrl,
      },
    },
  );
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  const serving = await new Promise<{ grpc: string; ops: string }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("a replica did not start within 60 s")), 60_000);
    child.once("exit", (code) => reject(new Error(`a replica exited with ${code} before serving`)));
    lines.on("line", (line) => {
      if (!line.includes("countersign is serving")) return;
      clearTimeout(timer);
      resolve(JSON.parse(line) as { grpc: string; ops: string });
    });
  });
  return { process: child, grpcAddress: serving.grpc, opsUrl: serving.ops, exited };
}

function client(replica: Replica, identity: Pem): Client<typeof ApprovalService> {
  const factory = createClientFactory({ grpcAddress: replica.grpcAddress, connectUrl: "", ca: pki.ca });
  factories.push(factory);
  return factory.clients(identity, "grpc").approvals;
}

beforeAll(async () => {
  pki = createTestPki();
  redis = await startRedis();
  slack = await startFakeSlack();
  const dir = mkdtempSync(join(tmpdir(), "countersign-replicas-"));
  const policyPath = join(dir, "policies.yaml");
  writeFileSync(policyPath, policy);
  replicas.push(...(await Promise.all(Array.from({ length: replicaCount }, () => startReplica(policyPath)))));
  // Ready: each gateway has read the pending approvals, so it sees every new one being created.
  for (const r of replicas)
    await pollUntil(async () => (await fetch(`${r.opsUrl}/readyz`)).status === 200, 30_000, "/readyz 200");
}, 120_000);

afterAll(async () => {
  for (const f of factories) f.close();
  for (const r of replicas) r.process.kill("SIGTERM");
  await Promise.all(replicas.map((r) => r.exited));
  await redis?.stop();
  await slack?.close();
});

/** The approval a Slack call was about (the marker every message of the gateway carries). */
function approvalOf(call: FakeSlackCall): string | undefined {
  const metadata = call.args.metadata as { event_payload?: { approval_id?: unknown } } | undefined;
  const id = metadata?.event_payload?.approval_id;
  return typeof id === "string" ? id : undefined;
}

/** chat.postMessage calls per approval id. */
function postsPerApproval(): Map<string, number> {
  const posts = new Map<string, number>();
  for (const call of slack.callsTo("chat.postMessage")) {
    const id = approvalOf(call);
    if (id !== undefined) posts.set(id, (posts.get(id) ?? 0) + 1);
  }
  return posts;
}

/** Runs `task` for every item with at most `limit` in flight. */
async function inBatches<T, R>(
  items: T[],
  limit: number,
  task: (item: T, i: number) => Promise<R>,
): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: limit }, async () => {
      for (let i = next++; i < items.length; i = next++) results[i] = await task(items[i] as T, i);
    }),
  );
  return results;
}

describe("three replicas sharing one Redis", () => {
  it("delivers every decision, made on a random replica, to a watcher on another replica exactly once", async () => {
    const requesters = replicas.map((r) => client(r, pki.requester));
    const deciders = replicas.map((r) => client(r, pki.decider));

    // 500 approvals spread over the replicas.
    const created = await inBatches(
      Array.from({ length: approvalCount }, (_, i) => i),
      50,
      async (i) => {
        const res = await (requesters[i % replicaCount] as Client<typeof ApprovalService>).createApproval({
          action: `replicated.n${i}`,
          title: `replicated ${i}`,
          idempotencyKey: `replicas-${i}`,
        });
        return res.approval?.id ?? "";
      },
    );
    expect(new Set(created).size).toBe(approvalCount);

    // A watcher for each, on the next replica; each has its snapshot before any decision is made.
    const watched = created.map((id, i) => {
      const replica = (i + 1) % replicaCount;
      const stream = (requesters[replica] as Client<typeof ApprovalService>).watchApproval({ id });
      const iterator = stream[Symbol.asyncIterator]();
      const first = iterator.next();
      const rest = (async () => {
        const messages: { state: State; version: number; decidedBy: string; at: number }[] = [];
        for (let msg = await iterator.next(); msg.done !== true; msg = await iterator.next()) {
          if (msg.value.heartbeat) continue;
          const a = msg.value.approval;
          messages.push({
            state: a?.state ?? State.UNSPECIFIED,
            version: Number(a?.version ?? 0),
            decidedBy: a?.decidedBy ?? "",
            at: performance.now(),
          });
        }
        return messages;
      })();
      return { replica, first, rest };
    });
    for (const w of watched) {
      const first = await w.first;
      expect(first.value?.approval?.state).toBe(State.PENDING);
    }

    // Each decided through a random replica other than its watcher's.
    const decisions = await inBatches(created, 50, async (id, i) => {
      const watcher = watched[i]?.replica ?? 0;
      const others = replicas.map((_, r) => r).filter((r) => r !== watcher);
      const replica = others[Math.floor(Math.random() * others.length)] as number;
      const approve = i % 4 !== 0;
      const approver = `U${1 + (i % 3)}`;
      const res = await (deciders[replica] as Client<typeof ApprovalService>).submitDecision({
        id,
        approver,
        decision: approve ? Decision.APPROVE : Decision.DENY,
        reason: approve ? "" : "not now",
        interactionId: `click-${id}`,
      });
      return {
        state: res.approval?.state,
        version: Number(res.approval?.version ?? 0),
        approver,
        at: performance.now(),
        replica,
      };
    });

    const received = await Promise.all(watched.map((w) => w.rest));
    const latencies: number[] = [];
    for (const [i, messages] of received.entries()) {
      const decision = decisions[i];
      expect(decision?.state === State.APPROVED || decision?.state === State.DENIED).toBe(true);
      expect(decision?.replica).not.toBe(watched[i]?.replica);
      // Exactly one message after the snapshot: the decision, as the decider's replica stored it.
      expect(messages.map(({ at: _, ...m }) => m)).toEqual([
        { state: decision?.state, version: decision?.version, decidedBy: decision?.approver },
      ]);
      latencies.push((messages[0]?.at ?? 0) - (decision?.at ?? 0));
    }

    // Slack: the three gateways share their message records and leases through Redis, so each approval's
    // message is posted once (by whichever replica got its lease first) and brought to the decision once.
    const outcome = (state: State | undefined) => (state === State.APPROVED ? "Approved: " : "Denied: ");
    const shown = await slack.waitFor(
      () => {
        const latest = new Map<string, string>();
        for (const m of slack.messages()) {
          const id = m.metadata?.event_payload.approval_id;
          if (typeof id === "string" && m.threadTs === undefined) latest.set(id, m.text);
        }
        const all = created.every((id, i) => latest.get(id)?.startsWith(outcome(decisions[i]?.state)));
        return all ? latest : undefined;
      },
      "every approval's Slack message showing its decision",
      90_000,
    );
    expect(shown.size).toBe(approvalCount);
    const posts = postsPerApproval();
    expect(created.filter((id) => posts.get(id) !== 1)).toEqual([]);
    const updates = new Map<string, number>();
    for (const call of slack.callsTo("chat.update")) {
      const id = approvalOf(call);
      if (id !== undefined) updates.set(id, (updates.get(id) ?? 0) + 1);
    }
    // One update per decision, or none when the post itself came after the decision.
    expect(created.filter((id) => (updates.get(id) ?? 0) > 1)).toEqual([]);

    latencies.sort((a, b) => a - b);
    const at = (q: number) =>
      (latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0).toFixed(1);
    // Decision response to watcher on another replica (negative: the watcher heard first). Measured, not
    // asserted tightly: a loaded CI machine is no benchmark.
    console.log(
      `cross-replica delivery after the decision's response, ms: p50 ${at(0.5)}, p99 ${at(0.99)}, max ${at(1)}`,
    );
    expect(latencies.every((ms) => ms < 10_000)).toBe(true);
  }, 180_000);

  it("delivers a decision made on replica B to a watcher on replica A (latency measured one at a time)", async () => {
    const latencies: number[] = [];
    for (let i = 0; i < 50; i++) {
      const [a, b] = [replicas[i % replicaCount], replicas[(i + 1) % replicaCount]] as [Replica, Replica];
      const requester = client(a, pki.requester);
      const { approval } = await requester.createApproval({
        action: `replicated.single${i}`,
        title: "single",
      });
      const iterator = requester.watchApproval({ id: approval?.id ?? "" })[Symbol.asyncIterator]();
      expect((await iterator.next()).value?.approval?.state).toBe(State.PENDING);
      const sent = performance.now();
      const decided = client(b, pki.decider).submitDecision({
        id: approval?.id ?? "",
        approver: "U1",
        decision: Decision.APPROVE,
      });
      const heard = await iterator.next();
      latencies.push(performance.now() - sent);
      expect(heard.value?.approval?.state).toBe(State.APPROVED);
      expect((await decided).approval?.state).toBe(State.APPROVED);
      expect((await iterator.next()).done).toBe(true);
    }
    latencies.sort((x, y) => x - y);
    const at = (q: number) =>
      (latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0).toFixed(1);
    // From sending SubmitDecision to B until the watcher on A has the decision: measured and reported,
    // not asserted (a loaded CI machine is no benchmark).
    console.log(
      `decision on B heard by a watcher on A, one at a time, ms: p50 ${at(0.5)}, p99 ${at(0.99)}, max ${at(1)}`,
    );
  }, 60_000);

  it("reports ready on every replica", async () => {
    for (const r of replicas) {
      const res = await fetch(`${r.opsUrl}/readyz`);
      expect(res.status).toBe(200);
    }
  });

  it("stops on SIGTERM having posted every approval to Slack exactly once", async () => {
    await slack.waitFor(
      () => postsPerApproval().size === approvalCount + 50,
      "every approval of this file posted",
      30_000,
    );
    for (const r of replicas) r.process.kill("SIGTERM");
    await Promise.all(replicas.map((r) => r.exited));
    expect(replicas.map((r) => r.process.exitCode)).toEqual(replicas.map(() => 0));
    // Nothing can post any more: every approval of this file, and only those, was posted exactly once.
    const posts = postsPerApproval();
    expect(posts.size).toBe(approvalCount + 50);
    expect([...posts].filter(([, n]) => n !== 1)).toEqual([]);
  }, 60_000);
});

describe("the create rate limit across replicas", () => {
  it("counts a client's creates on every replica against one limit", async () => {
    const servers = await Promise.all(
      [0, 1].map(() =>
        startTestServer({
          pki,
          policy,
          flags: {
            store: redis.url,
            redisKeyPrefix: "ratelimit-test:",
            createRateLimit: "2",
            createBurst: "0",
          },
        }),
      ),
    );
    try {
      // Two creates per second in all, whichever replica the client reaches: after two on A, B refuses.
      // (A fixed one-second window: should the three calls straddle a window boundary on a very slow
      // machine, the check is repeated once with another client, whose counters are fresh.)
      for (const identity of [pki.requester, pki.stranger]) {
        const [a, b] = servers.map((ts) => ts.clients(identity, "grpc").approvals) as [
          Client<typeof ApprovalService>,
          Client<typeof ApprovalService>,
        ];
        const started = performance.now();
        const outcomes = [];
        for (const replica of [a, a, b]) {
          outcomes.push(
            await replica.createApproval({ action: "replicated.limited", title: "limited" }).then(
              () => "created",
              (err: unknown) => ConnectError.from(err).code,
            ),
          );
        }
        if (performance.now() - started > 500 && identity === pki.requester) continue;
        expect(outcomes).toEqual(["created", "created", Code.ResourceExhausted]);
        break;
      }
    } finally {
      await Promise.all(servers.map((ts) => ts.close()));
    }
  });
});

describe("timers across replicas", () => {
  it("expires each approval once although every replica runs the expiry timer", async () => {
    const clock = createManualClock(Date.now());
    const shortPolicy = `${policy}
  - name: short
    match: "short.*"
    approvers: { users: [U1] }
    timeout: 60s
`;
    const servers = await Promise.all(
      [0, 1, 2].map(() =>
        startTestServer({
          pki,
          clock,
          policy: shortPolicy,
          flags: { store: redis.url, redisKeyPrefix: "expiry-test:" },
        }),
      ),
    );
    try {
      const clients = servers.map((ts) => ts.clients(pki.requester, "grpc").approvals);
      const [first] = clients as [Client<typeof ApprovalService>];
      const ids: string[] = [];
      for (let i = 0; i < 30; i++) {
        ids.push((await first.createApproval({ action: `short.n${i}`, title: "short" })).approval?.id ?? "");
      }
      // Every watcher has its snapshot before the deadline passes.
      const watchers = ids.map((id, i) => {
        const client = clients[i % clients.length] as Client<typeof ApprovalService>;
        return client.watchApproval({ id })[Symbol.asyncIterator]();
      });
      const snapshots = await Promise.all(watchers.map((w) => w.next()));
      expect(snapshots.map((s) => s.value?.approval?.state)).toEqual(ids.map(() => State.PENDING));
      const watched = watchers.map(async (iterator) => {
        const states: { state: State; version: bigint }[] = [];
        for (let msg = await iterator.next(); msg.done !== true; msg = await iterator.next()) {
          if (msg.value.heartbeat) continue;
          states.push({
            state: msg.value.approval?.state ?? State.UNSPECIFIED,
            version: msg.value.approval?.version ?? 0n,
          });
        }
        return states;
      });
      clock.advance(61_000);
      for (const states of await Promise.all(watched)) {
        expect(states).toEqual([{ state: State.EXPIRED, version: 2n }]);
      }
    } finally {
      await Promise.all(servers.map((ts) => ts.close()));
    }
  });
});
