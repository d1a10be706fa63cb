import { execFile } from "node:child_process";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { promisify } from "node:util";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ProbeError, runProbe } from "../clients/cli/probe-command.js";
import { parsePrometheusText } from "../server/telemetry/prometheus-text.js";
import { createTestPki, type TestPki, testIdentities, writePemFiles } from "./support/certs.js";
import { startTestServer, type TestServer, testPolicy } from "./support/test-server.js";

const run = promisify(execFile);
const cli = ["--import", "tsx", join(import.meta.dirname, "../clients/cli/countersign.ts")];
const policy = `${testPolicy}
  - name: probe
    match: countersign.probe
    approvers: { users: [probe-bot] }
    timeout: 60s
`;

/** A fake Prometheus Pushgateway that records what is pushed. */
async function fakePushgateway() {
  const pushes: { method: string; url: string; body: string }[] = [];
  const server = http.createServer((req, res) => {
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (chunk: string) => {
      body += chunk;
    });
    req.on("end", () => {
      pushes.push({ method: req.method ?? "", url: req.url ?? "", body });
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    pushes,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

describe("countersign probe", () => {
  let pki: TestPki;
  let ts: TestServer;
  let files: Record<string, string>;
  let tls: { ca: string; cert: string; key: string };

  beforeAll(async () => {
    pki = createTestPki();
    // The probe's identity (here the requester's certificate) needs both roles.
    ts = await startTestServer({ pki, policy, flags: { deciders: testIdentities.requester } });
    files = writePemFiles({
      "ca.pem": pki.ca,
      "probe.pem": pki.requester.cert,
      "probe-key.pem": pki.requester.key,
    });
    tls = { ca: pki.ca, cert: pki.requester.cert, key: pki.requester.key };
  });
  afterAll(async () => {
    await ts?.close();
  });

  it("approves a probe approval end to end over Connect and over gRPC, and measures each step", async () => {
    const grpcUrl = `https://${ts.server.grpcAddress}`;
    for (const [server, protocol] of [
      [ts.server.connectUrl, "connect"],
      [grpcUrl, "grpc"],
      [ts.server.connectUrl, "grpc-web"],
    ] as const) {
      const result = await runProbe({ server, protocol, tls });
      expect(result.outcome, protocol).toBe("approved");
      expect(result.createMs).toBeGreaterThan(0);
      expect(result.decideMs).toBeGreaterThan(0);
      expect(result.endToEndMs).toBeGreaterThanOrEqual(result.createMs);
      const approval = await ts.server.store.get(result.approvalId);
      expect(approval).toMatchObject({
        action: "countersign.probe",
        state: "approved",
        decidedBy: "probe-bot",
      });
    }
  });

  it("fails with the reason when the probe action has no policy, or the server cannot be reached", async () => {
    const denied = await runProbe({
      server: ts.server.connectUrl,
      protocol: "connect",
      tls,
      action: "no.such.probe",
    }).catch((err: unknown) => err);
    expect(denied).toBeInstanceOf(ProbeError);
    expect((denied as Error).message).toMatch(
      /^approval \S+ for action no.such.probe is DENIED at once: no policy matches/,
    );

    const down = await runProbe({
      server: "https://127.0.0.1:9",
      protocol: "connect",
      tls,
      timeoutMs: 10_000,
    }).catch((err: unknown) => err);
    expect(ConnectError.from(down).code).toBe(Code.Unavailable);
  });

  it("prints the latency, pushes it to a Pushgateway, and exits 0 only when approved", async () => {
    const gateway = await fakePushgateway();
    try {
      const common = [
        "--tls-ca",
        files["ca.pem"],
        "--tls-cert",
        files["probe.pem"],
        "--tls-key",
        files["probe-key.pem"],
      ];
      const ok = await run(process.execPath, [
        ...cli,
        "probe",
        "--server",
        ts.server.connectUrl,
        ...(common as string[]),
        "--pushgateway",
        gateway.url,
      ]);
      expect(ok.stdout).toMatch(
        /^probe approved \S+: end to end \d+\.\d ms \(create \d+\.\d ms, decision \d+\.\d ms\)\n$/,
      );
      expect(gateway.pushes).toHaveLength(1);
      expect(gateway.pushes[0]).toMatchObject({ method: "PUT", url: "/metrics/job/countersign_probe" });
      const pushed = parsePrometheusText(gateway.pushes[0]?.body ?? "");
      expect(pushed.value("countersign_probe_success")).toBe(1);
      expect(pushed.value("countersign_probe_end_to_end_seconds")).toBeGreaterThan(0);

      const failed = await run(process.execPath, [
        ...cli,
        "probe",
        "--server",
        ts.server.connectUrl,
        ...(common as string[]),
        "--action",
        "no.such.probe",
        "--output",
        "json",
        "--pushgateway",
        gateway.url,
      ]).catch((err: { code: number; stdout: string; stderr: string }) => err);
      expect("code" in failed && failed.code).toBe(1);
      expect(JSON.parse(failed.stdout)).toMatchObject({ outcome: "failed" });
      expect(failed.stderr).toContain("countersign probe: failed: approval ");
      expect(parsePrometheusText(gateway.pushes[1]?.body ?? "").value("countersign_probe_success")).toBe(0);
    } finally {
      await gateway.close();
    }
  });
});
