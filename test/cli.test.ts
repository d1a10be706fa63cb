import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createCountersignClient, Decision, State } from "@countersign/sdk";
import { Command } from "commander";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { addAdminCommand } from "../clients/cli/admin-command.js";
import { addCancelCommand } from "../clients/cli/cancel-command.js";
import { addDecideCommand } from "../clients/cli/decide-command.js";
import { addGetCommand } from "../clients/cli/get-command.js";
import { addMcpCommand } from "../clients/cli/mcp-command.js";
import { addRequestCommand } from "../clients/cli/request-command.js";
import { addWatchCommand } from "../clients/cli/watch-command.js";
import { createManualClock } from "../server/domain/clock.js";
import { createTestPki, type Pem, type TestPki, testIdentities } from "./support/certs.js";
import { startTestServer, type TestServer } from "./support/test-server.js";

const entry = join(import.meta.dirname, "../clients/cli/countersign.ts");
const adminToken = "cli-test-admin-token-0123456789";
const policy = `
version: 1
defaults: { channel: C0, timeout: 30m, unknown_action: deny }
policies:
  - name: deploy
    match: "deploy.*"
    approvers: { users: [alice, bob] }
    required_approvals: 1
  - name: short
    match: "short.*"
    approvers: { users: [alice] }
    timeout: 60s
`;

let pki: TestPki;
let ts: TestServer;
let files: Record<string, string>;
const clock = createManualClock(Date.now());

beforeAll(async () => {
  pki = createTestPki();
  ts = await startTestServer({
    pki,
    policy,
    clock,
    flags: { deciders: testIdentities.decider },
    env: { ADMIN_TOKEN: adminToken },
  });
  const dir = mkdtempSync(join(tmpdir(), "countersign-cli-"));
  files = {};
  for (const [name, content] of Object.entries({
    "ca.pem": pki.ca,
    "foreign-ca.pem": pki.foreignCa,
    "requester.pem": pki.requester.cert,
    "requester-key.pem": pki.requester.key,
    "decider.pem": pki.decider.cert,
    "decider-key.pem": pki.decider.key,
  })) {
    files[name] = join(dir, name);
    writeFileSync(join(dir, name), content);
  }
});
afterAll(async () => {
  for (const child of children) child.kill("SIGKILL");
  await ts?.close();
});

type Who = "requester" | "decider" | "nobody";

/** The environment of a CLI run as `who`, against the test server over mutual TLS. */
function envFor(who: Who, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    COUNTERSIGN_URL: ts.server.connectUrl,
    COUNTERSIGN_CA: files["ca.pem"],
    ...extra,
  };
  if (who !== "nobody") {
    env.COUNTERSIGN_CERT = files[`${who}.pem`];
    env.COUNTERSIGN_KEY = files[`${who}-key.pem`];
  }
  return env;
}

/** A running `countersign` child process. */
interface CliRun {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Resolves once stderr matches `pattern` (rejects after `timeoutMs` or if the process ends first). */
  waitForStderr(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** The exit status. */
  exit: Promise<number>;
}

/** Every child started, so none outlives the tests (a waiting `request` would retry forever). */
const children = new Set<ChildProcess>();

function start(args: string[], env: NodeJS.ProcessEnv): CliRun {
  const child = spawn(process.execPath, ["--import", "tsx", entry, ...args], {
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.add(child);
  child.on("close", () => children.delete(child));
  let out = "";
  let err = "";
  child.stdout?.on("data", (chunk: Buffer) => {
    out += chunk.toString();
  });
  child.stderr?.on("data", (chunk: Buffer) => {
    err += chunk.toString();
  });
  const exit = new Promise<number>((resolve) =>
    child.on("close", (code, signal) => resolve(code ?? (signal ? 128 : -1))),
  );
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    exit,
    waitForStderr(pattern, timeoutMs = 60_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const match = pattern.exec(err);
          if (match === null) return false;
          cleanup();
          resolve(match);
          return true;
        };
        const onEnd = () => {
          if (!check()) {
            cleanup();
            reject(new Error(`the CLI exited before stderr matched ${pattern}:\n${err}`));
          }
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`timed out after ${timeoutMs} ms waiting for ${pattern} on stderr:\n${err}`));
        }, timeoutMs);
        const cleanup = () => {
          clearTimeout(timer);
          child.stderr?.off("data", check);
          child.off("close", onEnd);
        };
        if (check()) return;
        child.stderr?.on("data", check);
        child.on("close", onEnd);
      });
    },
  };
}

async function run(args: string[], env: NodeJS.ProcessEnv) {
  const cli = start(args, env);
  const code = await cli.exit;
  return { code, stdout: cli.stdout(), stderr: cli.stderr() };
}

/** Starts `request --wait` and resolves once it is waiting, with the approval id. */
async function requestAndWait(action: string, extra: string[] = []) {
  const cli = start(
    ["request", "--action", action, "--title", `CLI ${action}`, "--wait", ...extra],
    envFor("requester"),
  );
  const [, id] = await cli.waitForStderr(/requested approval (\w+)/);
  await cli.waitForStderr(/waiting: approval \w+ \(.*\) pending/);
  return { cli, id: id ?? "" };
}

const sdk = (identity: Pem) =>
  createCountersignClient({
    baseUrl: ts.server.connectUrl,
    tls: { ca: pki.ca, cert: identity.cert, key: identity.key },
  });

describe("countersign request --wait", { timeout: 120_000 }, () => {
  it("exits 0 / 10 / 11 / 12 for approved / denied / expired / cancelled, saying who decided and why", async () => {
    const [approved, denied, expired, cancelled] = await Promise.all([
      requestAndWait("deploy.approved"),
      requestAndWait("deploy.denied"),
      requestAndWait("short.expired"),
      requestAndWait("deploy.cancelled"),
    ]);
    const decide = await run(
      ["decide", approved.id, "approve", "--as", "alice", "--reason", "looks good"],
      envFor("decider"),
    );
    expect(decide.code).toBe(0);
    expect(decide.stdout).toContain(
      `approval ${approved.id} (deploy.approved) approved by alice: looks good`,
    );
    await sdk(pki.decider).approvals.submitDecision({
      id: denied.id,
      approver: "bob",
      decision: Decision.DENY,
      reason: "not today",
    });
    clock.advance(61_000);
    const cancel = await run(["cancel", cancelled.id, "--reason", "superseded"], envFor("requester"));
    expect(cancel.code).toBe(0);

    expect(await approved.cli.exit).toBe(0);
    expect(approved.cli.stdout()).toBe(
      `approval ${approved.id} (deploy.approved) approved by alice: looks good\n`,
    );
    expect(await denied.cli.exit).toBe(10);
    expect(denied.cli.stdout()).toContain("denied by bob: not today");
    expect(await expired.cli.exit).toBe(11);
    expect(expired.cli.stdout()).toContain("expired by system");
    expect(await cancelled.cli.exit).toBe(12);
    expect(cancelled.cli.stdout()).toContain(`cancelled by ${testIdentities.requester}: superseded`);
  });

  it("exits 1 with every invalid field named", async () => {
    const result = await run(["request", "--action", "bad action!", "--title", ""], envFor("requester"));
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("countersign: the request is invalid:");
    expect(result.stderr).toMatch(/\n {2}action: /);
    expect(result.stderr).toMatch(/\n {2}title: /);
  });

  it("leaves the approval pending on Ctrl-C, and cancels it with --cancel-on-interrupt", async () => {
    const [leave, cancel] = await Promise.all([
      requestAndWait("deploy.interrupted"),
      requestAndWait("deploy.interrupted", ["--cancel-on-interrupt"]),
    ]);
    leave.cli.child.kill("SIGINT");
    cancel.cli.child.kill("SIGINT");
    expect(await leave.cli.exit).toBe(130);
    expect(leave.cli.stderr()).toContain(`approval ${leave.id} is left pending`);
    expect(await cancel.cli.exit).toBe(130);
    expect(cancel.cli.stderr()).toContain(`cancelled approval ${cancel.id}`);
    const requester = sdk(pki.requester);
    expect((await requester.getHandle(leave.id).get()).state).toBe(State.PENDING);
    const cancelled = await requester.getHandle(cancel.id).get();
    expect(cancelled.state).toBe(State.CANCELLED);
    expect(cancelled.reason).toContain("interrupted (SIGINT)");
  });

  it("gives up after --timeout with status 1, leaving the approval pending", async () => {
    const result = await run(
      ["request", "--action", "deploy.slow", "--wait", "--timeout", "1s"],
      envFor("requester"),
    );
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/wait timed out after 1s; approval \w+ is left pending/);
  });
});

describe("countersign request without --wait, get, watch", { timeout: 120_000 }, () => {
  it("prints the id, takes params from flags and a JSON file, and shows the approval", async () => {
    const dir = mkdtempSync(join(tmpdir(), "countersign-params-"));
    const paramsFile = join(dir, "params.json");
    writeFileSync(paramsFile, JSON.stringify({ service: "api", replicas: 3, version: "v1" }));
    const created = await run(
      [
        "request",
        "--action",
        "deploy.params",
        "--title",
        "params",
        "--params-json",
        paramsFile,
        "--param",
        "version=v2",
        "--link",
        "run=https://ci.example/run/1",
      ],
      envFor("requester"),
    );
    expect(created.code).toBe(0);
    const id = created.stdout.trim();
    expect(id).toMatch(/^\w{10,}$/);

    const json = await run(["get", id, "--output", "json"], envFor("requester"));
    expect(json.code).toBe(0);
    const approval = JSON.parse(json.stdout) as {
      params: unknown;
      state: string;
      origin: { links: unknown[] };
    };
    expect(approval.params).toEqual({ service: "api", replicas: 3, version: "v2" });
    expect(approval.state).toBe("STATE_PENDING");
    expect(approval.origin.links).toEqual([{ label: "run", url: "https://ci.example/run/1" }]);

    const text = await run(["get", id], envFor("requester"));
    expect(text.stdout).toContain(`id:            ${id}`);
    expect(text.stdout).toContain("progress:      0/1 approvals, expires in");
  });

  it("watch prints each change and exits with the outcome", async () => {
    const handle = await sdk(pki.requester).requestApproval({ action: "deploy.watched", title: "watched" });
    const watch = start(["watch", handle.id, "--output", "json"], envFor("requester"));
    await watch.waitForStderr(/waiting: approval/);
    await sdk(pki.decider).approvals.submitDecision({
      id: handle.id,
      approver: "alice",
      decision: Decision.DENY,
      reason: "no",
    });
    expect(await watch.exit).toBe(10);
    const states = watch
      .stdout()
      .trim()
      .split("\n")
      .map((line) => (JSON.parse(line) as { state: string }).state);
    expect(states).toEqual(["STATE_PENDING", "STATE_DENIED"]);
  });
});

describe("connection problems", { timeout: 120_000 }, () => {
  it("says when the server is unreachable", async () => {
    const result = await run(["get", "01ABC"], {
      ...envFor("requester"),
      COUNTERSIGN_URL: "https://127.0.0.1:1",
    });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("countersign: cannot reach https://127.0.0.1:1");
    expect(result.stderr).toContain("hint: is the server running there?");
  });

  it("gives up a wait after --give-up-after without an answer, naming the URL and the last error", async () => {
    for (const args of [
      ["watch", "01ABC"],
      ["request", "--action", "deploy.gone", "--wait"],
    ]) {
      const env = { ...envFor("requester"), COUNTERSIGN_URL: "https://127.0.0.1:1" };
      const watch = args[0] === "watch";
      // watch retries from the start; request --wait fails its create, which is never retried for long.
      const result = await run([...args, "--give-up-after", "2s"], env);
      expect(result.code, args[0]).toBe(1);
      if (watch) {
        expect(result.stderr).toContain("countersign: gave up waiting: no answer from https://127.0.0.1:1");
        expect(result.stderr).toMatch(/last error: .*127\.0\.0\.1:1/);
        expect(result.stderr).toMatch(/reconnecting in/);
      } else expect(result.stderr).toContain("countersign: cannot reach https://127.0.0.1:1");
    }
    const bad = await run(["watch", "01ABC", "--give-up-after", "soon"], envFor("requester"));
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain("--give-up-after:");
  });

  it("says when the server wants a client certificate, or its own is not trusted", async () => {
    const noCert = await run(["get", "01ABC"], envFor("nobody"));
    expect(noCert.code).toBe(1);
    expect(noCert.stderr).toContain("requires a client certificate");
    expect(noCert.stderr).toContain("hint: pass --cert and --key");
    const untrusted = await run(["get", "01ABC"], {
      ...envFor("requester"),
      COUNTERSIGN_CA: files["foreign-ca.pem"],
    });
    expect(untrusted.code).toBe(1);
    expect(untrusted.stderr).toContain("is not trusted");
    expect(untrusted.stderr).toContain("hint: pass the server's CA with --ca");
  });

  it("uses the gRPC port with --protocol grpc", async () => {
    const result = await run(
      [
        "request",
        "--action",
        "deploy.grpc",
        "--protocol",
        "grpc",
        "--url",
        `https://${ts.server.grpcAddress}`,
      ],
      envFor("requester"),
    );
    expect(result.code).toBe(0);
    expect(result.stdout.trim()).toMatch(/^\w+$/);
  });
});

describe("countersign admin", { timeout: 120_000 }, () => {
  it("lists, shows, resolves, cancels, reloads and counts with the admin token", async () => {
    const env = envFor("requester", { ADMIN_TOKEN: adminToken });
    const requester = sdk(pki.requester);
    const a = await requester.requestApproval({ action: "deploy.admin-a", title: "a" });
    const b = await requester.requestApproval({ action: "deploy.admin-b", title: "b" });

    const [missing, list, got, resolved, cancelled, reload, stats, wrong] = await Promise.all([
      run(["admin", "stats"], envFor("requester")),
      run(["admin", "list", "--action", "deploy.admin-a"], env),
      run(["admin", "get", b.id, "--output", "json"], env),
      run(["admin", "resolve", a.id, "approve", "--reason", "break glass", "--as", "ops"], env),
      run(["admin", "cancel", b.id, "--reason", "stale"], env),
      run(["admin", "reload-policies", "--dry-run"], env),
      run(["admin", "stats", "--output", "json"], env),
      run(["admin", "stats", "--admin-token", "wrong-token-0123456789"], env),
    ]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("admin commands need the admin token");

    expect(list.code).toBe(0);
    expect(list.stdout).toContain(a.id);
    expect(list.stdout).not.toContain(b.id);

    expect(got.code).toBe(0);
    expect(JSON.parse(got.stdout)).toMatchObject({ id: b.id });

    expect(resolved.code).toBe(0);
    expect(resolved.stdout).toBe(
      `approval ${a.id} (deploy.admin-a) approved by ops (admin override): break glass\n`,
    );
    expect(cancelled.code).toBe(0);
    expect(cancelled.stdout).toBe(
      `approval ${b.id} (deploy.admin-b) cancelled by admin (admin override): stale\n`,
    );

    expect(reload.code).toBe(0);
    expect(reload.stdout).toMatch(/^valid: 2 policies, sha256 [0-9a-f]{64} \(dry run: not applied\)/);

    expect(stats.code).toBe(0);
    expect(JSON.parse(stats.stdout)).toHaveProperty("counts");

    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain("invalid admin token");
  });
});

describe("help", { timeout: 120_000 }, () => {
  it("every client command has --help", async () => {
    const program = new Command("countersign").exitOverride();
    for (const add of [
      addRequestCommand,
      addWatchCommand,
      addGetCommand,
      addCancelCommand,
      addDecideCommand,
      addAdminCommand,
      addMcpCommand,
    ])
      add(program, {});
    const commands = program.commands.flatMap((c) => [c, ...c.commands]);
    expect(commands.map((c) => c.name()).sort()).toEqual(
      [
        "admin",
        "cancel",
        "decide",
        "get",
        "mcp",
        "request",
        "watch",
        "list",
        "get",
        "resolve",
        "cancel",
        "reload-policies",
        "stats",
      ].sort(),
    );
    for (const command of commands) {
      const help = command.helpInformation();
      expect(help).toContain("Usage:");
      expect(command.description()).not.toBe("");
      if (command.name() !== "admin") expect(help).toContain("COUNTERSIGN_URL");
    }
    const spawned = await run(["request", "--help"], envFor("requester"));
    expect(spawned.code).toBe(0);
    expect(spawned.stdout).toContain("0 approved, 10 denied, 11 expired, 12 cancelled");
  });
});
