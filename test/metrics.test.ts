import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Decision, State } from "../gen/countersign/v1/approval_pb.js";
import { createManualClock } from "../server/domain/clock.js";
import { type PrometheusPage, parsePrometheusText } from "../server/telemetry/prometheus-text.js";
import { createTestPki, type TestPki, testIdentities } from "./support/certs.js";
import { startTestServer, type TestServer } from "./support/test-server.js";

const adminToken = "metrics-test-admin-token-0123456789";
const policy = `
version: 1
defaults: { channel: C0DEFAULT, timeout: 10m, unknown_action: deny, super_approvers: [UADMIN] }
policies:
  - name: deploy
    match: "deploy.*"
    approvers: { users: [U1, U2] }
    timeout: 60s
  - name: flood
    match: "flood"
    approvers: { users: [U1] }
    timeout: 10m
`;

async function scrape(ts: TestServer): Promise<PrometheusPage> {
  const res = await fetch(`${ts.server.opsUrl}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toContain("text/plain");
  return parsePrometheusText(await res.text());
}

async function code(call: Promise<unknown>): Promise<Code | undefined> {
  return call.then(
    () => undefined,
    (err: unknown) => ConnectError.from(err).code,
  );
}

describe("/metrics after a scripted run", () => {
  let pki: TestPki;
  let ts: TestServer;
  let before: PrometheusPage;
  let after: PrometheusPage;
  let duringWatch: PrometheusPage;
  let flooded = 0;
  const clock = createManualClock(Date.now());
  const delta = (name: string, labels?: Record<string, string>) =>
    after.value(name, labels) - before.value(name, labels);

  beforeAll(async () => {
    pki = createTestPki();
    ts = await startTestServer({
      pki,
      policy,
      clock,
      flags: {
        deciders: testIdentities.decider,
        requesters: testIdentities.requester,
        createRateLimit: "1",
        createBurst: "10",
      },
      env: { ADMIN_TOKEN: adminToken },
    });
    const requester = ts.clients(pki.requester, "grpc").approvals;
    const decider = ts.clients(pki.decider, "connect").approvals;
    const stranger = ts.clients(pki.stranger, "grpc").approvals;
    const badAdmin = ts.clients(pki.requester, "grpc-web", {
      headers: { authorization: "Bearer nope" },
    }).admin;
    before = await scrape(ts);

    // Approve: a create and one approval (gRPC in, Connect for the decision).
    const a =
      (await requester.createApproval({ action: "deploy.api", title: "approve me" })).approval?.id ?? "";
    const watch = requester.watchApproval({ id: a })[Symbol.asyncIterator]();
    expect((await watch.next()).value?.approval?.state).toBe(State.PENDING);
    duringWatch = await scrape(ts);
    await decider.submitDecision({ id: a, approver: "U1", decision: Decision.APPROVE });
    for (let m = await watch.next(); !m.done; m = await watch.next()) {
      if (m.value.approval?.state !== State.PENDING) break;
    }
    await watch.return?.();
    // Deny.
    const d = (await requester.createApproval({ action: "deploy.api", title: "deny me" })).approval?.id ?? "";
    await decider.submitDecision({ id: d, approver: "U2", decision: Decision.DENY, reason: "not now" });
    // Expire.
    const e =
      (await requester.createApproval({ action: "deploy.db", title: "expire me" })).approval?.id ?? "";
    const expired = new Promise<void>((resolve) => {
      const stop = ts.server.store.subscribe(e, (x) => {
        if (x.state === "expired") {
          stop();
          resolve();
        }
      });
    });
    clock.advance(61_000);
    await expired;
    // Security events: a click by someone who is not an approver, a call without the role, a bad token.
    const p = (await requester.createApproval({ action: "deploy.web", title: "pending" })).approval?.id ?? "";
    expect(await code(decider.submitDecision({ id: p, approver: "UX", decision: Decision.APPROVE }))).toBe(
      Code.PermissionDenied,
    );
    expect(await code(stranger.submitDecision({ id: p, approver: "U1", decision: Decision.APPROVE }))).toBe(
      Code.PermissionDenied,
    );
    expect(await code(badAdmin.getStats({}))).toBe(Code.Unauthenticated);
    // Creates until the rate limit refuses one.
    for (let i = 0; i < 40; i++) {
      const c = await code(requester.createApproval({ action: "flood", title: `flood ${i}` }));
      if (c === Code.ResourceExhausted) break;
      expect(c).toBeUndefined();
      flooded++;
    }
    clock.advance(5_000);
    after = await scrape(ts);
  }, 120_000);

  afterAll(async () => {
    await ts?.close();
  });

  it("counts approvals created, votes and decisions by action and outcome, and expirations", () => {
    expect(delta("countersign_approvals_created_total", { action: "deploy.api" })).toBe(2);
    expect(delta("countersign_approvals_created_total", { action: "deploy.db" })).toBe(1);
    expect(delta("countersign_approvals_created_total", { action: "flood" })).toBe(flooded);
    expect(delta("countersign_votes_total", { action: "deploy.api", decision: "approve" })).toBe(1);
    expect(delta("countersign_votes_total", { action: "deploy.api", decision: "deny" })).toBe(1);
    expect(delta("countersign_decisions_total", { action: "deploy.api", outcome: "approved" })).toBe(1);
    expect(delta("countersign_decisions_total", { action: "deploy.api", outcome: "denied" })).toBe(1);
    expect(delta("countersign_expirations_total", { action: "deploy.db" })).toBe(1);
  });

  it("observes create → terminal latency by action and outcome", () => {
    const count = (outcome: string, action = "deploy.api") =>
      delta("countersign_decision_latency_seconds_count", { action, outcome });
    expect(count("approved")).toBe(1);
    expect(count("denied")).toBe(1);
    expect(count("expired", "deploy.db")).toBe(1);
    // Expired 61 s (of the manual clock) after it was created.
    expect(
      delta("countersign_decision_latency_seconds_sum", { action: "deploy.db", outcome: "expired" }),
    ).toBe(61);
    expect(delta("countersign_decision_latency_seconds_bucket", { outcome: "expired", le: "60" })).toBe(0);
    expect(delta("countersign_decision_latency_seconds_bucket", { outcome: "expired", le: "120" })).toBe(1);
  });

  it("counts security events by type", () => {
    expect(delta("countersign_security_events_total", { type: "unauthorized" })).toBe(2);
    expect(delta("countersign_security_events_total", { type: "bad_admin_token" })).toBe(1);
    expect(delta("countersign_security_events_total", { type: "rate_limited" })).toBe(1);
    // Every type is exposed from the start, at 0, so alerts and dashboards see it.
    for (const type of ["bad_signature", "stale_timestamp", "replay"]) {
      expect(
        after.samples.some((s) => s.name === "countersign_security_events_total" && s.labels.type === type),
      ).toBe(true);
    }
  });

  it("counts RPCs by method and code on both transports, with latency for unary calls", () => {
    const handled = (method: string, code: string) =>
      delta("countersign_rpc_handled_total", { service: "countersign.v1.ApprovalService", method, code });
    expect(handled("CreateApproval", "ok")).toBe(4 + flooded);
    expect(handled("CreateApproval", "resource_exhausted")).toBe(1);
    expect(handled("SubmitDecision", "ok")).toBe(2);
    expect(handled("SubmitDecision", "permission_denied")).toBe(2);
    expect(handled("WatchApproval", "ok") + handled("WatchApproval", "canceled")).toBe(1);
    expect(
      delta("countersign_rpc_handled_total", {
        service: "countersign.v1.AdminService",
        code: "unauthenticated",
      }),
    ).toBe(1);
    expect(
      delta("countersign_rpc_duration_seconds_count", {
        method: "SubmitDecision",
        code: "permission_denied",
      }),
    ).toBe(2);
  });

  it("observes create and decision processing latency with the SLO thresholds as bucket bounds", () => {
    expect(delta("countersign_create_duration_seconds_count")).toBe(4 + flooded);
    expect(delta("countersign_decide_duration_seconds_count")).toBe(2);
    const bounds = after.samples
      .filter((s) => s.name === "countersign_decide_duration_seconds_bucket")
      .map((s) => s.labels.le);
    expect(bounds).toEqual(expect.arrayContaining(["0.12", "0.25", "+Inf"]));
    expect(after.value("countersign_create_duration_seconds_bucket", { le: "+Inf" })).toBe(
      after.value("countersign_create_duration_seconds_count"),
    );
  });

  it("reads pending approvals, the oldest one's age and the store's health from the store", () => {
    expect(after.value("countersign_approvals_pending", { action: "flood" })).toBe(flooded);
    expect(after.value("countersign_approvals_pending", { action: "deploy.web" })).toBe(1);
    expect(after.value("countersign_approvals_pending", { action: "deploy.api" })).toBe(0);
    // deploy.web was created right after the 61 s jump; the clock moved 5 s since.
    expect(after.value("countersign_approvals_oldest_pending_age_seconds")).toBe(5);
    expect(after.value("countersign_approvals_overdue")).toBe(0);
    expect(after.value("countersign_store_up")).toBe(1);
    const lastRun = after.value("countersign_scheduler_last_run_timestamp_seconds");
    expect(Date.now() / 1000 - lastRun).toBeLessThan(60);
  });

  it("shows open watch streams", () => {
    expect(duringWatch.value("countersign_watch_streams_active", { method: "WatchApproval" })).toBe(1);
    expect(after.value("countersign_watch_streams_active", { method: "WatchApproval" })).toBe(0);
  });

  it("counts policy loads and exposes Node process metrics", () => {
    expect(after.value("countersign_policy_reloads_total", { outcome: "applied" })).toBe(1);
    for (const name of [
      "process_cpu_user_seconds_total",
      "nodejs_eventloop_lag_seconds",
      "nodejs_heap_size_used_bytes",
    ])
      expect(after.families.has(name), name).toBe(true);
  });

  it("exposes the Slack series from the start, at 0, without Slack (the Slack run: metrics-slack.test.ts)", () => {
    for (const family of [
      "countersign_slack_api_calls_total",
      "countersign_slack_rate_limited_total",
      "countersign_slack_retries_total",
      "countersign_slack_queue_depth",
      "countersign_slack_queue_oldest_age_seconds",
    ])
      expect(after.families.has(family), family).toBe(true);
    expect(after.value("countersign_security_events_total", { type: "replay" })).toBe(0);
    expect(after.value("countersign_slack_queue_depth")).toBe(0);
  });
});
