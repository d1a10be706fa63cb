import { compileActionGlob } from "../policy/policy-match.js";
import type { AuditOutcome } from "./audit-record.js";
import { parseAuditLine } from "./audit-record.js";
import { readLines } from "./audit-verify.js";

/** The outcomes `--outcome` accepts. */
export const auditOutcomes: readonly AuditOutcome[] = ["approved", "denied", "expired", "cancelled"];

/** What `exportAuditEvents` selects; every given filter must match. */
export interface AuditExportFilter {
  /** Lines at or after this time (epoch ms). */
  since?: number;
  /** Lines before this time (epoch ms). */
  until?: number;
  /** Action globs, as in policy `match`; a line matches one of them. Lines without an action never match. */
  actions?: readonly string[];
  /**
   * Only approvals that ended with one of these outcomes: every line of such an approval (its whole
   * history) within the time window.
   */
  outcomes?: readonly AuditOutcome[];
  /** Only these event types. */
  types?: readonly string[];
}

/** Counts of an export. */
export interface AuditExportResult {
  /** Audit lines read. */
  scanned: number;
  /** Lines written. */
  exported: number;
}

/**
 * Writes the audit lines of the files that match the filter, unchanged (JSON lines), in log order. With
 * `outcomes` the files are read twice: once to find the approvals that ended that way, once to export.
 * @throws the file system error of a file that cannot be read
 */
export async function exportAuditEvents(
  files: readonly string[],
  filter: AuditExportFilter,
  write: (line: string) => void,
): Promise<AuditExportResult> {
  const actionMatchers = filter.actions?.map((glob) => compileActionGlob(glob));
  const types = filter.types === undefined ? undefined : new Set(filter.types);
  let approvals: Set<string> | undefined;
  if (filter.outcomes !== undefined) {
    const outcomes = new Set<string>(filter.outcomes);
    const found = new Set<string>();
    await readLines(files, (text) => {
      const line = parseAuditLine(text);
      if (line?.approval_id !== undefined && line.outcome !== undefined && outcomes.has(line.outcome))
        found.add(line.approval_id);
    });
    approvals = found;
  }
  const result: AuditExportResult = { scanned: 0, exported: 0 };
  await readLines(files, (text) => {
    const line = parseAuditLine(text);
    if (line === undefined) return;
    result.scanned++;
    if (filter.since !== undefined || filter.until !== undefined) {
      const time = Date.parse(line.time);
      if (Number.isNaN(time)) return;
      if (filter.since !== undefined && time < filter.since) return;
      if (filter.until !== undefined && time >= filter.until) return;
    }
    if (types !== undefined && !types.has(line.type)) return;
    if (actionMatchers !== undefined) {
      const action = line.action;
      if (action === undefined || !actionMatchers.some((m) => m(action))) return;
    }
    if (approvals !== undefined && (line.approval_id === undefined || !approvals.has(line.approval_id)))
      return;
    result.exported++;
    write(text.slice(text.indexOf("{")));
  });
  return result;
}
