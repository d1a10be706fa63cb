import { canonicalSha256 } from "../domain/hashing.js";
import type { Approval, ApprovalState, JsonValue } from "../domain/types.js";

/** What every archive line says it is. */
export const archiveKind = "countersign.approval";

/**
 * One line of the archive: a finished approval as it was when it was purged, whole (votes, edits,
 * stages, the params hash and the policy hash included), with the SHA-256 of its canonical JSON so a
 * damaged line is found on import.
 */
export interface ArchiveRecord {
  kind: typeof archiveKind;
  /** Format version of the line. */
  v: 1;
  /** When it was archived (epoch ms). */
  archiveTime: number;
  /** SHA-256 of the RFC 8785 canonical JSON of `approval`. */
  sha256: string;
  approval: Approval;
}

/** The archive file of a UTC day: `approvals-YYYY-MM-DD.jsonl`. */
export function archiveFileName(time: number): string {
  return `approvals-${new Date(time).toISOString().slice(0, 10)}.jsonl`;
}

/** The archive line of an approval (without the newline). */
export function toArchiveLine(approval: Approval, archiveTime: number): string {
  const record: ArchiveRecord = {
    kind: archiveKind,
    v: 1,
    archiveTime,
    sha256: canonicalSha256(approval as unknown as JsonValue),
    approval,
  };
  return JSON.stringify(record);
}

const states: ApprovalState[] = ["pending", "approved", "denied", "expired", "cancelled"];

/**
 * Reads one archive line back.
 * @returns the approval, or the problem with the line
 */
export function parseArchiveLine(line: string): { approval: Approval } | { problem: string } {
  let record: Partial<ArchiveRecord>;
  try {
    record = JSON.parse(line) as Partial<ArchiveRecord>;
  } catch {
    return { problem: "is not JSON" };
  }
  if (record === null || typeof record !== "object" || record.kind !== archiveKind)
    return { problem: `is not an archived approval (kind must be "${archiveKind}")` };
  if (record.v !== 1) return { problem: `has format version ${String(record.v)}; this version reads 1` };
  const a = record.approval;
  if (a === null || typeof a !== "object") return { problem: "has no approval" };
  if (typeof a.id !== "string" || !/^[A-Za-z0-9_-]{1,64}$/.test(a.id))
    return { problem: "approval.id is not valid" };
  if (!states.includes(a.state))
    return { problem: `approval.state ${JSON.stringify(a.state)} is not a state` };
  if (!Number.isInteger(a.version) || a.version < 1)
    return { problem: "approval.version is not a positive integer" };
  for (const field of ["createTime", "expireTime", "decideTime"] as const) {
    if (typeof a[field] !== "number") return { problem: `approval.${field} is not a number` };
  }
  for (const field of ["action", "requester", "lineageId"] as const) {
    if (typeof a[field] !== "string" || a[field] === "") return { problem: `approval.${field} is missing` };
  }
  if (typeof record.sha256 !== "string" || canonicalSha256(a as unknown as JsonValue) !== record.sha256)
    return { problem: "does not match its sha256 (the line was changed or damaged)" };
  return { approval: a };
}
