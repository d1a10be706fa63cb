/**
 * Consistency under races, through the real server (mutual TLS, gRPC and Connect) on the memory store
 * and on a private Redis: the deadline is the deadline (issue 16), an edit cannot defeat the two-person
 * rule, and one stored transition has one winner, one audit line and one metric (issue 17).
 */
import { readFileSync } from "node:fs";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Decision, State } from "../gen/countersign/v1/approval_pb.js";
import { type AuditLine, parseAuditLine } from "../server/audit/audit-record.js";
import { createManualClock } from "../server/domain/clock.js";
import type { ApprovalStore } from "../server/store/approval-store.js";
import { createRedisApprovalStore } from "../server/store/redis-approval-store.js";
import { createRedisConnections } from "../server/store/redis-connection.js";
import { parsePrometheusText } from "../server/telemetry/prometheus-text.js";
import { createTestPki, type TestPki, testIdentities } from "./support/certs.js";
import { type RedisServer, startRedis } from "./support/redis.js";
import { startTestServer, type TestServer } from "./support/test-server.js";
import { waitFor } from "./support/wait.js";

const adminToken = "consistency-test-admin-token-0123456789";
const policy = `
version: 1
defaults: { channel: C0, timeout: 10m, unknown_action: deny }
policies:
  - name: expiring
    match: "expiring.*"
    approvers: { users: [U1, U2] }
    required_approvals: 1
    timeout: 1m
  - name: two-person
    match: "two-person.*"
    approvers: { users: [U1, U2, U3] }
    required_approvals: 2
    overrides: { keys: [image], max_keys: 1, max_diff_bytes: 64 }
  - name: two-person-lenient
    match: "lenient.*"
    approvers: { users: [U1, U2, U3] }
    required_approvals: 2
    overrides: { keys: [image], max_keys: 1, max_diff_bytes: 64, edits_keep_approvals: true }
  - name: break-glass
    match: "break-glass.*"
    approvers: { users: [U1] }
`;

function auditLines(ts: TestServer): AuditLine[] {
  return readFileSync(ts.auditPath, "utf8")
    .split("\n")
    .flatMap((text) => {
      const line = parseAuditLine(text);
      return line === undefined ? [] : [line];
    });
}

async function metrics(ts: TestServer) {
  const res = await fetch(`${ts.server.opsUrl}/metrics`);
  return parsePrometheusText(await res.text());
}

for (const backend of ["memory", "redis"] as const) {
  describe(`consistency through the API (${backend} store)`, () => {
    let pki: TestPki;
    let redis: RedisServer | undefined;
    let ts: TestServer;
    const clock = createManualClock(Date.now());

    beforeAll(async () => {
      pki = createTestPki();
      if (backend === "redis") redis = await startRedis();
      ts = await startTestServer({
        pki,
        policy,
        clock,
        flags: {
          deciders: testIdentities.decider,
          requesters: testIdentities.requester,
          ...(redis === undefined ? {} : { store: redis.url }),
        },
        env: { ADMIN_TOKEN: adminToken },
      });
    });

    afterAll(async () => {
      await ts?.close();
      await redis?.stop();
    });

    it("refuses every vote after the deadline while many approvals expire at once, and expires each once", async () => {
      const requester = ts.clients(pki.requester, "grpc").approvals;
      const deciders = [
        ts.clients(pki.decider, "grpc").approvals,
        ts.clients(pki.decider, "connect").approvals,
      ];
      const count = 60;
      const ids: string[] = [];
      for (let i = 0; i < count; i++) {
        const created = await requester.createApproval({ action: "expiring.deploy", title: `Deploy ${i}` });
        ids.push(created.approval?.id ?? "");
      }
      const before = await metrics(ts);
      // Every deadline passes at once; the scheduler (every 250 ms) and the votes race to expire them.
      clock.advance(61_000);
      const votes = await Promise.allSettled(
        ids.flatMap((id, i) =>
          ["U1", "U2"].map((approver, j) =>
            (deciders[(i + j) % 2] ?? deciders[0])?.submitDecision({
              id,
              approver,
              decision: Decision.APPROVE,
              interactionId: `late-${i}-${j}`,
            }),
          ),
        ),
      );
      for (const vote of votes) {
        expect(vote.status).toBe("rejected");
        const err = ConnectError.from((vote as PromiseRejectedResult).reason);
        expect(err.code).toBe(Code.FailedPrecondition);
        expect(err.rawMessage).toMatch(/^approval \S+ expired at .*; nothing done after its deadline counts/);
      }
      for (const id of ids) {
        const got = await requester.getApproval({ id });
        expect(got.approval?.state).toBe(State.EXPIRED);
        expect(got.approval?.votes).toEqual([]);
      }
      const idSet = new Set(ids);
      await waitFor(
        () =>
          new Set(
            auditLines(ts)
              .filter((l) => l.type === "expired")
              .map((l) => l.approval_id),
          ).size >= count,
        10_000,
        "an expired audit line per approval",
      );
      const lines = auditLines(ts).filter((l) => idSet.has(l.approval_id ?? ""));
      expect(lines.filter((l) => l.type === "expired")).toHaveLength(count);
      expect(lines.filter((l) => l.type === "decided" || l.type === "vote")).toEqual([]);
      const after = await metrics(ts);
      const delta = (name: string, labels: Record<string, string>) =>
        after.value(name, labels) - before.value(name, labels);
      expect(delta("countersign_expirations_total", { action: "expiring.deploy" })).toBe(count);
      expect(delta("countersign_votes_total", { action: "expiring.deploy" })).toBe(0);
    });

    it("does not let an edit carry an approval another approver gave to other params", async () => {
      const requester = ts.clients(pki.requester, "connect").approvals;
      const decider = ts.clients(pki.decider, "grpc").approvals;
      const created = await requester.createApproval({
        action: "two-person.deploy",
        title: "Deploy",
        params: { image: "image:v42" },
      });
      const id = created.approval?.id ?? "";
      await decider.submitDecision({ id, approver: "U2", decision: Decision.APPROVE, interactionId: "b-1" });
      const edited = await decider.submitDecision({
        id,
        approver: "U1",
        decision: Decision.APPROVE,
        interactionId: "a-1",
        editedParams: { image: "image:evil" },
      });
      expect(edited.recorded).toBe(true);
      expect(edited.approval?.state).toBe(State.PENDING);
      expect(edited.approval?.params).toEqual({ image: "image:evil" });
      expect(edited.approval?.votes.map((v) => v.approver)).toEqual(["U1"]);
      // B's click retried: not an approval of params B never saw.
      const retried = await decider.submitDecision({
        id,
        approver: "U2",
        decision: Decision.APPROVE,
        interactionId: "b-1",
      });
      expect(retried.recorded).toBe(false);
      expect(retried.approval?.state).toBe(State.PENDING);
      // B looks at the new params and approves them: the two-person rule is met.
      const final = await decider.submitDecision({
        id,
        approver: "U2",
        decision: Decision.APPROVE,
        interactionId: "b-2",
      });
      expect(final.approval?.state).toBe(State.APPROVED);
      expect(final.approval?.votes.map((v) => v.approver)).toEqual(["U1", "U2"]);

      // A policy that opts out keeps the earlier approval.
      const lenient = await requester.createApproval({
        action: "lenient.deploy",
        title: "Deploy",
        params: { image: "image:v42" },
      });
      const lid = lenient.approval?.id ?? "";
      await decider.submitDecision({ id: lid, approver: "U2", decision: Decision.APPROVE });
      const kept = await decider.submitDecision({
        id: lid,
        approver: "U1",
        decision: Decision.APPROVE,
        editedParams: { image: "image:v43" },
      });
      expect(kept.approval?.state).toBe(State.APPROVED);
    });

    it("gives one of 24 identical concurrent admin resolves (and cancels) the win: one answer, audit line, metric", async () => {
      const requester = ts.clients(pki.requester, "grpc").approvals;
      const admins = (["grpc", "connect"] as const).map(
        (protocol) =>
          ts.clients(pki.requester, protocol, { headers: { authorization: `Bearer ${adminToken}` } }).admin,
      );
      const resolved = (await requester.createApproval({ action: "break-glass.a", title: "Resolve" }))
        .approval;
      const cancelled = (await requester.createApproval({ action: "break-glass.b", title: "Cancel" }))
        .approval;
      const before = await metrics(ts);
      const [resolves, cancels] = await Promise.all([
        Promise.allSettled(
          Array.from({ length: 24 }, (_, i) =>
            (admins[i % 2] ?? admins[0])?.resolveApproval({
              id: resolved?.id ?? "",
              decision: Decision.APPROVE,
              reason: "incident 42",
              admin: "oncall",
            }),
          ),
        ),
        Promise.allSettled(
          Array.from({ length: 24 }, (_, i) =>
            (admins[i % 2] ?? admins[0])?.cancelApproval({
              id: cancelled?.id ?? "",
              reason: "incident 42",
              admin: "oncall",
            }),
          ),
        ),
      ]);
      for (const [outcomes, state] of [
        [resolves, "approved"],
        [cancels, "cancelled"],
      ] as const) {
        expect(outcomes.filter((o) => o.status === "fulfilled")).toHaveLength(1);
        for (const o of outcomes) {
          if (o.status === "fulfilled") continue;
          const err = ConnectError.from(o.reason);
          expect(err.code).toBe(Code.FailedPrecondition);
          expect(err.rawMessage).toMatch(new RegExp(`is already ${state} by oncall$`));
        }
      }
      await waitFor(
        () =>
          auditLines(ts).some((l) => l.approval_id === resolved?.id && l.type === "admin_resolved") &&
          auditLines(ts).some((l) => l.approval_id === cancelled?.id && l.outcome === "cancelled"),
        10_000,
        "the audit lines of both decisions",
      );
      const lines = auditLines(ts);
      const adminLines = lines.filter((l) => l.approval_id === resolved?.id && l.type === "admin_resolved");
      expect(adminLines).toHaveLength(1);
      // The admin name is self-asserted; the certificate and the token it came with are recorded too.
      expect(adminLines[0]).toMatchObject({ actor: testIdentities.requester, decided_by: "oncall" });
      expect(await ts.server.store.get(resolved?.id ?? "")).toMatchObject({
        decidedBy: "oncall",
        adminCaller: { name: "oncall", certificate: testIdentities.requester, tokenHolder: "admin" },
      });
      expect(lines.filter((l) => l.approval_id === cancelled?.id && l.outcome === "cancelled")).toHaveLength(
        1,
      );
      const after = await metrics(ts);
      for (const [action, outcome] of [
        ["break-glass.a", "approved"],
        ["break-glass.b", "cancelled"],
      ] as const) {
        const labels = { action, outcome };
        expect(
          after.value("countersign_decisions_total", labels) -
            before.value("countersign_decisions_total", labels),
        ).toBe(1);
      }
    });
  });
}

describe("a decision answered UNAVAILABLE and applied later (Redis paused)", () => {
  let pki: TestPki;
  let redis: RedisServer;
  let ts: TestServer;
  /** Set by the test: Redis freezes just before the next compare-and-set is sent, for `frozenMs`. */
  let freezeBeforeNextWrite = false;
  const frozenMs = 1_000;

  beforeAll(async () => {
    pki = createTestPki();
    redis = await startRedis();
    const inner = createRedisApprovalStore({
      connections: createRedisConnections({
        url: redis.url,
        commandTimeoutMs: 300,
        waitReplicas: 0,
        keyPrefix: "countersign:",
      }),
    });
    // The real Redis store; only the moment of the freeze is chosen: after the read, as the write goes.
    const store: ApprovalStore = {
      ...inner,
      compareAndSet(next, expectedVersion) {
        if (freezeBeforeNextWrite) {
          freezeBeforeNextWrite = false;
          redis.freeze();
          setTimeout(() => redis.resume(), frozenMs);
        }
        return inner.compareAndSet(next, expectedVersion);
      },
    };
    ts = await startTestServer({
      pki,
      policy,
      store,
      flags: { deciders: testIdentities.decider, requesters: testIdentities.requester },
    });
  });

  afterAll(async () => {
    await ts?.close();
    await redis?.stop();
  });

  it("audits the stored decision exactly once, and a retry returns the stored outcome", async () => {
    const requester = ts.clients(pki.requester, "grpc").approvals;
    const decider = ts.clients(pki.decider, "connect").approvals;
    const id =
      (await requester.createApproval({ action: "break-glass.paused", title: "Paused" })).approval?.id ?? "";
    const vote = { id, approver: "U1", decision: Decision.APPROVE, interactionId: "click-paused" };

    // The compare-and-set reaches Redis, which is frozen: the call times out with UNAVAILABLE.
    freezeBeforeNextWrite = true;
    const code = await decider.submitDecision(vote).then(
      () => undefined,
      (err: unknown) => ConnectError.from(err).code,
    );
    expect(code).toBe(Code.Unavailable);

    // Redis applies it on resume; the server that wrote it audits it when it sees it stored.
    await waitFor(
      () => auditLines(ts).some((l) => l.approval_id === id && l.type === "decided"),
      10_000,
      "the decided audit line of the write applied after the timeout",
    );
    const retried = await decider.submitDecision(vote);
    expect(retried.recorded).toBe(false);
    expect(retried.approval?.state).toBe(State.APPROVED);
    expect(retried.approval?.votes.map((v) => v.approver)).toEqual(["U1"]);
    const lines = auditLines(ts).filter((l) => l.approval_id === id);
    expect(lines.filter((l) => l.type === "decided")).toHaveLength(1);
    expect(lines.filter((l) => l.type === "vote")).toHaveLength(1);
  });
});

describe("a Redis that lost its data (FLUSHALL)", () => {
  let pki: TestPki;
  let redis: RedisServer;
  const servers: TestServer[] = [];
  const start = async () => {
    const ts = await startTestServer({
      pki,
      policy,
      flags: { deciders: testIdentities.decider, requesters: testIdentities.requester, store: redis.url },
    });
    servers.push(ts);
    return ts;
  };
  const readyz = async (ts: TestServer) => {
    const res = await fetch(`${ts.server.opsUrl}/readyz`);
    return { status: res.status, body: (await res.json()) as { checks: Record<string, string> } };
  };

  beforeAll(async () => {
    pki = createTestPki();
    redis = await startRedis();
  });

  afterAll(async () => {
    for (const ts of servers) await ts.close();
    await redis?.stop();
  });

  it("is noticed: not ready with the reason, a metric, writes refused; a restarted replica adopts it", async () => {
    const ts = await start();
    expect((await readyz(ts)).status).toBe(200);
    const requester = ts.clients(pki.requester, "grpc").approvals;
    await requester.createApproval({ action: "break-glass.before", title: "Before" });

    await redis.client().flushall();
    const after = await readyz(ts);
    expect(after.status).toBe(503);
    expect(after.body.checks.store).toMatch(
      /^Redis lost the approval store's data: the epoch key countersign:epoch is gone/,
    );
    expect((await metrics(ts)).value("countersign_store_data_lost")).toBe(1);
    const refused = await requester.createApproval({ action: "break-glass.after", title: "After" }).then(
      () => undefined,
      (err: unknown) => ConnectError.from(err),
    );
    expect(refused?.code).toBe(Code.Unavailable);
    expect(refused?.rawMessage).toMatch(/lost the approval store's data/);

    // The documented rule: a replica (re)started on the store adopts it as it is now.
    const restarted = await start();
    expect((await readyz(restarted)).status).toBe(200);
    expect((await metrics(restarted)).value("countersign_store_data_lost")).toBe(0);
    // The replica that saw the loss stays out of service until it is restarted too.
    expect((await readyz(ts)).status).toBe(503);
  });
});
