/**
 * Two replicas (real servers on port 0, mutual TLS) share one private Redis: a policy reload on one,
 * by `ReloadPolicies` or by SIGHUP, reaches the other, so the same action gets the same answer on both;
 * a replica that cannot adopt the set the other published keeps its own and both show the disagreement
 * (`GetPolicies`, `/readyz`), until the next good reload.
 */
import { writeFileSync } from "node:fs";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { State } from "../gen/countersign/v1/approval_pb.js";
import { parsePolicyDocument } from "../server/policy/policy-loader.js";
import { createTestPki, type TestPki, testIdentities } from "./support/certs.js";
import { type RedisServer, startRedis } from "./support/redis.js";
import { startTestServer, type TestServer } from "./support/test-server.js";

const adminToken = "policy-sync-test-admin-token-0123456789";

/** A policy file; with `refunds`, `billing.refund` has a policy (else it is an unknown action: denied). */
function policyFile(options: { refunds: boolean; description?: string }): string {
  const refunds = options.refunds
    ? `  - name: refunds\n    match: "billing.refund"\n    approvers: { users: [U1] }\n${options.description === undefined ? "" : `    description: "${options.description}"\n`}`
    : "";
  return `version: 1
defaults: { channel: C0, timeout: 10m, unknown_action: deny }
policies:
  - name: deploys
    match: "deploy.*"
    approvers: { users: [U1, U2] }
${refunds}`;
}

/** What replica B's (older) release refuses: a document with this text in it. */
const newerFeature = "needs-a-newer-release";

/** A log line of a server, as JSON. */
type LogLine = Record<string, unknown> & { msg: string };

/** A logger that keeps every line, and a way to wait for one. */
function capturedLogger() {
  const lines: LogLine[] = [];
  const waiters: { match: (line: LogLine) => boolean; resolve: (line: LogLine) => void }[] = [];
  const logger = pino(
    { level: "info" },
    {
      write(text: string) {
        const line = JSON.parse(text) as LogLine;
        lines.push(line);
        for (const w of [...waiters])
          if (w.match(line)) {
            waiters.splice(waiters.indexOf(w), 1);
            w.resolve(line);
          }
      },
    },
  );
  return {
    logger,
    /** Resolves with the first line from now on (or already logged, with `past`) that `match` accepts. */
    next(match: (line: LogLine) => boolean, what: string, past = false): Promise<LogLine> {
      const seen = past ? lines.find(match) : undefined;
      if (seen !== undefined) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no log line "${what}" within 10 s`)), 10_000);
        waiters.push({
          match,
          resolve: (line) => {
            clearTimeout(timer);
            resolve(line);
          },
        });
      });
    },
  };
}

describe("policy sync between replicas (Redis)", () => {
  let pki: TestPki;
  let redis: RedisServer;
  let a: TestServer;
  let b: TestServer;
  const logA = capturedLogger();
  const logB = capturedLogger();

  beforeAll(async () => {
    pki = createTestPki();
    redis = await startRedis();
    const common = {
      pki,
      policy: policyFile({ refunds: false }),
      flags: {
        store: redis.url,
        requesters: testIdentities.requester,
        deciders: testIdentities.decider,
      },
      env: { ADMIN_TOKEN: adminToken },
    };
    a = await startTestServer({ ...common, logger: logA.logger });
    b = await startTestServer({
      ...common,
      logger: logB.logger,
      // An older release: it refuses what it does not know.
      parsePolicies: (text) =>
        text.includes(newerFeature)
          ? {
              ok: false,
              problems: [{ path: "policies[1].description", message: "unknown to this release" }],
            }
          : parsePolicyDocument(text),
    });
    // B's first sync is done (else a reload racing it would meet B's file, which wins at start).
    await logB.next(
      (l) =>
        l.msg === "policies are the ones the replicas share" ||
        l.msg === "policies published to every replica through the store",
      "B's first sync",
      true,
    );
  }, 60_000);

  afterAll(async () => {
    await a?.close();
    await b?.close();
    await redis?.stop();
  });

  const admin = (ts: TestServer) =>
    ts.clients(pki.requester, "grpc", { headers: { authorization: `Bearer ${adminToken}` } }).admin;

  const refundState = async (ts: TestServer): Promise<State | undefined> => {
    const created = await ts.clients(pki.requester, "grpc").approvals.createApproval({
      action: "billing.refund",
      title: "Refund order 42",
    });
    return created.approval?.state;
  };

  const readyz = async (ts: TestServer) => {
    const res = await fetch(`${ts.server.opsUrl}/readyz`);
    return { status: res.status, body: (await res.json()) as { checks: Record<string, string> } };
  };

  /** Rewrites A's file (B's stays as it was: only the publication can change B). */
  const rewriteA = (text: string) => writeFileSync(a.policyPath, text);

  const adoptedOnB = () =>
    logB.next((l) => l.msg === "policies adopted from another replica", "policies adopted on B");

  it("gives the same answer on both replicas after ReloadPolicies on one", async () => {
    expect(await refundState(a)).toBe(State.DENIED);
    expect(await refundState(b)).toBe(State.DENIED);

    rewriteA(policyFile({ refunds: true }));
    const adopted = adoptedOnB();
    const reloaded = await admin(a).reloadPolicies({});
    expect(reloaded.applied).toBe(true);
    const line = await adopted;
    expect(line.policy_sha256).toBe(reloaded.sha256);

    expect(await refundState(b)).toBe(State.PENDING);
    expect(await refundState(a)).toBe(State.PENDING);
    const [onA, onB] = await Promise.all([admin(a).getPolicies({}), admin(b).getPolicies({})]);
    expect(onB.sha256).toBe(reloaded.sha256);
    expect(onB.generation).toBe(onA.generation);
    expect(onA.replicasDisagree).toBe(false);
    expect(onB.replicasDisagree).toBe(false);
    expect(onB.source).toContain(`published by ${onA.replicas[0]?.replica}`);
    expect((await readyz(b)).body.checks.policies).toBe("ok");
  });

  it("reaches every replica from a SIGHUP reload too", async () => {
    rewriteA(policyFile({ refunds: false }));
    const adopted = adoptedOnB();
    await a.server.reloadPolicies(); // what SIGHUP runs
    await adopted;
    expect(await refundState(b)).toBe(State.DENIED);
    expect(await refundState(a)).toBe(State.DENIED);
    const [onA, onB] = await Promise.all([admin(a).getPolicies({}), admin(b).getPolicies({})]);
    expect(onB.sha256).toBe(onA.sha256);
    expect(onA.replicasDisagree).toBe(false);
  });

  it("shows on both replicas that one cannot adopt the set, until the next good reload", async () => {
    const before = await admin(b).getPolicies({});
    rewriteA(policyFile({ refunds: true, description: newerFeature }));
    const refused = logB.next(
      (l) => l.msg === "cannot adopt the policies another replica published; keeping the current ones",
      "B refuses the set",
    );
    const reloaded = await admin(a).reloadPolicies({});
    expect(reloaded.applied).toBe(true);
    const line = await refused;
    expect(line.reason).toContain("policies[1].description: unknown to this release");

    // Each replica keeps its own set: the same action gets different answers until it is fixed.
    expect(await refundState(a)).toBe(State.PENDING);
    expect(await refundState(b)).toBe(State.DENIED);

    const [onA, onB] = await Promise.all([admin(a).getPolicies({}), admin(b).getPolicies({})]);
    expect(onB.sha256).toBe(before.sha256);
    const nameA = onA.replicas[0]?.replica ?? "";
    const nameB = onB.replicas[0]?.replica ?? "";
    expect(nameA).not.toBe(nameB);
    for (const view of [onA, onB]) {
      expect(view.replicasDisagree).toBe(true);
      const byName = Object.fromEntries(view.replicas.map((r) => [r.replica, r]));
      expect(byName[nameA]).toMatchObject({ sha256: reloaded.sha256, error: "", stale: false });
      expect(byName[nameB]).toMatchObject({ sha256: before.sha256, stale: false });
      expect(byName[nameB]?.error).toContain("unknown to this release");
      expect(view.disagreement).toContain(`${nameA} has ${reloaded.sha256.slice(0, 12)}`);
      expect(view.disagreement).toContain(`${nameB} has ${before.sha256.slice(0, 12)}`);
    }

    // Reported, not failed: a set one release refuses must not take its replicas out of the balancer.
    for (const ts of [a, b]) {
      const { status, body } = await readyz(ts);
      expect(status).toBe(200);
      expect(body.checks.policies).toContain(`${nameA} has ${reloaded.sha256.slice(0, 12)}`);
      expect(body.checks.policies).toContain(`${nameB} has ${before.sha256.slice(0, 12)}`);
    }

    rewriteA(policyFile({ refunds: true, description: "Refunds need one approval" }));
    const adopted = adoptedOnB();
    const fixed = await admin(a).reloadPolicies({});
    await adopted;
    const [fixedA, fixedB] = await Promise.all([admin(a).getPolicies({}), admin(b).getPolicies({})]);
    for (const view of [fixedA, fixedB]) {
      expect(view.sha256).toBe(fixed.sha256);
      expect(view.replicasDisagree).toBe(false);
      expect(view.disagreement).toBe("");
      expect(view.replicas.map((r) => [r.sha256, r.error])).toEqual([
        [fixed.sha256, ""],
        [fixed.sha256, ""],
      ]);
    }
    expect(await refundState(b)).toBe(State.PENDING);
    for (const ts of [a, b]) expect((await readyz(ts)).body.checks.policies).toBe("ok");
  });

  it("publishes the file of a replica that starts with a different one (the file wins at start)", async () => {
    const adopted = adoptedOnB();
    const adoptedOnA = logA.next((l) => l.msg === "policies adopted from another replica", "adopted on A");
    const c = await startTestServer({
      pki,
      policy: policyFile({ refunds: false }),
      flags: { store: redis.url, requesters: testIdentities.requester },
      env: { ADMIN_TOKEN: adminToken },
    });
    try {
      const line = await adopted;
      const onC = await admin(c).getPolicies({});
      expect(line.policy_sha256).toBe(onC.sha256);
      expect(await refundState(b)).toBe(State.DENIED);
      // A adopts it too (its file says otherwise; a later reload on A would publish A's file again).
      expect((await adoptedOnA).policy_sha256).toBe(onC.sha256);
      const onA = await admin(a).getPolicies({});
      expect(onA.sha256).toBe(onC.sha256);
      expect(onA.generation).toBe(onC.generation);
    } finally {
      await c.close();
    }
    // C withdrew its report when it stopped.
    const names = (await admin(a).getPolicies({})).replicas.map((r) => r.replica);
    expect(names).toHaveLength(2);
  });

  it("still answers GetPolicies with its own set while Redis cannot be read, saying it cannot compare", async () => {
    const own = await admin(a).getPolicies({});
    redis.freeze();
    try {
      const view = await admin(a).getPolicies({});
      expect(view.sha256).toBe(own.sha256);
      expect(view.replicas).toEqual([]);
      expect(view.replicasDisagree).toBe(false);
      expect(view.disagreement).toMatch(
        /^cannot compare with the other replicas: the approval store is unavailable/,
      );
      const { status, body } = await readyz(a);
      expect(status).toBe(503); // the store check's doing
      expect(body.checks.policies).toMatch(/^cannot compare with the other replicas/);
    } finally {
      redis.resume();
    }
  });
});
