import { execFileSync } from "node:child_process";
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Decision, State } from "../gen/countersign/v1/approval_pb.js";
import { verifyAuditFiles } from "../server/audit/audit-verify.js";
import { parsePrometheusText } from "../server/telemetry/prometheus-text.js";
import { pollUntil } from "./support/redis.js";
import { startTestServer, type TestServer } from "./support/test-server.js";

/**
 * A full audit disk, for real: the audit file lives on a 64 KiB tmpfs (the tests run as root), which a
 * filler file then fills to ENOSPC.
 */
describe("the audit disk fills up", () => {
  let mountDir: string;
  let ts: TestServer;
  const filler = () => join(mountDir, "filler");

  beforeAll(async () => {
    mountDir = mkdtempSync(join(tmpdir(), "countersign-audit-tmpfs-"));
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", mountDir]);
    ts = await startTestServer({ flags: { auditFile: join(mountDir, "audit.jsonl") } });
  });

  afterAll(async () => {
    await ts?.close();
    execFileSync("umount", [mountDir]);
    rmSync(mountDir, { recursive: true, force: true });
  });

  /** Writes to the filler file until the file system answers ENOSPC. */
  function fillDisk(): void {
    const fd = openSync(filler(), "a");
    const block = Buffer.alloc(4096, 120);
    try {
      for (let i = 0; i < 1000; i++) writeSync(fd, block);
      throw new Error("the tmpfs never filled up");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOSPC") throw err;
    } finally {
      closeSync(fd);
    }
  }

  const readyz = async () => {
    const res = await fetch(`${ts.server.opsUrl}/readyz`);
    return { status: res.status, body: (await res.json()) as { checks: Record<string, string> } };
  };
  const metric = async (name: string) =>
    parsePrometheusText(await (await fetch(`${ts.server.opsUrl}/metrics`)).text()).samples.find(
      (s) => s.name === name,
    )?.value;

  async function refusal(call: Promise<unknown>): Promise<ConnectError> {
    const err = await call.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ConnectError);
    return err as ConnectError;
  }

  it("refuses state changes with UNAVAILABLE, turns unready, says why in metrics, and recovers", async () => {
    const grpc = ts.clients(undefined, "grpc").approvals;
    const connect = ts.clients(undefined, "connect").approvals;
    const before = await grpc.createApproval({ action: "deploy.staging", title: "before the disk filled" });
    expect(await metric("countersign_audit_healthy")).toBe(1);

    fillDisk();
    // Changes are accepted until a write fails (the file's last page may still have room): their lines
    // wait in memory until they can be written. Then every state change is refused.
    const accepted: string[] = [];
    let refused: ConnectError | undefined;
    for (let i = 0; i < 100 && refused === undefined; i++) {
      try {
        const created = await connect.createApproval({ action: "deploy.staging", title: `filling ${i}` });
        accepted.push(created.approval?.id ?? "");
      } catch (err) {
        refused = err as ConnectError;
      }
    }
    expect(refused?.code).toBe(Code.Unavailable);
    expect(accepted.length).toBeGreaterThan(0);
    await pollUntil(async () => (await readyz()).status === 503, 10_000, "/readyz 503");
    expect((await readyz()).body.checks.audit).toMatch(
      /^audit log unavailable: ENOSPC: no space left on device/,
    );
    expect(await metric("countersign_audit_healthy")).toBe(0);
    expect(await metric("countersign_audit_write_failures_total")).toBeGreaterThanOrEqual(1);

    const id = before.approval?.id ?? "";
    for (const [client, call] of [
      [grpc, "create"],
      [connect, "vote"],
      [grpc, "cancel"],
    ] as const) {
      const err = await refusal(
        call === "create"
          ? client.createApproval({ action: "deploy.staging", title: "while the disk is full" })
          : call === "vote"
            ? client.submitDecision({ id, approver: "U1", decision: Decision.APPROVE })
            : client.cancelApproval({ id, reason: "no" }),
      );
      expect(err.code, call).toBe(Code.Unavailable);
      expect(err.rawMessage, call).toMatch(/^audit log unavailable: ENOSPC: no space left on device/);
    }
    // Reads still work, and nothing changed.
    expect((await grpc.getApproval({ id })).approval?.state).toBe(State.PENDING);

    rmSync(filler());
    await pollUntil(async () => (await readyz()).status === 200, 10_000, "/readyz 200 once space returned");
    expect(await metric("countersign_audit_healthy")).toBe(1);
    const decided = await connect.submitDecision({ id, approver: "U1", decision: Decision.APPROVE });
    expect(decided.approval?.state).toBe(State.APPROVED);

    await ts.close();
    // Every line, including the one queued while the disk was full, is in one intact chain.
    const report = await verifyAuditFiles([ts.auditPath]);
    expect(report.ok).toBe(true);
    const lines = readFileSync(ts.auditPath, "utf8");
    for (const acceptedId of accepted) expect(lines).toContain(`"approval_id":"${acceptedId}"`);
    expect(lines.match(/"type":"created"/g)).toHaveLength(1 + accepted.length);
    expect(lines).toContain('"type":"decided"');
  }, 60_000);
});
