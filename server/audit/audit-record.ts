/**
 * The audit record format, shared by the writer, the verifier and the exporter.
 *
 * Each audit event is one JSON line. Besides its own fields it carries a hash chain per process:
 * `chain` (this process's chain id), `seq` (1, 2, 3, … within the chain), `prev_hash` (the `hash` of the
 * previous line of the chain, or {@link genesisHash} for seq 1) and `hash`:
 *
 *     hash = SHA-256( prev_hash + "\n" + canonical JSON (RFC 8785) of the line without `hash` )
 *
 * so that a changed, removed, reordered or duplicated line breaks the chain at that line.
 */
import { canonicalJson, sha256Hex } from "../domain/hashing.js";
import type { JsonObject, JsonValue } from "../domain/types.js";

/** `prev_hash` of the first line of a chain. */
export const genesisHash = "0".repeat(64);

/** The kinds of audit event (SPEC C9). */
export type AuditEventType =
  /** First line of a chain: the process started writing. */
  | "audit_started"
  /** Last line of a chain: the process stopped cleanly. */
  | "audit_stopped"
  | "created"
  | "vote"
  | "edit_applied"
  | "edit_rejected"
  /** An attempt the caller or approver was not allowed to make (role, ownership, not an approver…). */
  | "unauthorized"
  /** A vote or cancel refused because of the approval's state (already decided, wrong stage). */
  | "refused"
  /** Approved or denied by the approvers (or denied at once because no policy matches). */
  | "decided"
  | "expired"
  | "cancelled"
  /** An admin's break-glass approve or deny. */
  | "admin_resolved"
  /** An admin's cancel. */
  | "admin_cancelled"
  | "reminded"
  | "escalated"
  /** Slack refused a post or update for good: the approvers may not have been notified. */
  | "notification_failed"
  | "policy_reloaded"
  | "policy_reload_failed"
  /** Other security events: bad_admin_token, rate_limited, bad_signature, stale_timestamp, replay. */
  | "security";

/** The terminal outcomes an audit line can carry in `outcome`. */
export type AuditOutcome = "approved" | "denied" | "expired" | "cancelled";

/** The chain fields of every audit line. */
export interface ChainFields {
  chain: string;
  seq: number;
  prev_hash: string;
  hash: string;
}

/** An audit line as parsed: its event fields and its chain fields. */
export type AuditLine = JsonObject &
  ChainFields & {
    type: string;
    time: string;
    approval_id?: string;
    action?: string;
    outcome?: string;
  };

/**
 * The hash of a line: SHA-256 over `prev_hash`, a newline, and the canonical JSON of the line without
 * its `hash` field. `canonical` is that canonical JSON.
 */
export function chainHash(prevHash: string, canonical: string): string {
  return sha256Hex(`${prevHash}\n${canonical}`);
}

/**
 * Serialises a line whose `hash` is computed here: the canonical JSON of `body` (which holds
 * `chain`, `seq` and `prev_hash`) with `"hash"` appended as its last member.
 */
export function sealLine(body: JsonObject & { prev_hash: string }): { line: string; hash: string } {
  const canonical = canonicalJson(body);
  const hash = chainHash(body.prev_hash, canonical);
  return { line: `${canonical.slice(0, -1)},"hash":"${hash}"}`, hash };
}

/** True when `value` has the shape of an audit line (chain fields and a type). */
export function isAuditLine(value: unknown): value is AuditLine {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const v = value as Record<string, unknown>;
  return (
    typeof v.chain === "string" &&
    typeof v.seq === "number" &&
    typeof v.prev_hash === "string" &&
    typeof v.hash === "string" &&
    typeof v.type === "string"
  );
}

/**
 * Parses one log line into an audit line, or returns undefined for any other line. The JSON may follow a
 * prefix that a log pipeline added (e.g. a container runtime's timestamp): it starts at the first `{`.
 */
export function parseAuditLine(text: string): AuditLine | undefined {
  const start = text.indexOf("{");
  if (start < 0) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(start === 0 ? text : text.slice(start));
  } catch {
    return undefined;
  }
  return isAuditLine(value) ? value : undefined;
}

/** The chain id an unparsable line claims, if any: for reporting a mangled line in the right chain. */
export function claimedChain(text: string): string | undefined {
  if (!text.includes('"prev_hash"')) return undefined;
  return /"chain"\s*:\s*"([^"\\]{1,200})"/.exec(text)?.[1];
}

/** Recomputes the hash of a parsed line; true when it matches the line's `hash`. */
export function hashMatches(line: AuditLine): boolean {
  const { hash, ...body } = line;
  let canonical: string;
  try {
    canonical = canonicalJson(body as JsonValue);
  } catch {
    return false;
  }
  return chainHash(line.prev_hash, canonical) === hash;
}
