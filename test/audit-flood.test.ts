import { readFileSync } from "node:fs";
import { Code, ConnectError } from "@connectrpc/connect";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { State } from "../gen/countersign/v1/approval_pb.js";
import { type AuditLine, parseAuditLine } from "../server/audit/audit-record.js";
import { verifyAuditFiles } from "../server/audit/audit-verify.js";
import { loadServeConfig } from "../server/config/config.js";
import { startSlackGatewayProcess } from "../server/main.js";
import { parsePrometheusText } from "../server/telemetry/prometheus-text.js";
import { createTestPki, type TestPki, testIdentities, writePemFiles } from "./support/certs.js";
import { slackTestPolicy, startFakeSlack } from "./support/fake-slack.js";
import { postSigned } from "./support/slack-signing.js";
import { type Protocol, startTestServer, type TestServer } from "./support/test-server.js";
import { waitFor } from "./support/wait.js";

const adminToken = "flood-test-admin-token-0123456789";
const protocols: Protocol[] = ["grpc", "connect"];

const lines = (file: string): AuditLine[] =>
  readFileSync(file, "utf8")
    .split("\n")
    .flatMap((text) => {
      const line = parseAuditLine(text);
      return line === undefined ? [] : [line];
    });

const ofType = (all: AuditLine[], type: string, event?: string) =>
  all.filter((l) => l.type === type && (event === undefined || l.event === event));

async function securityEvents(ts: TestServer, type: string): Promise<number> {
  const text = await (await fetch(`${ts.server.opsUrl}/metrics`)).text();
  return parsePrometheusText(text).value("countersign_security_events_total", { type });
}

async function codeOf(call: Promise<unknown>): Promise<Code | "ok"> {
  return call.then(
    () => "ok" as const,
    (err: unknown) => ConnectError.from(err).code,
  );
}

/** Runs `total` calls, `concurrency` at a time; every one must be refused with `expected`. */
async function flood(
  total: number,
  concurrency: number,
  call: (i: number) => Promise<unknown>,
  expected: Code,
) {
  for (let i = 0; i < total; i += concurrency) {
    const batch = Array.from({ length: Math.min(concurrency, total - i) }, (_, j) => codeOf(call(i + j)));
    for (const code of await Promise.all(batch)) expect(code).toBe(expected);
  }
}

describe("a flood of refused calls", () => {
  let pki: TestPki;
  let ts: TestServer | undefined;
  afterEach(async () => {
    await ts?.close();
    ts = undefined;
  });

  it("leaves the audit log small, counts every refusal and keeps serving legitimate callers", async () => {
    pki = createTestPki();
    ts = await startTestServer({
      pki,
      // Certificates optional, so certificate-less calls reach the API and are refused there.
      flags: { requireClientCert: false, securitySummaryInterval: "1h" },
      env: { ADMIN_TOKEN: adminToken },
    });
    const server = ts;
    const linesBefore = lines(server.auditPath).length;
    const unauthorizedBefore = await securityEvents(server, "unauthorized");
    const badTokenBefore = await securityEvents(server, "bad_admin_token");

    const perProtocol = 750;
    const legit = server.clients(pki.requester, "grpc").approvals;
    const served: string[] = [];
    const attack = protocols.flatMap((protocol) => {
      const anonymous = server.clients(undefined, protocol).approvals;
      const admin = server.clients(pki.requester, protocol, {
        headers: { authorization: "Bearer not-the-admin-token" },
      }).admin;
      return [
        flood(
          perProtocol,
          25,
          () => anonymous.getApproval({ id: "01AAAAAAAAAAAAAAAAAAAAAAAA" }),
          Code.Unauthenticated,
        ),
        flood(perProtocol, 25, () => admin.listApprovals({}), Code.Unauthenticated),
      ];
    });
    // A legitimate client creates approvals while the flood runs.
    const legitimate = (async () => {
      for (let i = 0; i < 5; i++) {
        const res = await legit.createApproval({ action: "deploy.staging", title: `during the flood ${i}` });
        expect(res.approval?.state).toBe(State.PENDING);
        served.push(res.approval?.id ?? "");
      }
    })();
    await Promise.all([...attack, legitimate]);
    expect(served).toHaveLength(5);

    // The metric counts every refusal.
    expect((await securityEvents(server, "unauthorized")) - unauthorizedBefore).toBe(2 * perProtocol);
    expect((await securityEvents(server, "bad_admin_token")) - badTokenBefore).toBe(2 * perProtocol);

    // The first refusal of each kind and peer is in the audit log in full; the rest are only counted.
    await waitFor(
      () => ofType(lines(server.auditPath), "created").length === 5,
      5000,
      "the legitimate creates' audit lines",
    );
    const during = lines(server.auditPath);
    expect(ofType(during, "unauthorized")).toHaveLength(1);
    expect(ofType(during, "unauthorized")[0]).toMatchObject({ caller: "", message: expect.any(String) });
    expect(ofType(during, "security", "bad_admin_token")).toHaveLength(1);
    expect(ofType(during, "security", "bad_admin_token")[0]).toMatchObject({
      remote_address: "127.0.0.1",
      reason: "invalid admin token",
    });
    expect(ofType(during, "security_summary")).toHaveLength(0);

    // Shutdown writes the pending summaries, with the exact count of what was not written one by one.
    const auditPath = server.auditPath;
    await server.close();
    ts = undefined;
    const after = lines(auditPath);
    const summaries = ofType(after, "security_summary");
    expect(summaries.map((s) => [s.event, s.remote_address, s.suppressed]).sort()).toEqual([
      ["bad_admin_token", "127.0.0.1", 2 * perProtocol - 1],
      ["unauthorized", "127.0.0.1", 2 * perProtocol - 1],
    ]);
    // 3 000 refusals: 2 full lines and 2 summaries, besides the creates and the start/stop lines.
    expect(after.length - linesBefore).toBe(2 + 2 + 5 + 1);
    const report = await verifyAuditFiles([auditPath]);
    expect(report.ok).toBe(true);
  }, 120_000);

  it("summarises a flood that goes on once per interval while the server runs", async () => {
    pki = createTestPki();
    ts = await startTestServer({
      pki,
      flags: { requireClientCert: false, securitySummaryInterval: "200ms" },
    });
    const server = ts;
    const anonymous = server.clients(undefined, "connect").approvals;
    let refused = 0;
    // Refused calls until a summary has been written (bounded in count and time).
    const deadline = Date.now() + 10_000;
    while (ofType(lines(server.auditPath), "security_summary").length === 0) {
      expect(Date.now()).toBeLessThan(deadline);
      expect(refused).toBeLessThan(100_000);
      await flood(
        20,
        10,
        () => anonymous.getApproval({ id: "01AAAAAAAAAAAAAAAAAAAAAAAA" }),
        Code.Unauthenticated,
      );
      refused += 20;
    }
    const seen = lines(server.auditPath);
    const full = ofType(seen, "unauthorized").length;
    const summarised = ofType(seen, "security_summary").reduce((n, s) => n + Number(s.suppressed), 0);
    // Every refusal is in a full line, a summary written, or still pending for the next one.
    expect(full).toBeGreaterThanOrEqual(1);
    expect(full + summarised).toBeLessThanOrEqual(refused);
    const auditPath = server.auditPath;
    await server.close();
    ts = undefined;
    const all = lines(auditPath);
    const total =
      ofType(all, "unauthorized").length +
      ofType(all, "security_summary").reduce((n, s) => n + Number(s.suppressed), 0);
    expect(total).toBe(refused);
    expect((await verifyAuditFiles([auditPath])).ok).toBe(true);
  }, 30_000);
});

describe("a flood of badly signed Slack requests to the gateway in its own process", () => {
  it("logs the first in full and the rest as one summary, at shutdown", async () => {
    const pki = createTestPki();
    const api = await startTestServer({
      pki,
      policy: slackTestPolicy,
      flags: { deciders: testIdentities.decider },
    });
    const slack = await startFakeSlack();
    const logs: Record<string, unknown>[] = [];
    try {
      const files = writePemFiles({
        "gateway.pem": pki.decider.cert,
        "gateway-key.pem": pki.decider.key,
        "ca.pem": pki.ca,
      });
      const config = loadServeConfig(
        {
          components: "slack",
          apiUrl: `https://${api.server.grpcAddress}`,
          apiTlsCert: files["gateway.pem"] as string,
          apiTlsKey: files["gateway-key.pem"] as string,
          apiTlsCa: files["ca.pem"] as string,
          slackListen: "127.0.0.1:0",
          opsListen: "127.0.0.1:0",
          securitySummaryInterval: "1h",
        },
        {
          SLACK_BOT_TOKEN: slack.token,
          SLACK_SIGNING_SECRET: "the-real-signing-secret",
          SLACK_API_URL: slack.apiUrl,
        },
      );
      const logger = pino({ level: "warn" }, { write: (line: string) => logs.push(JSON.parse(line)) });
      const gateway = await startSlackGatewayProcess(config, { logger });
      const forged = 200;
      for (let i = 0; i < forged; i += 20) {
        const batch = Array.from({ length: 20 }, () =>
          postSigned(gateway.slackEventsUrl ?? "", { signingSecret: "forged", body: "payload=%7B%7D" }),
        );
        for (const res of await Promise.all(batch)) expect(res.status).toBe(401);
      }
      await gateway.close();
      const security = logs.filter((l) => l.security_event === "bad_signature");
      expect(security).toHaveLength(2);
      expect(security[0]).toMatchObject({ msg: "Slack request refused", remote_address: "127.0.0.1" });
      expect(security[1]).toMatchObject({
        msg: "security events summarised",
        remote_address: "127.0.0.1",
        suppressed: forged - 1,
      });
    } finally {
      await slack.close();
      await api.close();
    }
  }, 60_000);
});

describe("--security-summary-interval", () => {
  it("defaults to a minute, reads the environment, and refuses values out of range", () => {
    const flags = { policy: "policies.yaml" };
    expect(loadServeConfig(flags, {}).securitySummaryMs).toBe(60_000);
    expect(loadServeConfig(flags, { COUNTERSIGN_SECURITY_SUMMARY_INTERVAL: "5m" }).securitySummaryMs).toBe(
      300_000,
    );
    expect(() => loadServeConfig({ ...flags, securitySummaryInterval: "10ms" }, {})).toThrow(
      "--security-summary-interval must be between 100ms and 1h",
    );
    expect(() => loadServeConfig({ ...flags, securitySummaryInterval: "often" }, {})).toThrow(
      "--security-summary-interval:",
    );
  });
});
