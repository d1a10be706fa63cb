import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadPolicyFile, policyDocumentLimits } from "../server/policy/policy-loader.js";
import { startServerProcess } from "./support/server-process.js";
import { startTestServer, type TestServer, testPolicy } from "./support/test-server.js";
import { waitFor } from "./support/wait.js";

const run = promisify(execFile);
const cli = ["--import", "tsx", join(import.meta.dirname, "../clients/cli/countersign.ts")];
const adminToken = "bombs-test-admin-token-0123456789";

/** Billion laughs: 9 aliases per level, 9 levels: 9^9 strings once expanded. */
function billionLaughs(): string {
  let text = 'version: 1\na: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n';
  let previous = "a";
  for (const name of ["b", "c", "d", "e", "f", "g", "h", "i"]) {
    text += `${name}: &${name} [${Array(9).fill(`*${previous}`).join(",")}]\n`;
    previous = name;
  }
  return `${text}policies: []\n`;
}

let blockNesting = "version: 1\npolicies: []\nx:\n";
for (let i = 0; i < 500; i++) blockNesting += `${" ".repeat(i + 1)}k${i}:\n`;

/** Each bomb, and the start of the problem it is refused with. */
const bombs: [name: string, text: string, problem: string][] = [
  [
    "billion laughs",
    billionLaughs(),
    '(root): aliases expand into more than 100 nodes (a "billion laughs" document): refused',
  ],
  [
    "deep flow nesting",
    `version: 1\npolicies: ${"[".repeat(100_000)}${"]".repeat(100_000)}\n`,
    "(line 2, column 74): nested deeper than 64 levels: refused",
  ],
  ["deep block nesting", blockNesting, "(line 67, column 65): nested deeper than 64 levels: refused"],
  [
    "a huge document",
    `version: 1\npolicies: []\n${"# padding\n".repeat(2_000_000)}`,
    `(file): the policy file is 20000024 bytes, more than the ${policyDocumentLimits.bytes} allowed: refused`,
  ],
  [
    "too many values",
    `version: 1\npolicies: [${"1,".repeat(60_000)}1]\n`,
    "(line 2, column 100004): more than 50000 values: refused",
  ],
  [
    // The yaml library's duplicate-key check compares every pair of keys: 20 000 keys took minutes.
    "one mapping with thousands of keys",
    `version: 1\npolicies: []\nx:\n${Array.from({ length: 20_000 }, (_, i) => `  k${i}: 1\n`).join("")}  k0: 2\n`,
    "(line 20004, column 3): Map keys must be unique",
  ],
];

const dir = mkdtempSync(join(tmpdir(), "countersign-bombs-"));
const write = (name: string, text: string): string => {
  const file = join(dir, `${name.replace(/\W+/g, "-")}.yaml`);
  writeFileSync(file, text);
  return file;
};

describe("YAML bombs in policy files", () => {
  it.each(bombs)("%s is refused quickly, with a clear problem", async (name, text, problem) => {
    const started = performance.now();
    const result = await loadPolicyFile(write(name, text));
    const seconds = (performance.now() - started) / 1000;
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(`${result.problems[0]?.path}: ${result.problems[0]?.message}`).toContain(problem);
    // Before the limits: 20 s for the huge document, minutes for the many keys. A generous bound.
    expect(seconds).toBeLessThan(3);
  });

  it("still loads a large, real policy file (500 policies)", async () => {
    const policies = Array.from(
      { length: 500 },
      (_, i) =>
        `  - name: p${i}\n    match: "svc${i}.*"\n    approvers: { users: [U1, U2] }\n    required_approvals: 1\n    timeout: 30m\n`,
    ).join("");
    const result = await loadPolicyFile(
      write("large", `version: 1\ndefaults: { channel: C0 }\npolicies:\n${policies}`),
    );
    expect(result.ok && result.policySet.policies.length).toBe(500);
  });

  it("`countersign policy validate` refuses each with exit status 1 and the problem", async () => {
    const files = bombs.map(([name, text]) => write(name, text));
    const failed = await run(process.execPath, [...cli, "policy", "validate", ...files]).catch(
      (err: { code: number; stderr: string }) => err,
    );
    expect("code" in failed && failed.code).toBe(1);
    for (const [i, [, , problem]] of bombs.entries())
      expect(failed.stderr).toContain(`${files[i]}: ${problem}`);
  });

  describe("reload keeps the policies in force", () => {
    let ts: TestServer;
    beforeAll(async () => {
      ts = await startTestServer({ env: { ADMIN_TOKEN: adminToken } });
    });
    afterAll(async () => {
      await ts?.close();
    });

    it("through ReloadPolicies and the reload SIGHUP runs", async () => {
      const { admin, approvals } = ts.clients(undefined, "connect", {
        headers: { authorization: `Bearer ${adminToken}` },
      });
      const before = (await admin.getPolicies({})).sha256;
      for (const [name, text] of bombs.filter(([n]) => n !== "a huge document")) {
        writeFileSync(ts.policyPath, text);
        const err = await admin.reloadPolicies({}).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err, name).toBeInstanceOf(ConnectError);
        expect((err as ConnectError).code, name).toBe(Code.FailedPrecondition);
        await ts.server.reloadPolicies();
        expect((await admin.getPolicies({})).sha256, name).toBe(before);
      }
      const created = await approvals.createApproval({ action: "deploy.staging", title: "still governed" });
      expect(created.approval?.policyName).toBe("staging-deploy");
      writeFileSync(ts.policyPath, testPolicy);
    });
  });

  it("SIGHUP with a bomb in place keeps the set; `countersign serve` refuses to start on one", async () => {
    const policyPath = write("served", testPolicy);
    const args = [
      "--grpc-listen",
      "127.0.0.1:0",
      "--connect-listen",
      "127.0.0.1:0",
      "--ops-listen",
      "127.0.0.1:0",
    ];
    const server = await startServerProcess([...args, "--policy", policyPath]);
    try {
      writeFileSync(policyPath, billionLaughs());
      server.child.kill("SIGHUP");
      await waitFor(() => server.output().includes("policy reload rejected"), 10_000, "the rejected reload");
      expect(server.output()).toContain("billion laughs");
      const ready = await fetch(`${server.opsUrl}/readyz`);
      expect(ready.status).toBe(200);
    } finally {
      await server.stop();
    }

    const bomb = write("start", readFileSync(policyPath, "utf8"));
    const failed = await run(process.execPath, [...cli, "serve", ...args, "--policy", bomb]).catch(
      (err: { code: number; stderr: string }) => err,
    );
    expect("code" in failed && failed.code).not.toBe(0);
    expect(failed.stderr).toContain('aliases expand into more than 100 nodes (a "billion laughs" document)');
  }, 60_000);
});
