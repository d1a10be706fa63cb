/**
 * The security events the product reports, one name each in metrics (`type` label), audit lines
 * (`event` field) and logs (`security_event`).
 */
export const securityEventTypes = [
  /** A Slack request whose v0 signature does not verify. */
  "bad_signature",
  /** A Slack request whose timestamp is outside ±300 s. */
  "stale_timestamp",
  /** A Slack request seen before (replay cache hit). */
  "replay",
  /** A create refused by the per-client rate limit. */
  "rate_limited",
  /** A call or click the caller may not make (no certificate, wrong role, not an approver, …). */
  "unauthorized",
  /** An AdminService call with a missing, malformed or wrong bearer token. */
  "bad_admin_token",
] as const;

/** One of {@link securityEventTypes}. */
export type SecurityEventType = (typeof securityEventTypes)[number];

/** Where a security event came from: refusals are aggregated per type and peer. */
export interface SecurityPeer {
  /** Remote address, e.g. `127.0.0.1` (`slack` or `in-process` when there is none). */
  address: string;
  /** The identity the peer presented (certificate, rate-limit client), when it presented one. */
  identity?: string;
}

/** The events of one type and peer that were counted but not written in full during one interval. */
export interface SecuritySummary {
  type: SecurityEventType;
  peer: SecurityPeer;
  /** Events counted since the last one written (in full or in a summary). */
  suppressed: number;
  /** Epoch ms the interval began. */
  sinceMs: number;
}
