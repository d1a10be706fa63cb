import { createReadStream } from "node:fs";
import { createInterface } from "node:readline";
import type { Approval } from "../domain/types.js";
import type { ApprovalStore } from "../store/approval-store.js";
import { parseArchiveLine } from "./archive-record.js";

const window = 64;

/** What `importArchives` did. */
export interface ImportReport {
  /** Lines read (blank lines not counted). */
  lines: number;
  /** Approvals stored (new, or newer than the stored version). */
  restored: number;
  /** Approvals already stored at that version or a newer one. */
  unchanged: number;
  /** Lines (or files) that could not be imported, with where and why. */
  problems: { file: string; line: number; message: string }[];
}

/**
 * Re-imports archived approvals into the store so `GetApproval` / `ListApprovals` answer for them again.
 * Idempotent: importing the same files twice changes nothing. A bad line is reported and skipped; the
 * other lines are still imported.
 */
export async function importArchives(store: ApprovalStore, files: string[]): Promise<ImportReport> {
  const report: ImportReport = { lines: 0, restored: 0, unchanged: 0, problems: [] };
  /** Restores in flight: a window, so an import is not one round trip per line end to end. */
  const inFlight = new Set<Promise<void>>();
  /** The first store error: the import stops there (the store is down; run it again later). */
  let failure: { err: unknown } | undefined;
  const restore = async (approval: Approval) => {
    try {
      if (await store.restore(approval)) report.restored++;
      else report.unchanged++;
    } catch (err) {
      failure ??= { err };
    }
  };
  for (const file of files) {
    const lines = createInterface({ input: createReadStream(file), crlfDelay: Number.POSITIVE_INFINITY });
    let number = 0;
    try {
      for await (const line of lines) {
        number++;
        if (line.trim() === "") continue;
        report.lines++;
        const parsed = parseArchiveLine(line);
        if ("problem" in parsed) {
          report.problems.push({ file, line: number, message: parsed.problem });
          continue;
        }
        const pending = restore(parsed.approval).finally(() => inFlight.delete(pending));
        inFlight.add(pending);
        if (inFlight.size >= window) await Promise.race(inFlight);
        if (failure !== undefined) break;
      }
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === undefined) throw err;
      report.problems.push({ file, line: number, message: `cannot read the file: ${code}` });
    } finally {
      lines.close();
    }
    await Promise.all(inFlight);
    if (failure !== undefined) throw failure.err;
  }
  return report;
}
