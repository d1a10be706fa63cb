import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Decision, State } from "../gen/countersign/v1/approval_pb.js";
import { exportAuditEvents } from "../server/audit/audit-export.js";
import { createAuditLog } from "../server/audit/audit-log.js";
import { type AuditLine, chainHash, parseAuditLine } from "../server/audit/audit-record.js";
import { verifyAuditFiles } from "../server/audit/audit-verify.js";
import { createManualClock } from "../server/domain/clock.js";
import { canonicalJson } from "../server/domain/hashing.js";
import type { Approval, JsonObject } from "../server/domain/types.js";
import { createStaticPolicyHolder } from "../server/policy/policy-holder.js";
import type { ApprovalEvent } from "../server/services/approval-events.js";
import { createApprovalOperations } from "../server/services/approval-operations.js";
import { createMemoryApprovalStore } from "../server/store/memory-approval-store.js";
import { createTestPki, type TestPki, testIdentities } from "./support/certs.js";
import { startTestServer, type TestServer } from "./support/test-server.js";

const run = promisify(execFile);
const cli = ["--import", "tsx", join(import.meta.dirname, "../clients/cli/countersign.ts")];
const adminToken = "audit-test-admin-token-0123456789";
const secretValue = "hunter2-SECRET-VALUE";

const policy = `
version: 1
defaults: { channel: C0DEFAULT, timeout: 10m, unknown_action: deny, super_approvers: [UADMIN] }
policies:
  - name: secret-rotation
    match: "secrets.rotate"
    approvers: { users: [U1, U2] }
    redaction: { mode: allowlist, keys: [secret_name] }
    overrides: { keys: [grace, secret_name], max_keys: 1, max_diff_bytes: 64 }
  - name: deploy
    match: "deploy.*"
    approvers: { users: [U1, U2] }
    timeout: 60s
`;

const lines = (file: string): AuditLine[] =>
  readFileSync(file, "utf8")
    .split("\n")
    .flatMap((text) => {
      const line = parseAuditLine(text);
      return line === undefined ? [] : [line];
    });

async function refusal(call: Promise<unknown>): Promise<ConnectError> {
  const err = await call.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ConnectError);
  return err as ConnectError;
}

describe("audit log of a real server", () => {
  let pki: TestPki;
  let ts: TestServer;
  let audit: AuditLine[];
  const clock = createManualClock(Date.now());
  const ids: Record<string, string> = {};

  beforeAll(async () => {
    pki = createTestPki();
    ts = await startTestServer({
      pki,
      policy,
      clock,
      flags: { deciders: testIdentities.decider, requesters: testIdentities.requester },
      env: { ADMIN_TOKEN: adminToken },
    });
    const requester = ts.clients(pki.requester, "grpc").approvals;
    const decider = ts.clients(pki.decider, "connect").approvals;
    const stranger = ts.clients(pki.stranger, "grpc-web").approvals;
    const admin = ts.clients(pki.requester, "grpc", {
      headers: { authorization: `Bearer ${adminToken}` },
    }).admin;
    const badAdmin = ts.clients(pki.requester, "connect", {
      headers: { authorization: "Bearer wrong" },
    }).admin;

    // A secret rotation: a rejected edit, an applied edit of a hidden param, approved.
    const secret = await requester.createApproval({
      action: "secrets.rotate",
      title: "Rotate the db password",
      params: { secret_name: "db", token_value: secretValue, grace: 5 },
    });
    ids.secret = secret.approval?.id ?? "";
    await refusal(
      decider.submitDecision({
        id: ids.secret,
        approver: "U1",
        decision: Decision.APPROVE,
        editedParams: { secret_name: "db", token_value: "changed", grace: 5 },
      }),
    );
    const approved = await decider.submitDecision({
      id: ids.secret,
      approver: "U1",
      decision: Decision.APPROVE,
      reason: "rotated on schedule",
      editedParams: { secret_name: "db", token_value: secretValue, grace: 10 },
    });
    expect(approved.approval?.state).toBe(State.APPROVED);
    // Refused: a vote on a finished approval.
    await refusal(decider.submitDecision({ id: ids.secret, approver: "U2", decision: Decision.DENY }));

    // Unauthorized: not an approver (seen by the application layer), and no decider role (transport).
    const deploy = await requester.createApproval({
      action: "deploy.api",
      title: "Deploy",
      params: { v: 1 },
    });
    ids.deploy = deploy.approval?.id ?? "";
    await refusal(decider.submitDecision({ id: ids.deploy, approver: "UNOT", decision: Decision.APPROVE }));
    await refusal(stranger.submitDecision({ id: ids.deploy, approver: "U1", decision: Decision.APPROVE }));
    // A bad admin token, then an admin's break-glass deny.
    await refusal(badAdmin.getPolicies({}));
    await admin.resolveApproval({ id: ids.deploy, decision: Decision.DENY, reason: "incident freeze" });

    // Cancelled by its requester; denied at once for want of a policy.
    const cancelled = await requester.createApproval({ action: "deploy.web", title: "Deploy web" });
    ids.cancelled = cancelled.approval?.id ?? "";
    await requester.cancelApproval({ id: ids.cancelled, reason: "not needed" });
    const unknown = await requester.createApproval({ action: "launch.rocket", title: "Launch" });
    ids.unknown = unknown.approval?.id ?? "";

    // Expired: the scheduler expires it once the (manual) clock passes the deadline.
    const expiring = await requester.createApproval({ action: "deploy.db", title: "Deploy db" });
    ids.expired = expiring.approval?.id ?? "";
    const expired = new Promise<void>((resolve) => {
      const stop = ts.server.store.subscribe(ids.expired as string, (a) => {
        if (a.state === "expired") {
          stop();
          resolve();
        }
      });
    });
    clock.advance(61_000);
    await expired;

    // Policy reloads: a bad file is rejected, the good one again is unchanged.
    const good = readFileSync(ts.policyPath, "utf8");
    writeFileSync(ts.policyPath, "version: 1\npolicies: [{ name: x }]\n");
    await ts.server.reloadPolicies();
    writeFileSync(ts.policyPath, good);
    await ts.server.reloadPolicies();

    await ts.close();
    audit = lines(ts.auditPath);
  }, 120_000);

  afterAll(async () => {
    await ts?.close().catch(() => undefined);
  });

  it("writes one intact hash chain, from audit_started to audit_stopped", async () => {
    const report = await verifyAuditFiles([ts.auditPath]);
    expect(report.ok).toBe(true);
    expect(report.chains).toHaveLength(1);
    expect(report.chains[0]).toMatchObject({ lines: audit.length, lastSeq: audit.length, closed: true });
    expect(audit[0]?.type).toBe("audit_started");
    expect(audit.at(-1)?.type).toBe("audit_stopped");
    expect(audit.map((l) => l.seq)).toEqual(audit.map((_, i) => i + 1));
  });

  it("records every kind of event, in order, each approval event with its policy and params hashes", () => {
    const summary = audit.map((l) => [l.type, l.approval_id ?? "", l.outcome ?? ""]);
    expect(summary).toEqual([
      ["audit_started", "", ""],
      ["policy_reloaded", "", "applied"],
      ["created", ids.secret, ""],
      ["edit_rejected", ids.secret, ""],
      ["vote", ids.secret, ""],
      ["edit_applied", ids.secret, ""],
      ["decided", ids.secret, "approved"],
      ["refused", ids.secret, ""],
      ["created", ids.deploy, ""],
      ["unauthorized", ids.deploy, ""],
      ["unauthorized", ids.deploy, ""],
      ["security", "", ""],
      ["admin_resolved", ids.deploy, "denied"],
      ["created", ids.cancelled, ""],
      ["cancelled", ids.cancelled, "cancelled"],
      ["created", ids.unknown, ""],
      ["decided", ids.unknown, "denied"],
      ["created", ids.expired, ""],
      ["expired", ids.expired, "expired"],
      ["policy_reload_failed", "", ""],
      ["policy_reloaded", "", "unchanged"],
      ["audit_stopped", "", ""],
    ]);
    const policySha = audit[1]?.policy_sha256;
    expect(policySha).toMatch(/^[0-9a-f]{64}$/);
    for (const line of audit.filter((l) => l.approval_id !== undefined && l.type !== "unauthorized")) {
      expect(line.policy_sha256, line.type).toBe(policySha);
      expect(line.params_sha256, line.type).toMatch(/^[0-9a-f]{64}$/);
      expect(line.action, line.type).toBeTypeOf("string");
      expect(line.actor, line.type).toBeTypeOf("string");
    }
  });

  it("names the actor and the decision details", () => {
    const find = (type: string, id?: string) =>
      audit.find((l) => l.type === type && (id === undefined || l.approval_id === id));
    expect(find("created", ids.secret)).toMatchObject({
      actor: testIdentities.requester,
      policy: "secret-rotation",
    });
    expect(find("vote", ids.secret)).toMatchObject({
      actor: "U1",
      decision: "approve",
      reason: "rotated on schedule",
      submitted_by: testIdentities.decider,
    });
    expect(find("decided", ids.secret)).toMatchObject({ decided_by: "U1", approvals: ["U1"], denials: [] });
    expect(find("edit_rejected")?.violations).toEqual([
      { field: "edited_params.token_value", description: "may not be edited (allowed: grace, secret_name)" },
    ]);
    expect(find("refused")).toMatchObject({ actor: "U2", operation: "vote" });
    expect(find("admin_resolved")).toMatchObject({ admin_override: true, reason: "incident freeze" });
    expect(find("expired")).toMatchObject({ actor: "system", outcome: "expired" });
    expect(find("decided", ids.unknown)).toMatchObject({ policy: "unknown-action", decided_by: "policy" });
    expect(find("security")).toMatchObject({ event: "bad_admin_token", reason: "invalid admin token" });
    expect(find("policy_reload_failed")?.problems).toEqual(expect.arrayContaining([expect.any(Object)]));
  });

  it("records each unauthorized attempt once, from where it was refused", () => {
    const unauthorized = audit.filter((l) => l.type === "unauthorized");
    expect(unauthorized).toHaveLength(2);
    // Seen by the application layer: the approver is not allowed, with the approval's hashes.
    expect(unauthorized[0]).toMatchObject({
      actor: "UNOT",
      operation: "vote",
      message: "UNOT is not an approver of this action",
    });
    expect(unauthorized[0]?.params_sha256).toMatch(/^[0-9a-f]{64}$/);
    // Refused by the role check before any approval was read.
    expect(unauthorized[1]).toMatchObject({
      caller: testIdentities.stranger,
      actor: "U1",
      rpc: "countersign.v1.ApprovalService/SubmitDecision",
      message: `identity "${testIdentities.stranger}" does not have the decider role`,
    });
  });

  it("never writes secrets or params the policy hides", () => {
    const text = readFileSync(ts.auditPath, "utf8");
    expect(text).not.toContain(secretValue);
    expect(text).not.toContain(adminToken);
    expect(text).not.toContain('token_value":');
    expect(audit.find((l) => l.type === "edit_applied")?.changes).toEqual([{ key: "grace", redacted: true }]);
  });

  it("exports by time window, action and outcome", async () => {
    const exported = async (filter: Parameters<typeof exportAuditEvents>[1]) => {
      const out: AuditLine[] = [];
      await exportAuditEvents([ts.auditPath], filter, (line) => out.push(JSON.parse(line) as AuditLine));
      return out;
    };
    const denied = await exported({ outcomes: ["denied"] });
    expect(new Set(denied.map((l) => l.approval_id))).toEqual(new Set([ids.deploy, ids.unknown]));
    expect(denied.filter((l) => l.approval_id === ids.deploy).map((l) => l.type)).toEqual([
      "created",
      "unauthorized",
      "unauthorized",
      "admin_resolved",
    ]);
    // The transport's unauthorized line names no action: it was refused before the approval was read.
    const deployDenied = await exported({ outcomes: ["denied"], actions: ["deploy.*"] });
    expect(deployDenied.map((l) => [l.approval_id, l.type])).toEqual([
      [ids.deploy, "created"],
      [ids.deploy, "unauthorized"],
      [ids.deploy, "admin_resolved"],
    ]);
    const expiredAt = Date.parse(audit.find((l) => l.type === "expired")?.time ?? "");
    const late = await exported({ since: expiredAt });
    expect(late.map((l) => l.type)).toEqual([
      "expired",
      "policy_reload_failed",
      "policy_reloaded",
      "audit_stopped",
    ]);
    expect((await exported({ until: expiredAt, types: ["expired"] })).length).toBe(0);
  });

  it("`countersign audit verify` and `audit export` work from the command line", async () => {
    const ok = await run(process.execPath, [...cli, "audit", "verify", ts.auditPath]);
    expect(ok.stdout).toContain(`events, intact (closed), UNKEYED`);
    expect(ok.stdout).toContain("1 chain(s), 0 broken, 0 problem(s), 0 other line(s) ignored: OK");

    const dir = mkdtempSync(join(tmpdir(), "countersign-audit-cli-"));
    const tampered = join(dir, "tampered.log");
    const text = readFileSync(ts.auditPath, "utf8").replace(
      '"reason":"incident freeze"',
      '"reason":"routine"',
    );
    writeFileSync(tampered, text);
    const seq = audit.find((l) => l.type === "admin_resolved")?.seq;
    const broken = await run(process.execPath, [...cli, "audit", "verify", tampered]).catch(
      (err: { code: number; stdout: string }) => err,
    );
    expect("code" in broken && broken.code).toBe(1);
    expect(broken.stdout).toContain(`BROKEN at seq ${seq}: seq ${seq} was changed`);

    const exported = await run(process.execPath, [
      ...cli,
      "audit",
      "export",
      ts.auditPath,
      "--outcome",
      "cancelled",
      "--type",
      "cancelled",
    ]);
    const out = exported.stdout.trim().split("\n");
    expect(out).toHaveLength(1);
    expect(JSON.parse(out[0] as string)).toMatchObject({ type: "cancelled", approval_id: ids.cancelled });
    expect(exported.stderr).toContain(`exported 1 of ${audit.length} audit events`);

    const bad = await run(process.execPath, [
      ...cli,
      "audit",
      "export",
      ts.auditPath,
      "--outcome",
      "maybe",
    ]).catch((err: { code: number; stderr: string }) => err);
    expect("code" in bad && bad.code).toBe(1);
    expect(bad.stderr).toContain("--outcome maybe: expected one of approved, denied, expired, cancelled");
  });
});

/** Real approval events from the application layer, to feed the writer directly. */
async function sampleEvents(): Promise<{ created: ApprovalEvent; approval: Approval }> {
  const events: ApprovalEvent[] = [];
  const operations = createApprovalOperations({
    store: createMemoryApprovalStore(),
    policies: createStaticPolicyHolder(policy),
    clock: createManualClock(),
    listeners: [(e) => events.push(e)],
  });
  const { approval } = await operations.create(
    {
      action: "deploy.api",
      title: "Deploy",
      justification: "",
      params: { v: 1 },
      origin: { repo: "", branch: "", pullRequest: "", runId: "", links: [] },
      onBehalfOf: "",
      idempotencyKey: "",
      overrides: {},
      rerequestOf: "",
    },
    "ci",
  );
  return { created: events[0] as ApprovalEvent, approval };
}

/** Writes a chain of `count` vote events (plus start and stop) to a new file; returns its path. */
async function writeChain(count: number, chainId?: string): Promise<string> {
  const { approval } = await sampleEvents();
  const file = join(mkdtempSync(join(tmpdir(), "countersign-audit-")), "audit.jsonl");
  const log = createAuditLog({ destination: file, ...(chainId === undefined ? {} : { chainId }) });
  await log.ready();
  for (let i = 0; i < count; i++) {
    log.listener({
      type: "vote",
      approval,
      vote: {
        approver: `U${i % 7}`,
        decision: "acknowledge",
        reason: `vote ${i}`,
        time: 0,
        stage: "",
        submittedBy: "gateway",
        interactionId: `click-${i}`,
      },
    });
  }
  await log.close();
  return file;
}

describe("audit chain verification", () => {
  it("verifies a chain of 100 000 events", async () => {
    const file = await writeChain(100_000);
    const started = performance.now();
    const report = await verifyAuditFiles([file]);
    const seconds = (performance.now() - started) / 1000;
    expect(report.ok).toBe(true);
    expect(report.chains).toEqual([
      expect.objectContaining({ lines: 100_002, lastSeq: 100_002, closed: true }),
    ]);
    expect(report.chains[0]?.break).toBeUndefined();
    console.info(`verified 100 002 audit lines in ${seconds.toFixed(2)} s`);
  }, 120_000);

  describe("catches every kind of tampering at the right seq", () => {
    let original: string[];
    let dir: string;

    beforeAll(async () => {
      original = readFileSync(await writeChain(20, "CHAIN-A"), "utf8")
        .trimEnd()
        .split("\n");
      dir = mkdtempSync(join(tmpdir(), "countersign-tamper-"));
    });

    /** Verifies the lines after `change`, and returns the chain's break. */
    async function breakAfter(change: (lines: string[]) => string[]) {
      const file = join(dir, `t${Math.random()}.log`);
      writeFileSync(file, `${change([...original]).join("\n")}\n`);
      const report = await verifyAuditFiles([file]);
      expect(report.ok).toBe(false);
      return report.chains.find((c) => c.chain === "CHAIN-A")?.break;
    }
    /** Line `seq` (1-based) parsed, and the line text at that seq. */
    const at = (lines: string[], seq: number) => JSON.parse(lines[seq - 1] as string) as JsonObject;

    it("a changed line", async () => {
      const found = await breakAfter((l) => {
        l[6] = (l[6] as string).replace('"vote 5"', '"vote five"');
        return l;
      });
      expect(found).toMatchObject({
        seq: 7,
        problem: "seq 7 was changed: its content does not match its hash",
      });
    });

    it("a changed line whose hash was recomputed", async () => {
      const found = await breakAfter((l) => {
        const { hash: _, ...body }: JsonObject = { ...at(l, 7), reason: "forged" };
        const hash = chainHash(body.prev_hash as string, canonicalJson(body));
        l[6] = JSON.stringify({ ...body, hash });
        return l;
      });
      expect(found?.seq).toBe(7);
      expect(found?.problem).toContain("prev_hash of seq 8 does not match the hash of seq 7");
    });

    it("a changed seq", async () => {
      const found = await breakAfter((l) => {
        l[9] = JSON.stringify({ ...at(l, 10), seq: 11 });
        return l;
      });
      expect(found).toMatchObject({ seq: 10 });
    });

    it("a removed line", async () => {
      const found = await breakAfter((l) => l.filter((_, i) => i !== 11));
      expect(found).toMatchObject({
        seq: 12,
        problem: "seq 12 is missing (removed, or moved): found seq 13",
      });
    });

    it("the first lines removed", async () => {
      const found = await breakAfter((l) => l.slice(3));
      expect(found).toMatchObject({ seq: 1, problem: "the chain starts at seq 4: seq 1 to 3 are missing" });
    });

    it("reordered lines", async () => {
      const found = await breakAfter((l) => {
        [l[4], l[5]] = [l[5] as string, l[4] as string];
        return l;
      });
      expect(found).toMatchObject({ seq: 5 });
    });

    it("a line moved back", async () => {
      const found = await breakAfter((l) => [...l.slice(0, 15), l[2] as string, ...l.slice(15)]);
      expect(found).toMatchObject({
        seq: 3,
        problem: "seq 3 appears again after seq 15 (lines out of order)",
      });
    });

    it("a duplicated line", async () => {
      const found = await breakAfter((l) => [...l.slice(0, 9), l[8] as string, ...l.slice(9)]);
      expect(found).toMatchObject({ seq: 9, problem: "seq 9 appears twice (a duplicated line)" });
    });

    it("a line broken into invalid JSON", async () => {
      const found = await breakAfter((l) => {
        l[13] = (l[13] as string).slice(0, -5);
        return l;
      });
      expect(found).toMatchObject({ seq: 14, problem: "seq 14 is not valid JSON (the line was changed)" });
    });

    it("finds each chain among other log lines and other chains, and blames only the broken one", async () => {
      const other = readFileSync(await writeChain(5, "CHAIN-B"), "utf8")
        .trimEnd()
        .split("\n");
      const mixed = join(dir, "mixed.log");
      const interleaved: string[] = [];
      for (let i = 0; i < original.length; i++) {
        interleaved.push(`{"level":30,"msg":"request ${i}"}`, "plain text", original[i] as string);
        if (other[i] !== undefined) interleaved.push(`2026-01-01T00:00:00Z stdout F ${other[i]}`);
      }
      interleaved.splice(interleaved.indexOf(original[17] as string), 1);
      writeFileSync(mixed, `${interleaved.join("\n")}\n`);
      const report = await verifyAuditFiles([mixed]);
      expect(report.otherLines).toBe(2 * original.length);
      expect(report.chains).toEqual([
        expect.objectContaining({ chain: "CHAIN-A", lines: 21, break: expect.objectContaining({ seq: 18 }) }),
        expect.objectContaining({ chain: "CHAIN-B", lines: 7, closed: true }),
      ]);
      expect(report.chains[1]?.break).toBeUndefined();
      expect(report.ok).toBe(false);
    });

    it("reads rotated files in order as one log", async () => {
      const first = join(dir, "audit.1");
      const second = join(dir, "audit.2");
      writeFileSync(first, `${original.slice(0, 10).join("\n")}\n`);
      writeFileSync(second, `${original.slice(10).join("\n")}\n`);
      expect((await verifyAuditFiles([first, second])).ok).toBe(true);
      const swapped = await verifyAuditFiles([second, first]);
      expect(swapped.chains[0]?.break).toMatchObject({ seq: 1 });
    });
  });
});
