import { mkdirSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { createAuditLog } from "./audit-log.js";

/** Resolves when `condition` holds, checking on every turn of the event loop (bounded). */
async function until(condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

describe("createAuditLog when the destination cannot be written", () => {
  it("reports why, keeps at most maxBacklog lines, drops the rest unsealed, and closes", async () => {
    // A directory where the file should be: every open fails with EISDIR.
    const path = join(mkdtempSync(join(tmpdir(), "countersign-audit-unit-")), "audit.jsonl");
    mkdirSync(path);
    const errors: string[] = [];
    let dropped = 0;
    const log = createAuditLog({
      destination: path,
      maxBacklog: 5,
      retryMs: 60_000,
      onError: (err) => errors.push(err.message),
      onDropped: () => dropped++,
    });
    await expect(log.ready()).rejects.toThrow(/EISDIR/);
    await until(() => log.unavailableReason() !== undefined, "the failure");
    expect(log.unavailableReason()).toMatch(/^EISDIR: illegal operation on a directory/);

    for (let i = 0; i < 10; i++) log.security("bad_admin_token", { reason: `attempt ${i}` });
    // audit_started and 4 more wait; 6 are dropped without taking a seq, so the chain has no gap.
    expect(log.seq).toBe(5);
    expect(dropped).toBe(6);
    await log.close();
    expect(errors.every((e) => e.startsWith("EISDIR"))).toBe(true);
  });
});
