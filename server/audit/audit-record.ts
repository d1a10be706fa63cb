/**
 * The audit record format, shared by the writer, the verifier and the exporter.
 *
 * Each audit event is one JSON line. Besides its own fields it carries a hash chain per process:
 * `chain` (this process's chain id), `seq` (1, 2, 3, … within the chain), `prev_hash` (the `hash` of the
 * previous line of the chain, or {@link genesisHash} for seq 1), `key_id` (which audit key sealed it) and
 * `hash`:
 *
 *     hash = HMAC-SHA-256( key, prev_hash + "\n" + canonical JSON (RFC 8785) of the line without `hash` )
 *
 * so that a changed, removed, reordered or duplicated line breaks the chain at that line, and only a
 * holder of the key can compute a chain that verifies. Without a key (development) a line has no
 * `key_id` and `hash` is a plain SHA-256: it catches accidents, not a writer who recomputes it.
 *
 * A checkpoint (`audit_checkpoint`) records a chain's head (`seq`, `hash`) at a time, sealed with the
 * same key in `sig`; it is kept outside the file (the store and the server log) so that a cut tail or
 * a deleted newest file shows against it.
 */
import { createHmac } from "node:crypto";
import { canonicalJson, sha256Hex } from "../domain/hashing.js";
import type { JsonObject, JsonValue } from "../domain/types.js";

/** `prev_hash` of the first line of a chain. */
export const genesisHash = "0".repeat(64);

/** A secret that seals audit lines, and its id (written in each line it seals). */
export interface AuditKey {
  /** 16 hex characters derived from the secret: names the key without revealing it. */
  readonly id: string;
  readonly secret: string;
}

/** The shortest audit key accepted, in characters (e.g. `openssl rand -base64 32` gives 44). */
export const minAuditKeyLength = 32;

/**
 * The audit key of a secret; its id is derived from it (a hash with a domain separator), so keys are
 * rotated by replacing the secret, and a verifier finds the key of each line by its id.
 * @throws Error when the secret is shorter than {@link minAuditKeyLength} characters
 */
export function auditKey(secret: string): AuditKey {
  if (secret.length < minAuditKeyLength)
    throw new Error(
      `an audit key must be at least ${minAuditKeyLength} characters (e.g. openssl rand -base64 32)`,
    );
  return { id: sha256Hex(`countersign audit key id\n${secret}`).slice(0, 16), secret };
}

/**
 * The keys of a key file: one secret per line; blank lines and lines starting with `#` are skipped.
 * @throws Error naming the line of a secret that is too short
 */
export function parseAuditKeys(text: string): AuditKey[] {
  const keys: AuditKey[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) return;
    try {
      keys.push(auditKey(line));
    } catch (err) {
      throw new Error(`line ${i + 1}: ${(err as Error).message}`);
    }
  });
  return keys;
}

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
  | "security"
  /** Security events of one type and peer counted but not written one by one during an interval. */
  | "security_summary";

/** The terminal outcomes an audit line can carry in `outcome`. */
export type AuditOutcome = "approved" | "denied" | "expired" | "cancelled";

/** The chain fields of every audit line. */
export interface ChainFields {
  chain: string;
  seq: number;
  prev_hash: string;
  hash: string;
  /** The id of the key that sealed the line; absent on an unkeyed line. */
  key_id?: string;
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
 * The hash of a line: HMAC-SHA-256 with `key` (plain SHA-256 without one) over `prev_hash`, a newline,
 * and the canonical JSON of the line without its `hash` field. `canonical` is that canonical JSON.
 */
export function chainHash(prevHash: string, canonical: string, key?: AuditKey): string {
  const data = `${prevHash}\n${canonical}`;
  return key === undefined ? sha256Hex(data) : createHmac("sha256", key.secret).update(data).digest("hex");
}

/**
 * Serialises a line whose `hash` is computed here: the canonical JSON of `body` (which holds
 * `chain`, `seq`, `prev_hash` and, with a key, `key_id`) with `"hash"` appended as its last member.
 */
export function sealLine(
  body: JsonObject & { prev_hash: string },
  key?: AuditKey,
): { line: string; hash: string } {
  const canonical = canonicalJson(body);
  const hash = chainHash(body.prev_hash, canonical, key);
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

/** Recomputes the hash of a parsed line with `key` (none: unkeyed); true when it matches its `hash`. */
export function hashMatches(line: AuditLine, key?: AuditKey): boolean {
  const { hash, ...body } = line;
  let canonical: string;
  try {
    canonical = canonicalJson(body as JsonValue);
  } catch {
    return false;
  }
  return chainHash(line.prev_hash, canonical, key) === hash;
}

/** A chain's head at a time, sealed: the line type `audit_checkpoint`, kept outside the audit file. */
export interface AuditCheckpoint {
  type: "audit_checkpoint";
  chain: string;
  /** The last seq written to the file. */
  seq: number;
  /** The `hash` of that line. */
  hash: string;
  /** When the checkpoint was taken (RFC 3339). */
  time: string;
  /** The key that sealed it; absent when unkeyed. */
  key_id?: string;
  /** HMAC-SHA-256 (SHA-256 unkeyed) of the canonical JSON of the other fields. */
  sig: string;
}

/** Seals a checkpoint of `chain` at `seq` / `hash`. */
export function sealCheckpoint(
  head: { chain: string; seq: number; hash: string; time: string },
  key?: AuditKey,
): AuditCheckpoint {
  const body = {
    type: "audit_checkpoint" as const,
    ...head,
    ...(key === undefined ? {} : { key_id: key.id }),
  };
  return { ...body, sig: chainHash("", canonicalJson(body), key) };
}

/** True when `value` has the shape of a checkpoint. */
export function isAuditCheckpoint(value: unknown): value is AuditCheckpoint {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const v = value as Record<string, unknown>;
  return (
    v.type === "audit_checkpoint" &&
    typeof v.chain === "string" &&
    typeof v.seq === "number" &&
    typeof v.hash === "string" &&
    typeof v.time === "string" &&
    typeof v.sig === "string" &&
    (v.key_id === undefined || typeof v.key_id === "string")
  );
}

/** Recomputes a checkpoint's `sig` with `key` (none: unkeyed); true when it matches. */
export function checkpointMatches(checkpoint: AuditCheckpoint, key?: AuditKey): boolean {
  const { sig, ...body } = checkpoint;
  return chainHash("", canonicalJson(body), key) === sig;
}

/**
 * The checkpoints in log lines (e.g. the server's log, where each checkpoint is logged under
 * `audit_checkpoint`), or lines that are checkpoints themselves; other lines are skipped.
 */
export function parseCheckpointLine(text: string): AuditCheckpoint | undefined {
  const start = text.indexOf("{");
  if (start < 0 || !text.includes("audit_checkpoint")) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(start === 0 ? text : text.slice(start));
  } catch {
    return undefined;
  }
  if (isAuditCheckpoint(value)) return value;
  const nested = (value as { audit_checkpoint?: unknown } | null)?.audit_checkpoint;
  return isAuditCheckpoint(nested) ? nested : undefined;
}
