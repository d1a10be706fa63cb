import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { Command } from "commander";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { addServeCommand } from "../clients/cli/serve-command.js";
import { ConfigError, loadServeConfig } from "../server/config/config.js";
import { createTestPki, type TestPki } from "./support/certs.js";
import { startTestServer, type TestServer } from "./support/test-server.js";

const run = promisify(execFile);
const cli = ["--import", "tsx", join(import.meta.dirname, "../clients/cli/countersign.ts")];

function problems(flags: Parameters<typeof loadServeConfig>[0], env: NodeJS.ProcessEnv = {}): string[] {
  try {
    loadServeConfig(flags, env);
    return [];
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
}

describe("serve configuration", () => {
  it("documents every visible `serve` flag, with its environment variable, in the README's configuration reference", () => {
    const program = new Command();
    addServeCommand(program);
    const serve = program.commands.find((c) => c.name() === "serve");
    const readme = readFileSync(join(import.meta.dirname, "../README.md"), "utf8");
    const reference = readme.slice(readme.indexOf("## Configuration reference"));
    const table = reference.slice(0, reference.indexOf("\n## "));
    const documented = new Set([...table.matchAll(/`(--[a-z-]+)`/g)].map((m) => m[1]));
    const visible = (serve?.options ?? []).filter((o) => !o.hidden);
    expect(visible.length).toBeGreaterThan(30);
    for (const option of visible) {
      expect(documented, option.long).toContain(option.long);
      const env = /\[(COUNTERSIGN_[A-Z_]+)\]/.exec(option.description)?.[1];
      expect(env, `${option.long} names its environment variable`).toBeDefined();
      const row = table.split("\n").find((line) => line.includes(`\`${option.long}\``)) ?? "";
      expect(row.includes(env ?? "") || row.includes("…_"), `${option.long}: ${env} in its row`).toBe(true);
    }
    expect([...documented].filter((flag) => !visible.some((o) => o.long === flag))).toEqual([]);
  });

  it("reports every bad setting at once, one line each", () => {
    const found = problems(
      {
        grpcListen: "nonsense",
        connectListen: "0.0.0.0:8080",
        tlsCert: "/x.pem",
        requireClientCert: true,
        heartbeatInterval: "soon",
      },
      { ADMIN_TOKEN: "short" },
    );
    expect(found).toEqual([
      '--grpc-listen "nonsense": expected host:port, e.g. 127.0.0.1:8080',
      "--policy FILE is required (the policy file)",
      "--tls-cert and --tls-key must be given together",
      "--require-client-cert needs --tls-client-ca (the CA that signs client certificates)",
      "--connect-listen 0.0.0.0: without TLS (--tls-cert/--tls-key) the server listens only on loopback",
      expect.stringMatching(/^--heartbeat-interval: /),
      "ADMIN_TOKEN must be at least 16 characters",
    ]);
  });

  it("reports bad identity sources, caps and timeouts, and defaults to URI identities and safe limits", () => {
    expect(
      problems({
        policy: "p",
        identityFrom: "uri,email",
        maxStreams: "0",
        maxConnectionsPerPeer: "many",
        handshakeTimeout: "soon",
      }),
    ).toEqual([
      '--identity-from "uri,email": expected uri, dns or cn, comma-separated (e.g. uri,dns)',
      '--max-streams "0": expected a whole number ≥ 1',
      expect.stringMatching(/^--handshake-timeout: /),
      '--max-connections-per-peer "many": expected a whole number ≥ 1',
    ]);
    const config = loadServeConfig({ policy: "p", identityFrom: "DNS, uri" }, {});
    expect(config.identitySources).toEqual(["dns", "uri"]);
    expect(loadServeConfig({ policy: "p" }, {}).identitySources).toEqual(["uri"]);
    expect(loadServeConfig({ policy: "p" }, {}).limits).toEqual({
      maxStreamsPerIdentity: 1000,
      maxStreams: 10_000,
      maxConnectionAgeMs: 3_600_000,
      maxConnectionAgeGraceMs: 60_000,
      handshakeTimeoutMs: 10_000,
      idleTimeoutMs: 300_000,
      maxConnections: 10_000,
      maxConnectionsPerPeer: 1000,
    });
  });

  it("takes each flag from its environment variable, and secrets from *_FILE", () => {
    const dir = mkdtempSync(join(tmpdir(), "countersign-config-"));
    writeFileSync(join(dir, "token"), "a-long-enough-admin-token\n");
    const config = loadServeConfig(
      {},
      {
        COUNTERSIGN_POLICY: "/etc/countersign/policies.yaml",
        COUNTERSIGN_GRPC_LISTEN: "127.0.0.1:6000",
        COUNTERSIGN_DECIDERS: "gateway-a, gateway-b",
        ADMIN_TOKEN_FILE: join(dir, "token"),
      },
    );
    expect(config.grpcListen).toEqual({ host: "127.0.0.1", port: 6000 });
    expect(config.deciders).toEqual(["gateway-a", "gateway-b"]);
    expect(config.requesters).toBe("any");
    expect(config.adminToken).toBe("a-long-enough-admin-token");
    expect(config.developmentIdentity).toBe("local-dev");
    expect(problems({ policy: "p" }, { ADMIN_TOKEN: "x".repeat(20), ADMIN_TOKEN_FILE: "/y" })).toEqual([
      "ADMIN_TOKEN and ADMIN_TOKEN_FILE are both set; set one",
    ]);
  });

  it("stops `countersign serve` with one line per problem and exit status 2", async () => {
    const result = await run(process.execPath, [...cli, "serve", "--grpc-listen", "10.0.0.1:1"], {
      env: { ...process.env, ADMIN_TOKEN: "" },
    }).catch((err: { code: number; stderr: string }) => err);
    expect("code" in result && result.code).toBe(2);
    expect(result.stderr.trim().split("\n")).toEqual([
      "countersign serve: --policy FILE is required (the policy file)",
      "countersign serve: --grpc-listen 10.0.0.1: without TLS (--tls-cert/--tls-key) the server listens only on loopback",
      "countersign serve: ADMIN_TOKEN is set but empty",
    ]);
  });
});

describe("countersign policy validate", () => {
  it("accepts the bundled example and rejects a broken file with paths, exit status 1", async () => {
    const ok = await run(process.execPath, [
      ...cli,
      "policy",
      "validate",
      join(import.meta.dirname, "../examples/policies.yaml"),
    ]);
    expect(ok.stdout).toMatch(/valid \(\d+ policies, sha256 [0-9a-f]{64}\)/);
    const dir = mkdtempSync(join(tmpdir(), "countersign-policy-"));
    const bad = join(dir, "bad.yaml");
    writeFileSync(
      bad,
      "version: 1\npolicies:\n  - name: x\n    match: 'a.*'\n    aprovers: {}\n    timeout: 5s\n",
    );
    const failed = await run(process.execPath, [...cli, "policy", "validate", bad]).catch(
      (err: { code: number; stderr: string }) => err,
    );
    expect("code" in failed && failed.code).toBe(1);
    expect(failed.stderr).toContain("policies[0].aprovers");
  });
});

describe("development mode and reflection", () => {
  let ts: TestServer;
  let pki: TestPki;
  beforeAll(async () => {
    pki = createTestPki();
    ts = await startTestServer({ pki });
  });
  afterAll(async () => {
    await ts?.close();
  });

  it("serves plaintext Connect JSON on loopback where every caller is the local developer", async () => {
    const dev = await startTestServer({});
    try {
      const created = await fetch(`${dev.server.connectUrl}/countersign.v1.ApprovalService/CreateApproval`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ action: "deploy.staging", title: "try it" }),
      });
      const body = (await created.json()) as { approval: { id: string; requester: string } };
      expect(body.approval.requester).toBe("local-dev");
      const decided = await fetch(`${dev.server.connectUrl}/countersign.v1.ApprovalService/SubmitDecision`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ id: body.approval.id, approver: "U1", decision: "DECISION_APPROVE" }),
      });
      expect(((await decided.json()) as { approval: { state: string } }).approval.state).toBe(
        "STATE_APPROVED",
      );
      const ready = await fetch(`${dev.server.opsUrl}/readyz`);
      expect(ready.status).toBe(200);
    } finally {
      await dev.close();
    }
  });

  it("lets `buf curl --reflect` list the services and call one over mutual TLS", async () => {
    const dir = mkdtempSync(join(tmpdir(), "countersign-buf-"));
    writeFileSync(join(dir, "client.pem"), pki.requester.cert);
    writeFileSync(join(dir, "client-key.pem"), pki.requester.key);
    const tlsArgs = [
      "--cacert",
      pki.paths.ca,
      "--cert",
      join(dir, "client.pem"),
      "--key",
      join(dir, "client-key.pem"),
    ];
    const url = `https://${ts.server.grpcAddress}`;
    const buf = join(import.meta.dirname, "../node_modules/.bin/buf");
    const listed = await run(buf, ["curl", "--protocol", "grpc", ...tlsArgs, "--list-services", url]);
    expect(listed.stdout.trim().split("\n").sort()).toEqual([
      "countersign.v1.AdminService",
      "countersign.v1.ApprovalService",
      "grpc.health.v1.Health",
    ]);
    const created = await run(buf, [
      "curl",
      "--protocol",
      "grpc",
      ...tlsArgs,
      "-d",
      JSON.stringify({ action: "deploy.staging", title: "from buf curl" }),
      `${url}/countersign.v1.ApprovalService/CreateApproval`,
    ]);
    expect(JSON.parse(created.stdout).approval.state).toBe("STATE_PENDING");
    const health = await run(buf, [
      "curl",
      "--protocol",
      "grpc",
      ...tlsArgs,
      `${url}/grpc.health.v1.Health/Check`,
    ]);
    expect(JSON.parse(health.stdout)).toEqual({ status: "SERVING" });
  });
});
