import { execFile, spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { createCountersignClient, Decision } from "@countersign/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestPki, type TestPki, testIdentities } from "./support/certs.js";
import { startTestServer, type TestServer } from "./support/test-server.js";

const execFileAsync = promisify(execFile);
const root = join(import.meta.dirname, "..");
const examplePolicy = readFileSync(join(root, "examples/policies.yaml"), "utf8");

/** Runs `node script` in `cwd`, calls `onLine` for each stdout line, and resolves with the result. */
function runNode(
  cwd: string,
  script: string,
  env: NodeJS.ProcessEnv,
  onLine: (line: string) => void,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script], { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    let pending = "";
    const timer = setTimeout(() => child.kill(), 60_000);
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString();
      pending += chunk.toString();
      const lines = pending.split("\n");
      pending = lines.pop() ?? "";
      for (const line of lines) onLine(line);
    });
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

let project: string;
let packed: string[];

beforeAll(async () => {
  // The SDK is built by `npm test` (pretest) and `npm install` (prepare); packing without scripts keeps
  // the dist/ that other test files use in place.
  const dir = mkdtempSync(join(tmpdir(), "countersign-pack-"));
  const { stdout } = await execFileAsync(
    "npm",
    ["pack", "-w", "@countersign/sdk", "--ignore-scripts", "--pack-destination", dir, "--json"],
    { cwd: root },
  );
  const [info] = JSON.parse(stdout) as { filename: string; files: { path: string }[] }[];
  if (info === undefined) throw new Error(`npm pack printed no package: ${stdout}`);
  packed = info.files.map((f) => f.path);
  project = mkdtempSync(join(tmpdir(), "countersign-consumer-"));
  writeFileSync(
    join(project, "package.json"),
    JSON.stringify({ name: "consumer", private: true, type: "module" }),
  );
  const tarball = join(dir, info.filename);
  // Offline from the npm cache (the repository's own install put the dependencies there).
  await execFileAsync("npm", ["install", tarball, "--offline", "--no-audit", "--no-fund"], {
    cwd: project,
  }).catch(() =>
    execFileAsync("npm", ["install", tarball, "--prefer-offline", "--no-audit", "--no-fund"], {
      cwd: project,
    }),
  );
}, 120_000);

describe("the packed SDK", { timeout: 120_000 }, () => {
  it("ships JavaScript, type declarations and the generated types, and no sources", () => {
    expect(packed).toEqual(
      expect.arrayContaining([
        "package.json",
        "README.md",
        "dist/index.js",
        "dist/index.d.ts",
        "dist/gen/countersign/v1/approval_pb.js",
        "dist/gen/countersign/v1/approval_pb.d.ts",
        "dist/gen/google/rpc/error_details_pb.js",
      ]),
    );
    expect(packed.filter((p) => !p.startsWith("dist/") && p !== "package.json" && p !== "README.md")).toEqual(
      [],
    );
    expect(packed.filter((p) => p.endsWith(".ts") && !p.endsWith(".d.ts"))).toEqual([]);
  });

  it("installs only what a client needs", () => {
    const installed = readdirSync(join(project, "node_modules"))
      .filter((name) => !name.startsWith("."))
      .flatMap((name) =>
        name.startsWith("@")
          ? readdirSync(join(project, "node_modules", name)).map((n) => `${name}/${n}`)
          : [name],
      )
      .sort();
    expect(installed).toEqual([
      "@bufbuild/protobuf",
      "@connectrpc/connect",
      "@connectrpc/connect-node",
      "@countersign/sdk",
    ]);
  });

  it("type-checks a TypeScript consumer against the shipped declarations", async () => {
    writeFileSync(
      join(project, "consumer.ts"),
      `import { type Approval, ApprovalDeniedError, createCountersignClient, InvalidArgumentError, State } from "@countersign/sdk";
const client = createCountersignClient({ baseUrl: "https://countersign.example.com", protocol: "grpc", tls: { ca: "pem" } });
export async function deploy(): Promise<Approval> {
  try {
    const approval = await client.requireApproval({ action: "deploy.production", title: "t", params: { v: 1 } });
    const state: State = approval.state;
    return state === State.APPROVED ? approval : Promise.reject(new Error("unreachable"));
  } catch (err) {
    if (err instanceof ApprovalDeniedError) console.log(err.approver, err.reason, err.approval.id);
    if (err instanceof InvalidArgumentError) console.log(err.fieldViolations.map((v) => v.field));
    throw err;
  }
}
// @ts-expect-error an unknown protocol does not type-check
createCountersignClient({ baseUrl: "https://x", protocol: "soap" });
`,
    );
    const tsc = join(root, "node_modules/typescript/bin/tsc");
    const result = await execFileAsync(
      process.execPath,
      [
        tsc,
        "--noEmit",
        "--strict",
        "--exactOptionalPropertyTypes",
        "--target",
        "es2022",
        "--module",
        "nodenext",
        "--moduleResolution",
        "nodenext",
        "--typeRoots",
        join(root, "node_modules/@types"),
        "--types",
        "node",
        "consumer.ts",
      ],
      { cwd: project },
    ).catch((err: { stdout: string; code: number }) => err);
    expect("code" in result ? result.stdout : "").toBe("");
  });
});

describe("the packed SDK from plain JavaScript against a real server", { timeout: 120_000 }, () => {
  let dev: TestServer;
  let tls: TestServer;
  let pki: TestPki;
  beforeAll(async () => {
    pki = createTestPki();
    [dev, tls] = await Promise.all([
      startTestServer({ policy: examplePolicy }),
      startTestServer({ pki, policy: examplePolicy, flags: { deciders: testIdentities.decider } }),
    ]);
  });
  afterAll(async () => {
    await Promise.all([dev?.close(), tls?.close()]);
  });

  it("runs the quick start of docs/sdk.md until a human approves", async () => {
    const doc = readFileSync(join(root, "docs/sdk.md"), "utf8");
    const block = /<!-- test: quickstart -->\n```js\n([\s\S]*?)```/.exec(doc)?.[1];
    expect(block).toBeDefined();
    writeFileSync(
      join(project, "quickstart.mjs"),
      (block ?? "").replaceAll("http://127.0.0.1:8080", dev.server.connectUrl),
    );
    const approver = createCountersignClient({ baseUrl: dev.server.connectUrl });
    const decisions: Promise<unknown>[] = [];
    const result = await runNode(project, "quickstart.mjs", { PATH: process.env.PATH }, (line) => {
      const id = /^waiting for approval (\w+)$/.exec(line)?.[1];
      if (id !== undefined)
        decisions.push(
          approver.approvals.submitDecision({
            id,
            approver: "alice",
            decision: Decision.APPROVE,
            reason: "ship it",
          }),
        );
    });
    await Promise.all(decisions);
    expect(decisions).toHaveLength(1);
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    expect(result.stdout).toContain("approved by alice: ship it");
    expect(result.stdout).toContain('deploying exactly {"service":"api","version":"v42"}');
  });

  it("waits over gRPC with mutual TLS and reports a denial", async () => {
    writeFileSync(
      join(project, "mtls.mjs"),
      `import { ApprovalDeniedError, createCountersignClient } from "@countersign/sdk";
const env = process.env;
const client = createCountersignClient({
  baseUrl: env.URL,
  protocol: "grpc",
  tls: { ca: env.CA, cert: env.CERT, key: env.KEY },
});
try {
  await client.requireApproval(
    { action: "deploy.production", title: "Deploy over mTLS" },
    { onRequested: (h) => console.log("requested " + h.id + " as " + h.approval.requester) },
  );
  console.log("approved?!");
} catch (err) {
  console.log(err instanceof ApprovalDeniedError ? "denied by " + err.approver + ": " + err.reason : "error " + err);
}
`,
    );
    const decider = createCountersignClient({
      baseUrl: `https://${tls.server.grpcAddress}`,
      protocol: "grpc",
      tls: { ca: pki.ca, cert: pki.decider.cert, key: pki.decider.key },
    });
    const decisions: Promise<unknown>[] = [];
    const result = await runNode(
      project,
      "mtls.mjs",
      {
        PATH: process.env.PATH,
        URL: `https://${tls.server.grpcAddress}`,
        CA: pki.ca,
        CERT: pki.requester.cert,
        KEY: pki.requester.key,
      },
      (line) => {
        const id = /^requested (\w+) as /.exec(line)?.[1];
        if (id !== undefined)
          decisions.push(
            decider.approvals.submitDecision({
              id,
              approver: "alice",
              decision: Decision.DENY,
              reason: "freeze",
            }),
          );
      },
    );
    await Promise.all(decisions);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(`as ${testIdentities.requester}`);
    expect(result.stdout).toContain("denied by alice: freeze");
  });
});
