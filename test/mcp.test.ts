import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { createCountersignClient, Decision, State } from "@countersign/sdk";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type { CallToolResult, Progress } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createManualClock } from "../server/domain/clock.js";
import { createTestPki, type Pem, type TestPki, testIdentities, writePemFiles } from "./support/certs.js";
import { createTcpProxy } from "./support/tcp-proxy.js";
import { startTestServer, type TestServer } from "./support/test-server.js";
import { waitFor } from "./support/wait.js";

const root = join(import.meta.dirname, "..");
const entry = join(root, "clients/cli/countersign.ts");
const policy = `
version: 1
defaults: { channel: C0, timeout: 30m, unknown_action: deny }
policies:
  - name: agent
    match: "agent.*"
    approvers: { users: [alice, bob] }
    required_approvals: 1
  - name: agent-pair
    match: "pair.*"
    approvers: { users: [alice, bob] }
    required_approvals: 2
    overrides: { keys: [replicas] }
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
  ts = await startTestServer({ pki, policy, clock, flags: { deciders: testIdentities.decider } });
  files = writePemFiles({
    "ca.pem": pki.ca,
    "requester.pem": pki.requester.cert,
    "requester-key.pem": pki.requester.key,
  });
});

/** Every MCP session a test opened, closed after it (and the child processes with them). */
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  await Promise.allSettled(cleanups.splice(0).map((cleanup) => cleanup()));
});
afterAll(async () => {
  await ts?.close();
});

/** The `countersign mcp` environment: the requester's certificate, over mutual TLS. */
function mcpEnv(extra: Record<string, string> = {}): Record<string, string> {
  return {
    PATH: process.env.PATH ?? "",
    HOME: process.env.HOME ?? "",
    COUNTERSIGN_URL: ts.server.connectUrl,
    COUNTERSIGN_CA: files["ca.pem"] as string,
    COUNTERSIGN_CERT: files["requester.pem"] as string,
    COUNTERSIGN_KEY: files["requester-key.pem"] as string,
    ...extra,
  };
}

/** Collects a stream's text, and resolves when it matches a pattern. */
function textOf(stream: Readable | null) {
  let text = "";
  stream?.on("data", (chunk: Buffer) => {
    text += chunk.toString();
  });
  return {
    text: () => text,
    async match(pattern: RegExp, timeoutMs = 30_000): Promise<RegExpMatchArray> {
      await waitFor(() => pattern.test(text), timeoutMs, `${pattern} on stderr of countersign mcp:\n${text}`);
      return pattern.exec(text) as RegExpMatchArray;
    },
  };
}

/** Spawns `countersign mcp` and connects the MCP SDK's own client to it over stdio. */
async function startMcp(args: string[] = [], env: Record<string, string> = mcpEnv()) {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: ["--import", "tsx", entry, "mcp", ...args],
    env,
    cwd: root,
    stderr: "pipe",
  });
  const stderr = textOf(transport.stderr as Readable | null);
  const client = new Client({ name: "countersign-mcp-test", version: "1.0.0" });
  await client.connect(transport);
  cleanups.push(() => client.close());
  return { client, stderr };
}

const sdk = (identity: Pem) =>
  createCountersignClient({
    baseUrl: ts.server.connectUrl,
    tls: { ca: pki.ca, cert: identity.cert, key: identity.key },
  });

/** A tool call in flight, with the progress notifications it received. */
function callWithProgress(
  client: Client,
  name: string,
  args: Record<string, unknown>,
  options: { signal?: AbortSignal; timeout?: number; resetTimeoutOnProgress?: boolean } = {},
) {
  const progress: Progress[] = [];
  const result = client.callTool({ name, arguments: args }, undefined, {
    ...options,
    onprogress: (p) => progress.push(p),
  }) as Promise<CallToolResult>;
  // Surfaces a rejection in the test that awaits it, never as an unhandled rejection meanwhile.
  result.catch(() => {});
  return {
    result,
    progress,
    /** Resolves with the approval id once a progress notification matches `pattern`. */
    async progressMatching(pattern: RegExp, timeoutMs = 30_000): Promise<string> {
      await waitFor(
        () => progress.some((p) => pattern.test(p.message ?? "")),
        timeoutMs,
        `a progress notification matching ${pattern}; got ${JSON.stringify(progress)}`,
      );
      const message = progress.find((p) => pattern.test(p.message ?? ""))?.message ?? "";
      return /approval (\w+)/.exec(message)?.[1] ?? "";
    },
  };
}

const text = (result: CallToolResult) =>
  result.content.map((c) => (c.type === "text" ? c.text : "")).join("\n");

type Structured = {
  id: string;
  state: string;
  approved: boolean;
  decided_by: string;
  reason: string;
  params: Record<string, unknown>;
  params_sha256: string;
  edited_keys: string[];
  votes: { approver: string; decision: string; reason: string }[];
  approvals: number;
  required_approvals: number;
  created?: boolean;
};
const structured = (result: CallToolResult) => result.structuredContent as Structured;

const request = (action: string, extra: Record<string, unknown> = {}) => ({
  action,
  title: `MCP ${action}`,
  justification: "the test asks",
  params: { command: "rm -rf build/", replicas: 3 },
  ...extra,
});

describe("countersign mcp over stdio", { timeout: 120_000 }, () => {
  it("lists the four tools with their input and output schemas", async () => {
    const { client } = await startMcp();
    const { tools } = await client.listTools();
    expect(tools.map((t) => t.name).sort()).toEqual([
      "cancel_approval",
      "get_approval",
      "request_approval",
      "wait_for_approval",
    ]);
    const requestTool = tools.find((t) => t.name === "request_approval");
    const input = requestTool?.inputSchema as {
      required: string[];
      properties: Record<string, { type?: string; default?: unknown }>;
    };
    expect(input.required.sort()).toEqual(["action", "justification", "params", "title"]);
    expect(input.properties.params?.type).toBe("object");
    expect(input.properties.wait?.default).toBe(true);
    expect(Object.keys(input.properties).sort()).toEqual([
      "action",
      "idempotency_key",
      "justification",
      "on_behalf_of",
      "params",
      "timeout_seconds",
      "title",
      "wait",
    ]);
    for (const tool of tools) {
      const output = tool.outputSchema as { properties: Record<string, unknown> };
      expect(Object.keys(output.properties)).toEqual(
        expect.arrayContaining(["state", "approved", "decided_by", "reason", "params", "params_sha256"]),
      );
    }
    expect(
      (tools.find((t) => t.name === "wait_for_approval")?.inputSchema as { required?: string[] } | undefined)
        ?.required,
    ).toEqual(["id", "timeout_seconds"]);
    // docs/agents.md names every input and output field, and its client configurations are valid JSON
    // that run this command.
    const doc = readFileSync(join(root, "docs/agents.md"), "utf8");
    for (const tool of tools) {
      expect(doc).toMatch(new RegExp(`^### .*\`${tool.name}\``, "m"));
      const fields = [
        ...Object.keys((tool.inputSchema as { properties: object }).properties),
        ...Object.keys((tool.outputSchema as { properties: object }).properties),
      ];
      for (const field of fields) expect(doc).toContain(`\`${field}\``);
    }
    const configs = [...doc.matchAll(/```json\n([\s\S]*?)\n```/g)].map(
      (m) => JSON.parse(m[1] as string) as { mcpServers: Record<string, { args: string[] }> },
    );
    expect(configs.length).toBeGreaterThanOrEqual(2);
    for (const config of configs) expect(config.mcpServers.countersign?.args).toContain("mcp");
  });

  it("request_approval holds until approved, with progress on every vote and the approver's edits in the result", async () => {
    const { client } = await startMcp();
    const call = callWithProgress(client, "request_approval", request("pair.deploy"));
    const id = await call.progressMatching(/pending: 0\/2 approvals.*votes: no votes yet/);
    expect(id).not.toBe("");

    const decider = sdk(pki.decider);
    await decider.approvals.submitDecision({
      id,
      approver: "alice",
      decision: Decision.APPROVE,
      reason: "fine",
    });
    await call.progressMatching(/pending: 1\/2 approvals.*votes: "alice" approve "fine"/);
    await decider.approvals.submitDecision({
      id,
      approver: "bob",
      decision: Decision.APPROVE,
      reason: "with 2 replicas",
      editedParams: { command: "rm -rf build/", replicas: 2 },
    });
    // The edit resets alice's approval (she approved other params): she must approve the new ones.
    await call.progressMatching(/pending: 1\/2 approvals.*votes: "bob" approve "with 2 replicas"/);
    await decider.approvals.submitDecision({
      id,
      approver: "alice",
      decision: Decision.APPROVE,
      reason: "2 replicas is fine",
    });

    const result = await call.result;
    expect(result.isError).toBeFalsy();
    const out = structured(result);
    const stored = await sdk(pki.requester).getHandle(id).get();
    expect(out).toMatchObject({
      id,
      state: "approved",
      approved: true,
      decided_by: "alice",
      reason: "2 replicas is fine",
      params: { command: "rm -rf build/", replicas: 2 },
      params_sha256: stored.paramsSha256,
      edited_keys: ["replicas"],
      approvals: 2,
      required_approvals: 2,
      created: true,
    });
    expect(out.votes.map((v) => [v.approver, v.decision])).toEqual([
      ["bob", "approve"],
      ["alice", "approve"],
    ]);
    expect(text(result)).toMatch(/^APPROVED: approval \w+ \(pair\.deploy\) was approved by "alice"/);
    expect(text(result)).toContain(
      `You may proceed with exactly these params: {"command":"rm -rf build/","replicas":2} (params_sha256 ${stored.paramsSha256})`,
    );
    expect(text(result)).toContain('An approver changed "replicas" before approving');
  });

  it("returns denied and expired as normal results that say not to proceed", async () => {
    const { client } = await startMcp();
    const denied = callWithProgress(client, "request_approval", request("agent.denied"));
    const expired = callWithProgress(client, "request_approval", request("short.expired"));
    const deniedId = await denied.progressMatching(/pending/);
    await expired.progressMatching(/pending/);

    await sdk(pki.decider).approvals.submitDecision({
      id: deniedId,
      approver: "bob",
      decision: Decision.DENY,
      reason: "not today",
    });
    clock.advance(61_000);

    const deniedResult = await denied.result;
    expect(deniedResult.isError).toBeFalsy();
    expect(structured(deniedResult)).toMatchObject({
      state: "denied",
      approved: false,
      decided_by: "bob",
      reason: "not today",
    });
    expect(text(deniedResult)).toMatch(
      /^DENIED: .* was denied by "bob" with the reason "not today"\.\nDo not proceed\.$/,
    );

    const expiredResult = await expired.result;
    expect(expiredResult.isError).toBeFalsy();
    expect(structured(expiredResult)).toMatchObject({
      state: "expired",
      approved: false,
      decided_by: "system",
    });
    expect(text(expiredResult)).toMatch(/^EXPIRED: .*\nDo not proceed\.$/);
  });

  it("without wait, and with a wait that times out, says the approval is pending and not approved", async () => {
    const { client } = await startMcp();
    const created = (await client.callTool({
      name: "request_approval",
      arguments: request("agent.later", { wait: false, idempotency_key: "later-1" }),
    })) as CallToolResult;
    const { id } = structured(created);
    expect(structured(created)).toMatchObject({ state: "pending", approved: false, created: true });
    expect(text(created)).toContain("PENDING, NOT APPROVED");

    const again = (await client.callTool({
      name: "request_approval",
      arguments: request("agent.later", { wait: false, idempotency_key: "later-1" }),
    })) as CallToolResult;
    expect(structured(again)).toMatchObject({ id, created: false });

    const waited = (await client.callTool({
      name: "wait_for_approval",
      arguments: { id, timeout_seconds: 1 },
    })) as CallToolResult;
    expect(waited.isError).toBeFalsy();
    expect(structured(waited)).toMatchObject({ id, state: "pending", approved: false });
    expect(text(waited)).toMatch(
      /^PENDING, NOT APPROVED: .*\nDo not proceed yet\. To keep waiting, call wait_for_approval/,
    );

    const got = (await client.callTool({ name: "get_approval", arguments: { id } })) as CallToolResult;
    expect(structured(got)).toMatchObject({ id, state: "pending" });

    const cancelled = (await client.callTool({
      name: "cancel_approval",
      arguments: { id, reason: "no longer needed" },
    })) as CallToolResult;
    expect(structured(cancelled)).toMatchObject({
      state: "cancelled",
      decided_by: testIdentities.requester,
      reason: "no longer needed",
    });
    expect(text(cancelled)).toMatch(/^CANCELLED: .*\nDo not proceed\.$/);

    const waitedFinal = (await client.callTool({
      name: "wait_for_approval",
      arguments: { id, timeout_seconds: 60 },
    })) as CallToolResult;
    expect(structured(waitedFinal).state).toBe("cancelled");

    // Params are data: a key named __proto__ reaches the approval like any other key.
    const params = JSON.parse('{"__proto__":{"image":"attacker/backdoor"},"service":"api"}') as Record<
      string,
      unknown
    >;
    const smuggled = (await client.callTool({
      name: "request_approval",
      arguments: request("agent.later", { wait: false, params }),
    })) as CallToolResult;
    expect(smuggled.isError).toBeFalsy();
    const stored = await ts
      .clients(pki.requester, "connect")
      .approvals.getApproval({ id: structured(smuggled).id });
    expect(Object.keys(stored.approval?.params ?? {})).toEqual(["__proto__", "service"]);
    expect(stored.approval?.paramsSha256).toBe(structured(smuggled).params_sha256);
  });

  it("stops waiting when the client cancels the call, and cancels the approval with --cancel-on-interrupt", async () => {
    const [plain, cancelling] = await Promise.all([startMcp(), startMcp(["--cancel-on-interrupt"])]);
    const leave = new AbortController();
    const cancel = new AbortController();
    const leaveCall = callWithProgress(plain.client, "request_approval", request("agent.left"), {
      signal: leave.signal,
    });
    const cancelCall = callWithProgress(cancelling.client, "request_approval", request("agent.cancelled"), {
      signal: cancel.signal,
    });
    const leftId = await leaveCall.progressMatching(/pending/);
    const cancelledId = await cancelCall.progressMatching(/pending/);
    leave.abort("the user pressed stop");
    cancel.abort("the user pressed stop");
    await expect(leaveCall.result).rejects.toThrow();
    await expect(cancelCall.result).rejects.toThrow();

    await plain.stderr.match(
      new RegExp(`cancelled the wait: the user pressed stop; approval ${leftId} is left pending`),
    );
    await cancelling.stderr.match(new RegExp(`cancelled approval ${cancelledId}`));
    const requester = sdk(pki.requester);
    expect((await requester.getHandle(leftId).get()).state).toBe(State.PENDING);
    const cancelled = await requester.getHandle(cancelledId).get();
    expect(cancelled.state).toBe(State.CANCELLED);
    expect(cancelled.reason).toBe("the agent's MCP client cancelled the wait: the user pressed stop");

    // The server still serves calls after a cancelled one.
    const got = (await plain.client.callTool({
      name: "get_approval",
      arguments: { id: leftId },
    })) as CallToolResult;
    expect(structured(got).state).toBe("pending");
  });

  it("with --cancel-on-interrupt, cancels the approval it waits for when the client disconnects", async () => {
    const { client } = await startMcp(["--cancel-on-interrupt"]);
    const call = callWithProgress(client, "request_approval", request("agent.abandoned"));
    const id = await call.progressMatching(/pending/);
    await client.close();
    const final = await sdk(pki.requester).getHandle(id).waitForDecision({ timeoutMs: 30_000 });
    expect(final.state).toBe(State.CANCELLED);
    expect(final.reason).toBe("countersign mcp stopped (the client closed stdin)");
  });

  it("keeps a long call alive past the client's idle timeout with periodic progress", async () => {
    const { client } = await startMcp(["--progress-interval", "100ms"]);
    const call = callWithProgress(client, "request_approval", request("agent.slow"), {
      timeout: 2_000,
      resetTimeoutOnProgress: true,
    });
    const id = await call.progressMatching(/pending/);
    // 25 notifications at least 100 ms apart: the call has outlived the client's 2 s timeout.
    await waitFor(() => call.progress.length >= 25, 30_000, "25 progress notifications");
    expect(call.progress.map((p) => p.progress)).toEqual(call.progress.map((_, i) => i + 1));
    await sdk(pki.decider).approvals.submitDecision({ id, approver: "alice", decision: Decision.APPROVE });
    expect(structured(await call.result).state).toBe("approved");
  });

  it("resumes the wait after the connection to Countersign drops", async () => {
    const proxy = await createTcpProxy({ target: new URL(ts.server.connectUrl).host });
    cleanups.push(() => proxy.close());
    const { client } = await startMcp([], mcpEnv({ COUNTERSIGN_URL: `https://${proxy.address}` }));
    const call = callWithProgress(client, "request_approval", request("agent.resumed"));
    const id = await call.progressMatching(/pending/);
    proxy.dropConnections();
    await call.progressMatching(/connection lost .*; reconnecting in \d+ ms/);
    await sdk(pki.decider).approvals.submitDecision({ id, approver: "alice", decision: Decision.APPROVE });
    const result = await call.result;
    expect(structured(result)).toMatchObject({ id, state: "approved", decided_by: "alice" });
  });

  it("answers bad input with a tool error naming the field, and keeps running", async () => {
    const { client } = await startMcp();
    const call = async (name: string, args: Record<string, unknown>) =>
      (await client.callTool({ name, arguments: args })) as CallToolResult;

    const { action: _omitted, ...noAction } = request("agent.x");
    const missing = await call("request_approval", noAction);
    expect(missing.isError).toBe(true);
    expect(text(missing)).toMatch(/expected string, received undefined at action/);

    const notObject = await call("request_approval", request("agent.x", { params: ["a", "b"] }));
    expect(notObject.isError).toBe(true);
    expect(text(notObject)).toMatch(/expected record, received array at params/);

    const unknownKey = await call("request_approval", request("agent.x", { timeout: 5 }));
    expect(unknownKey.isError).toBe(true);
    expect(text(unknownKey)).toContain('Unrecognized key: "timeout"');

    const invalid = await call("request_approval", request("bad action!", { wait: false }));
    expect(invalid.isError).toBe(true);
    expect(text(invalid)).toMatch(/^the request is invalid:\n {2}action: /);

    for (const [name, args] of [
      ["get_approval", {}],
      ["wait_for_approval", { timeout_seconds: 5 }],
      ["cancel_approval", { reason: "x" }],
    ] as const) {
      const unknown = await call(name, { id: "01NOSUCHAPPROVAL", ...args });
      expect(unknown.isError).toBe(true);
      expect(text(unknown)).toContain("01NOSUCHAPPROVAL");
      expect(text(unknown)).toBe("approval 01NOSUCHAPPROVAL does not exist");
    }

    const ok = await call("request_approval", request("agent.after-errors", { wait: false }));
    expect(ok.isError).toBeFalsy();
    expect(structured(ok).state).toBe("pending");
  });

  it("gives a tool error naming the URL at once when Countersign cannot be reached", async () => {
    const { client } = await startMcp([], mcpEnv({ COUNTERSIGN_URL: "https://127.0.0.1:1" }));
    for (const [name, args] of [
      ["request_approval", request("agent.unreachable")],
      ["wait_for_approval", { id: "01ABC", timeout_seconds: 600 }],
      ["get_approval", { id: "01ABC" }],
    ] as const) {
      const started = Date.now();
      const result = (await client.callTool({ name, arguments: args }, undefined, {
        timeout: 20_000,
      })) as CallToolResult;
      expect(result.isError).toBe(true);
      expect(text(result)).toContain("cannot reach https://127.0.0.1:1");
      expect(Date.now() - started).toBeLessThan(15_000);
    }
  });
});

describe("countersign mcp --http-listen", { timeout: 120_000 }, () => {
  /** Every HTTP child started, so none outlives the tests. */
  const children = new Set<ChildProcess>();
  afterAll(() => {
    for (const child of children) child.kill("SIGKILL");
  });

  function spawnMcp(args: string[]) {
    const child = spawn(process.execPath, ["--import", "tsx", entry, "mcp", ...args], {
      env: mcpEnv(),
      cwd: root,
      stdio: ["ignore", "ignore", "pipe"],
    });
    children.add(child);
    const exit = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
    return { child, stderr: textOf(child.stderr), exit };
  }

  it("serves the same tools over Streamable HTTP on loopback", async () => {
    const server = spawnMcp(["--http-listen", "127.0.0.1:0"]);
    const [, url] = await server.stderr.match(/serving the approval tools at (http:\/\/\S+\/mcp)/);
    const client = new Client({ name: "countersign-mcp-http-test", version: "1.0.0" });
    await client.connect(new StreamableHTTPClientTransport(new URL(url as string)));
    cleanups.push(() => client.close());

    const { tools } = await client.listTools();
    expect(tools.map((t) => t.name)).toContain("request_approval");
    const call = callWithProgress(client, "request_approval", request("agent.http"));
    const id = await call.progressMatching(/pending: 0\/1 approvals/);
    await sdk(pki.decider).approvals.submitDecision({
      id,
      approver: "alice",
      decision: Decision.APPROVE,
      reason: "ok",
    });
    const result = await call.result;
    expect(structured(result)).toMatchObject({ id, state: "approved", approved: true, decided_by: "alice" });
    expect(text(result)).toMatch(/^APPROVED: /);

    // Another Host header (a DNS rebinding page) is refused.
    const rebound = await new Promise<number | undefined>((resolve, reject) => {
      const req = httpRequest(
        url as string,
        { method: "POST", headers: { host: "attacker.example", "content-type": "application/json" } },
        (res) => {
          res.resume();
          resolve(res.statusCode);
        },
      );
      req.on("error", reject);
      req.end("{}");
    });
    expect(rebound).toBe(403);

    server.child.kill("SIGTERM");
    expect(await server.exit).toBe(0);
  });

  it("refuses a non-loopback address", async () => {
    const server = spawnMcp(["--http-listen", "0.0.0.0:0"]);
    expect(await server.exit).toBe(1);
    expect(server.stderr.text()).toContain("--http-listen 0.0.0.0: the MCP endpoint has no authentication");
  });
});
