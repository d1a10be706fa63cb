import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { type DescMethod, type DescService, fromJsonString } from "@bufbuild/protobuf";
import { AdminService, ApprovalService, createCountersignClient, Decision } from "@countersign/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createManualClock } from "../server/domain/clock.js";
import { startTestServer, type TestServer } from "./support/test-server.js";

const root = join(import.meta.dirname, "..");
const readme = readFileSync(join(root, "README.md"), "utf8");
const apiDoc = readFileSync(join(root, "docs/api.md"), "utf8");
const examplePolicy = readFileSync(join(root, "examples/policies.yaml"), "utf8");
const adminToken = "docs-test-admin-token-0123";

/** A clean environment for shell commands: no variables of the test runner. */
const baseEnv = (): NodeJS.ProcessEnv => ({ PATH: process.env.PATH, HOME: process.env.HOME });

/** A shell command running in the repository, with its output. */
interface Shell {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Resolves with the first match of `pattern` in stdout or stderr (rejects after `timeoutMs` or on exit). */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  exit: Promise<number>;
  /** Ends the command and everything it started (its own process group). */
  stop(): Promise<number>;
}

/** Every command started, so none outlives the tests. */
const started = new Set<Shell>();
afterAll(async () => {
  await Promise.all([...started].map((s) => s.stop()));
});

function shell(command: string, env: NodeJS.ProcessEnv): Shell {
  const child = spawn("bash", ["-c", command], {
    cwd: root,
    env,
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  const listeners = new Set<() => void>();
  const changed = () => {
    for (const listener of [...listeners]) listener();
  };
  child.stdout?.on("data", (chunk: Buffer) => {
    out += chunk.toString();
    changed();
  });
  child.stderr?.on("data", (chunk: Buffer) => {
    err += chunk.toString();
    changed();
  });
  const exit = new Promise<number>((resolve) => child.on("close", (code) => resolve(code ?? 128)));
  let exited = false;
  void exit.then(() => {
    exited = true;
    changed();
  });
  const run: Shell = {
    child,
    stdout: () => out,
    stderr: () => err,
    exit,
    waitFor(pattern, timeoutMs = 60_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const match = pattern.exec(out) ?? pattern.exec(err);
          if (match !== null) done(() => resolve(match));
          else if (exited)
            done(() => reject(new Error(`\`${command}\` exited before printing ${pattern}:\n${out}${err}`)));
        };
        const timer = setTimeout(
          () =>
            done(() =>
              reject(new Error(`timed out waiting for ${pattern} from \`${command}\`:\n${out}${err}`)),
            ),
          timeoutMs,
        );
        const done = (settle: () => void) => {
          clearTimeout(timer);
          listeners.delete(check);
          settle();
        };
        listeners.add(check);
        check();
      });
    },
    async stop() {
      if (!exited && child.pid !== undefined) {
        try {
          process.kill(-child.pid, "SIGTERM");
        } catch {
          // already gone
        }
      }
      return exit;
    },
  };
  started.add(run);
  void exit.then(() => started.delete(run));
  return run;
}

/** The `sh` block after `<!-- walkthrough: name -->` in the README, without the list indentation. */
function walkthroughBlock(name: string): string {
  const match = new RegExp(`<!-- walkthrough: ${name} -->\\n( *)\`\`\`sh\\n([\\s\\S]*?)\\n\\1\`\`\``).exec(
    readme,
  );
  if (match === null) throw new Error(`README.md has no walkthrough block "${name}"`);
  const indent = match[1] ?? "";
  return (match[2] ?? "")
    .split("\n")
    .map((line) => (line.startsWith(indent) ? line.slice(indent.length) : line))
    .join("\n");
}

describe("the README walkthrough", { timeout: 120_000 }, () => {
  let server: Shell | undefined;
  afterAll(async () => {
    await server?.stop();
  });

  it("npm start; request --wait in one terminal; the printed decide command in another; the first exits 0", async () => {
    const start = walkthroughBlock("server");
    expect(start).toBe("npm start");
    // The documented command, on free ports instead of the fixed ones (the environment overrides them).
    server = shell(start, {
      ...baseEnv(),
      COUNTERSIGN_GRPC_LISTEN: "127.0.0.1:0",
      COUNTERSIGN_CONNECT_LISTEN: "127.0.0.1:0",
      COUNTERSIGN_OPS_LISTEN: "127.0.0.1:0",
    });
    const [, connectUrl] = await server.waitFor(/Connect: (http:\/\/\S+)/);
    const clientEnv = { ...baseEnv(), COUNTERSIGN_URL: connectUrl };

    const request = shell(walkthroughBlock("request"), clientEnv);
    const [, id] = await request.waitFor(
      /requested approval (\w+) \(deploy\.production, policy production-deploy\)/,
    );
    await request.waitFor(/waiting: approval \w+ \(deploy\.production\) pending/);

    // The server printed a ready-to-paste command; the README shows the same one.
    const [, printed] = await server.waitFor(
      new RegExp(
        `\\n {2}(npm run -s countersign -- decide ${id} approve --as alice --reason "looks good"( --url \\S+)?)\\n`,
      ),
    );
    expect(walkthroughBlock("decide").replace("<ID>", id ?? "")).toBe(
      (printed ?? "").replace(/ --url \S+$/, ""),
    );
    const decide = shell(printed ?? "", clientEnv);
    expect(await decide.exit).toBe(0);
    expect(decide.stdout()).toContain(`approval ${id} (deploy.production) approved by alice: looks good`);

    expect(await request.exit).toBe(0);
    expect(request.stdout()).toBe(`approval ${id} (deploy.production) approved by alice: looks good\n`);

    const curl = shell(
      walkthroughBlock("curl").replaceAll("http://127.0.0.1:8080", connectUrl ?? ""),
      clientEnv,
    );
    expect(await curl.exit).toBe(0);
    expect(JSON.parse(curl.stdout())).toMatchObject({
      approval: { action: "deploy.production", state: "STATE_PENDING", requester: "local-dev" },
      created: true,
    });
  });
});

/** An example of docs/api.md: the RPC section it is in, which tool, and the command. */
interface ApiExample {
  service: string;
  method: string;
  tool: "grpcurl" | "buf" | "curl";
  command: string;
}

function apiExamples(): ApiExample[] {
  const examples: ApiExample[] = [];
  let service = "";
  let method = "";
  const lines = apiDoc.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] ?? "";
    if (line.startsWith("## ")) {
      service = /^## (countersign\.v1\.\w+)$/.exec(line)?.[1] ?? "";
      method = "";
    } else if (line.startsWith("### ")) method = line.slice(4).trim();
    else if (line === "```sh" && service !== "" && method !== "") {
      const body: string[] = [];
      for (i++; lines[i] !== "```"; i++) body.push(lines[i] ?? "");
      const command = body.join("\n");
      const tool = command.startsWith("grpcurl ")
        ? "grpcurl"
        : command.startsWith("npx buf curl ")
          ? "buf"
          : "curl";
      examples.push({ service, method, tool, command });
    }
  }
  return examples;
}

const knownGrpcurlFlags = new Set(["-plaintext", "-d", "-H", "-cacert", "-cert", "-key", "-max-time"]);
const flagsWithValue = new Set(["-d", "-H", "-cacert", "-cert", "-key", "-max-time"]);

/**
 * grpcurl is not installed here: its examples run through bash with `grpcurl` replaced by a function that
 * records its arguments, which are then checked against grpcurl's syntax and the API's schema.
 */
async function checkGrpcurl(example: ApiExample, command: string, grpcAddress: string, method: DescMethod) {
  const run = shell(`grpcurl() { printf '%s\\0' "$@"; }\n${command}`, {
    ...baseEnv(),
    ADMIN_TOKEN: adminToken,
  });
  expect(await run.exit).toBe(0);
  const args = run.stdout().split("\0").slice(0, -1);
  const positional: string[] = [];
  let data: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] ?? "";
    if (!arg.startsWith("-")) {
      positional.push(arg);
      continue;
    }
    expect(knownGrpcurlFlags.has(arg), `${example.method}: unknown grpcurl flag ${arg}`).toBe(true);
    if (!flagsWithValue.has(arg)) continue;
    const value = args[++i] ?? "";
    if (arg === "-d") data = value;
    if (arg === "-H") expect(value).toMatch(/^[a-z-]+: \S/);
  }
  expect(args).toContain("-plaintext");
  expect(positional).toEqual([grpcAddress, `${example.service}/${example.method}`]);
  if (data !== undefined) expect(() => fromJsonString(method.input, data ?? "")).not.toThrow();
  if (example.service === AdminService.typeName)
    expect(args).toContain(`authorization: Bearer ${adminToken}`);
}

describe("docs/api.md", { timeout: 120_000 }, () => {
  let ts: TestServer;
  const clock = createManualClock(Date.now());
  beforeAll(async () => {
    ts = await startTestServer({ policy: examplePolicy, clock, env: { ADMIN_TOKEN: adminToken } });
  });
  afterAll(async () => {
    await ts?.close();
  });

  const services: DescService[] = [ApprovalService, AdminService];

  it("has a grpcurl, a buf curl and a curl example for every RPC", () => {
    const examples = apiExamples();
    for (const service of services) {
      for (const method of service.methods) {
        const tools = examples
          .filter((e) => e.service === service.typeName && e.method === method.name)
          .map((e) => e.tool)
          .sort();
        expect(tools, `${service.typeName}/${method.name}`).toEqual(["buf", "curl", "grpcurl"]);
      }
    }
  });

  it("runs every buf curl and curl example against a local server (grpcurl: syntax and schema)", async () => {
    const sdk = createCountersignClient({ baseUrl: ts.server.connectUrl });
    const pending = async () =>
      (await sdk.requestApproval({ action: "deploy.production", title: "docs example" })).id;
    let denied: string | undefined;
    const deniedForDave = async () => {
      if (denied === undefined) {
        const handle = await sdk.requestApproval({
          action: "deploy.production",
          title: "denied",
          onBehalfOf: "dave",
        });
        await sdk.approvals.submitDecision({
          id: handle.id,
          approver: "alice",
          decision: Decision.DENY,
          reason: "no",
        });
        clock.advance(5 * 60_000 + 1_000); // the policy's re-request cooldown
        denied = handle.id;
      }
      return denied;
    };
    const approve = (id: string) =>
      sdk.approvals.submitDecision({
        id,
        approver: "bob",
        decision: Decision.APPROVE,
        interactionId: `docs-${id}`,
      });

    /** What each RPC's examples need, and what their output must show. */
    const plans: Record<
      string,
      {
        id?: () => Promise<string>;
        during?: (id: string) => Promise<unknown>;
        endsOn?: RegExp;
        shows: RegExp;
      }
    > = {
      "ApprovalService/CreateApproval": { shows: /"state":\s*"STATE_PENDING"/ },
      "ApprovalService/GetApproval": { id: pending, shows: /"state":\s*"STATE_PENDING"/ },
      "ApprovalService/WatchApproval": { id: pending, during: approve, shows: /"state":\s*"STATE_APPROVED"/ },
      "ApprovalService/CancelApproval": { id: pending, shows: /"state":\s*"STATE_CANCELLED"/ },
      "ApprovalService/SubmitDecision": { id: pending, shows: /"decidedBy":\s*"alice"/ },
      "ApprovalService/WatchApprovals": {
        id: pending,
        endsOn: /"snapshotComplete":\s*true/,
        shows: /"rules":/,
      },
      "ApprovalService/RerequestApproval": { id: deniedForDave, shows: /"rerequestOf":\s*"\w+"/ },
      "AdminService/ListApprovals": { shows: /"approvals":/ },
      "AdminService/GetApproval": { id: pending, shows: /"policyName":\s*"production-deploy"/ },
      "AdminService/ResolveApproval": { id: pending, shows: /"adminOverride":\s*true/ },
      "AdminService/CancelApproval": { id: pending, shows: /"state":\s*"STATE_CANCELLED"/ },
      "AdminService/ReloadPolicies": { shows: /"candidateSha256":\s*"[0-9a-f]{64}"/ },
      "AdminService/ValidatePolicies": { shows: /policies\[0\]\.aprovers/ },
      "AdminService/GetPolicies": { shows: /"sha256":\s*"[0-9a-f]{64}"/ },
      "AdminService/GetStats": { shows: /"counts":/ },
    };

    const grpcAddress = ts.server.grpcAddress;
    const connectHost = new URL(ts.server.connectUrl).host;
    const env = { ...baseEnv(), ADMIN_TOKEN: adminToken };
    const examples = apiExamples();
    expect(examples.length).toBe(15 * 3);
    const runExample = async (example: ApiExample) => {
      const key = `${example.service.replace("countersign.v1.", "")}/${example.method}`;
      const plan = plans[key];
      if (plan === undefined) throw new Error(`no plan for the examples of ${key}`);
      const service = services.find((s) => s.typeName === example.service);
      const method = service?.methods.find((m) => m.name === example.method);
      if (method === undefined) throw new Error(`${key} is not an RPC of the API`);
      const id = plan.id === undefined ? "" : await plan.id();
      const command = example.command
        .replaceAll("<ID>", id)
        .replaceAll("127.0.0.1:50051", grpcAddress)
        .replaceAll("127.0.0.1:8080", connectHost);
      if (example.tool === "grpcurl") {
        await checkGrpcurl(example, command, grpcAddress, method);
        return;
      }
      const run = shell(command, env);
      await plan.during?.(id);
      if (plan.endsOn !== undefined) {
        await run.waitFor(plan.endsOn);
        await run.stop();
      } else {
        expect(await run.exit, `${key} (${example.tool}): ${run.stderr()}`).toBe(0);
      }
      expect(run.stdout(), `${key} (${example.tool})`).toMatch(plan.shows);
      if (id !== "" && key !== "ApprovalService/RerequestApproval") expect(run.stdout()).toContain(id);
      if (example.tool === "curl" && method.methodKind === "unary")
        expect(JSON.parse(run.stdout())).not.toHaveProperty("code");
    };
    // A few at a time: each buf curl starts a process.
    const queue = [...examples];
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        for (let example = queue.shift(); example !== undefined; example = queue.shift())
          await runExample(example);
      }),
    );
  });

  it("runs the health and reflection examples", async () => {
    const section = apiDoc.slice(apiDoc.indexOf("## Health and reflection"));
    const block = /```sh\n([\s\S]*?)```/.exec(section)?.[1] ?? "";
    const commands = block.trim().split("\n");
    expect(commands).toHaveLength(4);
    const env = baseEnv();
    for (const raw of commands) {
      const command = raw
        .replaceAll("127.0.0.1:50051", ts.server.grpcAddress)
        .replaceAll("127.0.0.1:9090", new URL(ts.server.opsUrl).host);
      if (command.startsWith("grpcurl ")) {
        const run = shell(`grpcurl() { printf '%s\\0' "$@"; }\n${command}`, env);
        expect(await run.exit).toBe(0);
        const args = run.stdout().split("\0").slice(0, -1);
        expect(args.slice(0, 2)).toEqual(["-plaintext", ts.server.grpcAddress]);
        expect(["list", "grpc.health.v1.Health/Check"]).toContain(args[2]);
        continue;
      }
      const run = shell(command, env);
      expect(await run.exit, `${command}: ${run.stderr()}`).toBe(0);
      if (command.includes("--list-services"))
        expect(run.stdout()).toContain("countersign.v1.ApprovalService");
      else expect(run.stdout()).toContain("ready");
    }
    // The Connect port's health service, over h2c.
    const connectBlock = [...section.matchAll(/```sh\n([\s\S]*?)```/g)][1]?.[1] ?? "";
    expect(connectBlock).toContain("127.0.0.1:8080");
    const run = shell(connectBlock.replaceAll("http://127.0.0.1:8080", ts.server.connectUrl), env);
    expect(await run.exit, run.stderr()).toBe(0);
    expect(run.stdout()).toContain("SERVING");
  });
});

describe("docs/sdk.md", { timeout: 120_000 }, () => {
  it("documents every error class the SDK exports", async () => {
    const sdk = await import("@countersign/sdk");
    const doc = readFileSync(join(root, "docs/sdk.md"), "utf8");
    const errorClasses = Object.entries(sdk)
      .filter(([name, value]) => typeof value === "function" && /^[A-Z]\w*Error$/.test(name))
      .map(([name]) => name);
    expect(errorClasses.length).toBeGreaterThan(10);
    for (const name of errorClasses) expect(doc, name).toContain(`\`${name}\``);
  });
});
