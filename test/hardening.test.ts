import { X509Certificate } from "node:crypto";
import { copyFileSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect as tlsConnect } from "node:tls";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Decision, State } from "../gen/countersign/v1/approval_pb.js";
import { RetryInfoSchema } from "../gen/google/rpc/error_details_pb.js";
import { clientAddress } from "../server/transport/rate-limit.js";
import { createTestPki, TestCa, type TestPki, testIdentities } from "./support/certs.js";
import { createClientFactory, type Protocol } from "./support/clients.js";
import { startFakeSlack } from "./support/fake-slack.js";
import { startServerProcess } from "./support/server-process.js";
import { blockActionPayload, interactionBody, postSigned } from "./support/slack-signing.js";
import { startTestServer, type TestServer } from "./support/test-server.js";
import { waitFor } from "./support/wait.js";

const protocols: Protocol[] = ["grpc", "connect", "grpc-web"];

async function code(call: Promise<unknown>): Promise<Code> {
  try {
    await call;
  } catch (err) {
    return ConnectError.from(err).code;
  }
  throw new Error("the call succeeded");
}

let pki: TestPki;
beforeAll(() => {
  pki = createTestPki();
});

describe("create rate limit", () => {
  let ts: TestServer;
  beforeAll(async () => {
    ts = await startTestServer({ pki, flags: { createRateLimit: "2", createBurst: "1" } });
  });
  afterAll(async () => {
    await ts?.close();
  });

  it("refuses a client over its budget with RESOURCE_EXHAUSTED and a retry delay, per identity", async () => {
    const { approvals } = ts.clients(pki.requester, "grpc");
    const results = await Promise.allSettled(
      Array.from({ length: 8 }, (_, i) =>
        approvals.createApproval({ action: "deploy.staging", title: `n${i}` }),
      ),
    );
    const refused = results.filter((r) => r.status === "rejected").map((r) => ConnectError.from(r.reason));
    // 2 per second plus a burst of 1: at most 5 fit even if the burst straddles a second boundary.
    expect(results.length - refused.length).toBeGreaterThanOrEqual(3);
    expect(results.length - refused.length).toBeLessThanOrEqual(5);
    for (const err of refused) {
      expect(err.code).toBe(Code.ResourceExhausted);
      expect(err.findDetails(RetryInfoSchema)[0]?.retryDelay).toBeDefined();
    }
    // One delay in the message, RetryInfo and Retry-After, over both transports.
    for (const protocol of ["grpc", "connect"] as const) {
      const client = ts.clients(pki.requester, protocol).approvals;
      const errors = (
        await Promise.allSettled(
          Array.from({ length: 6 }, (_, i) =>
            client.createApproval({ action: "deploy.staging", title: `r${i}` }),
          ),
        )
      )
        .filter((r) => r.status === "rejected")
        .map((r) => ConnectError.from(r.reason));
      expect(errors.length, protocol).toBeGreaterThan(0);
      for (const err of errors) {
        const seconds = Number(/retry in (\d+) s/.exec(err.rawMessage)?.[1]);
        expect(seconds, protocol).toBeGreaterThanOrEqual(1);
        const delay = err.findDetails(RetryInfoSchema)[0]?.retryDelay;
        expect([Number(delay?.seconds), delay?.nanos], protocol).toEqual([seconds, 0]);
        expect(err.metadata.get("retry-after"), protocol).toBe(String(seconds));
      }
    }
    const other = await ts
      .clients(pki.stranger, "connect")
      .approvals.createApproval({ action: "deploy.staging", title: "x" });
    expect(other.approval?.state).toBe(State.PENDING);
  });

  it("trusts x-forwarded-for only from configured proxies", () => {
    const trusted = new Set(["10.0.0.5"]);
    expect(clientAddress("10.0.0.5", "203.0.113.7", trusted)).toBe("203.0.113.7");
    expect(clientAddress("10.0.0.5", "198.51.100.1, 203.0.113.7, 10.0.0.5", trusted)).toBe("203.0.113.7");
    expect(clientAddress("192.0.2.9", "203.0.113.7", trusted)).toBe("192.0.2.9");
    expect(clientAddress("10.0.0.5", null, trusted)).toBe("10.0.0.5");
  });
});

describe("authentication", () => {
  let ts: TestServer;
  const adminToken = "an-admin-token-of-some-length";
  beforeAll(async () => {
    ts = await startTestServer({
      pki,
      flags: { requesters: testIdentities.requester, deciders: testIdentities.decider },
      env: { ADMIN_TOKEN: adminToken },
    });
  });
  afterAll(async () => {
    await ts?.close();
  });

  it("refuses an expired client certificate during the handshake", async () => {
    const ca = new TestCa();
    const server = ca.issue({ commonName: "localhost", dns: ["localhost"], ips: ["127.0.0.1"] });
    const expired = ca.issue({
      commonName: "old",
      uris: [testIdentities.requester],
      notBefore: new Date(Date.now() - 10 * 86_400_000),
      notAfter: new Date(Date.now() - 86_400_000),
    });
    const dir = mkdtempSync(join(tmpdir(), "countersign-expired-"));
    for (const [name, text] of Object.entries({
      "ca.pem": ca.cert,
      "s.pem": server.cert,
      "s.key": server.key,
    }))
      writeFileSync(join(dir, name), text);
    const own = await startTestServer({
      flags: {
        tlsCert: join(dir, "s.pem"),
        tlsKey: join(dir, "s.key"),
        tlsClientCa: join(dir, "ca.pem"),
        requireClientCert: true,
      },
    });
    try {
      const factory = createClientFactory({
        grpcAddress: own.server.grpcAddress,
        connectUrl: own.server.connectUrl,
        ca: ca.cert,
      });
      for (const protocol of protocols) {
        const refused = await code(factory.clients(expired, protocol).approvals.getApproval({ id: "x" }));
        expect([Code.Unavailable, Code.Internal, Code.Unknown, Code.Canceled]).toContain(refused);
      }
      factory.close();
    } finally {
      await own.close();
    }
  });

  it("refuses an identity without a role (PERMISSION_DENIED) on every ApprovalService call", async () => {
    for (const protocol of protocols) {
      const { approvals } = ts.clients(pki.stranger, protocol);
      expect(await code(approvals.createApproval({ action: "deploy.staging", title: "x" }))).toBe(
        Code.PermissionDenied,
      );
      expect(await code(approvals.getApproval({ id: "01AAAAAAAAAAAAAAAAAAAAAAAA" }))).toBe(
        Code.PermissionDenied,
      );
      expect(
        await code(
          approvals.submitDecision({
            id: "01AAAAAAAAAAAAAAAAAAAAAAAA",
            approver: "U1",
            decision: Decision.APPROVE,
          }),
        ),
      ).toBe(Code.PermissionDenied);
    }
  });

  it("refuses wrong admin tokens of equal or other length, an empty one and a duplicated header", async () => {
    const wrongSameLength = `${adminToken.slice(0, -1)}${adminToken.endsWith("x") ? "y" : "x"}`;
    for (const protocol of protocols) {
      const admin = (authorization: string) =>
        ts.clients(pki.requester, protocol, { headers: { authorization } }).admin;
      // The scheme is case-insensitive (RFC 7235); the token is not.
      for (const scheme of ["Bearer", "bearer", "BEARER"])
        expect((await admin(`${scheme} ${adminToken}`).getStats({})).counts.length).toBe(5);
      for (const authorization of [
        `bearer ${adminToken.toUpperCase()}`,
        `Bearer ${wrongSameLength}`,
        "Bearer short",
        `Bearer ${adminToken}${adminToken}`,
        "Bearer ",
        "",
        adminToken,
        `Basic ${adminToken}`,
        `Bearer ${adminToken}, Bearer ${adminToken}`,
      ]) {
        expect(
          await code(admin(authorization).getStats({})),
          `${protocol}: ${JSON.stringify(authorization)}`,
        ).toBe(Code.Unauthenticated);
      }
    }
  });
});

describe("certificate rotation", () => {
  it("serves new handshakes with the new files while 100 open streams continue", async () => {
    const dir = mkdtempSync(join(tmpdir(), "countersign-rotate-"));
    const paths = { cert: join(dir, "server.pem"), key: join(dir, "server.key"), ca: join(dir, "ca.pem") };
    copyFileSync(pki.paths.serverCert, paths.cert);
    copyFileSync(pki.paths.serverKey, paths.key);
    copyFileSync(pki.paths.ca, paths.ca);
    const ts = await startTestServer({
      pki,
      flags: {
        tlsCert: paths.cert,
        tlsKey: paths.key,
        tlsClientCa: paths.ca,
        deciders: testIdentities.decider,
      },
    });
    try {
      const { approvals } = ts.clients(pki.requester, "grpc");
      const ids: string[] = [];
      for (let i = 0; i < 10; i++)
        ids.push(
          (await approvals.createApproval({ action: "deploy.staging", title: `r${i}` })).approval?.id ?? "",
        );
      let snapshots = 0;
      const streams = Array.from({ length: 100 }, (_, i) => {
        const client = ts.clients(pki.requester, i % 2 === 0 ? "grpc" : "connect").approvals;
        const id = ids[i % ids.length] ?? "";
        return (async () => {
          const states: State[] = [];
          for await (const msg of client.watchApproval({ id })) {
            if (msg.heartbeat) continue;
            if (states.length === 0) snapshots++;
            states.push(msg.approval?.state ?? 0);
          }
          return states;
        })();
      });
      await waitFor(() => snapshots === 100, 20_000, "100 streams open");

      /** The fingerprint of the certificate a new TLS handshake with `address` presents. */
      const presented = (address: string, ca: string) =>
        new Promise<string>((resolve, reject) => {
          const url = new URL(`https://${address}`);
          const socket = tlsConnect(
            {
              host: url.hostname,
              port: Number(url.port),
              ca,
              cert: pki.requester.cert,
              key: pki.requester.key,
              servername: "localhost",
              ALPNProtocols: ["h2"],
            },
            () => {
              resolve(socket.getPeerCertificate().fingerprint256);
              socket.end();
            },
          );
          socket.once("error", reject);
        });
      const grpcAddress = ts.server.grpcAddress;
      const connectAddress = new URL(ts.server.connectUrl).host;
      const before = await presented(grpcAddress, pki.ca);

      // Rotate: a server certificate from another issuer, and a client CA bundle that also trusts a new CA.
      const newCa = new TestCa("Rotated Client CA");
      const newIssuer = new TestCa("New Server Issuer");
      const rotated = newIssuer.issue({ commonName: "localhost", dns: ["localhost"], ips: ["127.0.0.1"] });
      const newClient = newCa.issue({ commonName: "new", uris: [testIdentities.requester] });
      writeFileSync(paths.ca, `${pki.ca}${newCa.cert}`);
      writeFileSync(paths.key, rotated.key);
      writeFileSync(paths.cert, rotated.cert);
      const expected = new X509Certificate(rotated.cert).fingerprint256;
      const trustBoth = `${pki.ca}${newIssuer.cert}`;
      const deadline = Date.now() + 10_000;
      let now = before;
      while (now !== expected && Date.now() < deadline) {
        now = await presented(grpcAddress, trustBoth).catch(() => before);
      }
      expect(now).toBe(expected);
      expect(await presented(connectAddress, trustBoth)).toBe(expected);

      // A client certificate from the newly trusted CA is accepted on new connections.
      const fresh = createClientFactory({
        grpcAddress,
        connectUrl: ts.server.connectUrl,
        ca: newIssuer.cert,
      });
      for (const protocol of protocols) {
        const got = await fresh.clients(newClient, protocol).approvals.getApproval({ id: ids[0] ?? "" });
        expect(got.approval?.id).toBe(ids[0]);
      }
      fresh.close();

      // The 100 streams opened before the rotation are still alive: they receive the decisions.
      const decider = ts.clients(pki.decider, "grpc", { ca: newIssuer.cert }).approvals;
      for (const id of ids) await decider.submitDecision({ id, approver: "U1", decision: Decision.APPROVE });
      const finals = await Promise.all(streams);
      expect(finals.every((s) => s[0] === State.PENDING && s.at(-1) === State.APPROVED)).toBe(true);
    } finally {
      await ts.close();
    }
  });
});

describe("graceful shutdown", () => {
  it("on SIGTERM ends 500 open watch streams with UNAVAILABLE and exits within 15 s, never logging secrets", async () => {
    // Every secret is configured and used: the admin token, and the Slack gateway's bot token and signing
    // secret (Slack is a fake here; clicks are signed well and badly). The log is at its most detailed.
    const botToken = "xoxb-the-bot-token-must-never-be-logged";
    const signingSecret = "the-signing-secret-must-never-be-logged";
    const slack = await startFakeSlack({ token: botToken });
    const dir = mkdtempSync(join(tmpdir(), "countersign-shutdown-"));
    const policy = join(dir, "policies.yaml");
    writeFileSync(
      policy,
      "version: 1\ndefaults: { channel: C0, timeout: 10m }\npolicies:\n  - { name: p, match: 'a.*', approvers: { users: [U1] } }\n",
    );
    const adminToken = "the-admin-token-must-never-be-logged";
    const server = await startServerProcess(
      [
        "--policy",
        policy,
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
        "--create-rate-limit",
        "0",
        "--slack-listen",
        "127.0.0.1:0",
        "--log-level",
        "debug",
      ],
      {
        env: {
          ADMIN_TOKEN: adminToken,
          SLACK_BOT_TOKEN: botToken,
          SLACK_SIGNING_SECRET: signingSecret,
          SLACK_API_URL: slack.apiUrl,
        },
      },
    );
    const factory = createClientFactory({
      grpcAddress: server.grpcAddress,
      connectUrl: server.connectUrl,
      ca: pki.ca,
    });
    try {
      const admin = factory.clients(pki.requester, "grpc", {
        headers: { authorization: `Bearer ${adminToken}` },
      }).admin;
      await admin.getStats({});
      await code(
        factory
          .clients(pki.requester, "connect", { headers: { authorization: `Bearer ${adminToken}x` } })
          .admin.getStats({}),
      );
      const grpcClient = factory.clients(pki.requester, "grpc").approvals;
      const connectClient = factory.clients(pki.requester, "connect").approvals;

      // Slack: a signed click decides; a wrong signature, a stale one, a replay and a malformed body do not.
      const gatewayLine = server
        .output()
        .split("\n")
        .find((l) => l.includes('"Slack gateway started"'));
      const eventsUrl = (JSON.parse(gatewayLine ?? "{}") as { events?: string }).events ?? "";
      const clicked =
        (await grpcClient.createApproval({ action: "a.clicked", title: "clicked" })).approval?.id ?? "";
      const message = await slack.waitFor(
        () => slack.messages().find((m) => m.metadata?.event_payload.approval_id === clicked),
        "the clicked approval's message",
      );
      const body = interactionBody(
        blockActionPayload({
          user: "U1",
          actionId: "countersign_approve",
          approvalId: clicked,
          channel: message.channel,
          messageTs: message.ts,
        }),
      );
      const nowSec = Math.floor(Date.now() / 1000);
      const statuses = [
        (await postSigned(eventsUrl, { signingSecret, body, timestampSec: nowSec })).status,
        (await postSigned(eventsUrl, { signingSecret, body, timestampSec: nowSec })).status,
        (await postSigned(eventsUrl, { signingSecret: "a-wrong-secret", body })).status,
        (await postSigned(eventsUrl, { signingSecret, body, timestampSec: nowSec - 600 })).status,
        (await postSigned(eventsUrl, { signingSecret, body: "payload=%7B%7D" })).status,
      ];
      expect(statuses).toEqual([200, 401, 401, 401, 400]);
      await slack.waitFor(() => message.text.startsWith("Approved"), "the message showing the decision");
      expect((await grpcClient.getApproval({ id: clicked })).approval?.state).toBe(State.APPROVED);

      const ids: string[] = [];
      for (let i = 0; i < 50; i++)
        ids.push((await grpcClient.createApproval({ action: "a.b", title: `s${i}` })).approval?.id ?? "");
      let opened = 0;
      const streams = Array.from({ length: 500 }, (_, i) =>
        (async () => {
          const client = i % 2 === 0 ? grpcClient : connectClient;
          try {
            for await (const msg of client.watchApproval({ id: ids[i % ids.length] ?? "" })) {
              if (!msg.heartbeat) opened++;
            }
            return "ended without error";
          } catch (err) {
            return ConnectError.from(err).code;
          }
        })(),
      );
      await waitFor(() => opened === 500, 30_000, "500 watch streams open");
      const started = Date.now();
      const exit = await server.stop();
      const elapsed = Date.now() - started;
      const outcomes = await Promise.all(streams);
      expect(exit.code).toBe(0);
      expect(elapsed).toBeLessThan(15_000);
      expect(new Set(outcomes)).toEqual(new Set([Code.Unavailable]));
      for (const secret of [adminToken, botToken, signingSecret])
        expect(server.output()).not.toContain(secret);
    } finally {
      factory.close();
      server.child.kill("SIGKILL");
      await slack.close();
    }
  }, 60_000);
});

describe("message and metadata size limits", () => {
  it("refuses oversized requests and headers on both transports and keeps serving", async () => {
    const ts = await startTestServer({ flags: { maxMessageBytes: "4096" } });
    try {
      const tooBig = { action: "deploy.staging", title: "x", justification: "j".repeat(8000) };
      // grpc-js names the limit with the standard gRPC code.
      const { approvals } = ts.clients(undefined, "grpc");
      expect(await code(approvals.createApproval(tooBig))).toBe(Code.ResourceExhausted);
      // Connect (HTTP/1.1 JSON, as curl sends it) says resource_exhausted too.
      const res = await fetch(`${ts.server.connectUrl}/countersign.v1.ApprovalService/CreateApproval`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(tooBig),
      });
      expect(((await res.json()) as { code: string }).code).toBe("resource_exhausted");
      for (const protocol of protocols) {
        const client = ts.clients(undefined, protocol).approvals;
        await code(client.createApproval(tooBig));
        const padded = ts.clients(undefined, protocol, {
          headers: { "x-padding": "p".repeat(32 * 1024) },
        }).approvals;
        const refused = await code(padded.getApproval({ id: "01AAAAAAAAAAAAAAAAAAAAAAAA" }));
        if (protocol === "grpc") expect(refused).toBe(Code.InvalidArgument);
        else expect(refused).not.toBe(Code.NotFound);
        const ok = await client.createApproval({ action: "deploy.staging", title: "still serving" });
        expect(ok.approval?.state).toBe(State.PENDING);
      }
    } finally {
      await ts.close();
    }
  });
});
