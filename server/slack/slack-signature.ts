import { createHmac, timingSafeEqual } from "node:crypto";

/** Slack's window for the signed timestamp, in seconds, in both directions. */
export const slackTimestampToleranceSec = 300;

/** What `verifySlackSignature` checks. */
export interface SlackSignatureInput {
  signingSecret: string;
  /** The `X-Slack-Request-Timestamp` header (epoch seconds). */
  timestamp: string | undefined;
  /** The `X-Slack-Signature` header, `v0=` and 64 hex digits. */
  signature: string | undefined;
  /** The raw request body, exactly as received. */
  body: Uint8Array;
  /** Now, in epoch milliseconds. */
  nowMs: number;
  /** @default 300 */
  toleranceSec?: number;
}

/** The outcome of `verifySlackSignature`. */
export type SlackSignatureResult =
  | { ok: true; timestampSec: number; signature: string }
  | { ok: false; kind: "bad_signature" | "stale_timestamp"; reason: string };

const hexSignature = /^[0-9a-f]{64}$/;

/**
 * Verifies a request from Slack (signing secret, version `v0`): HMAC-SHA256 over `v0:{timestamp}:{body}`,
 * compared in constant time, with the timestamp within ±`toleranceSec` of now (Bolt alone only rejects
 * old ones).
 */
export function verifySlackSignature(input: SlackSignatureInput): SlackSignatureResult {
  const tolerance = input.toleranceSec ?? slackTimestampToleranceSec;
  const fail = (kind: "bad_signature" | "stale_timestamp", reason: string): SlackSignatureResult => ({
    ok: false,
    kind,
    reason,
  });
  if (input.timestamp === undefined) return fail("bad_signature", "missing X-Slack-Request-Timestamp header");
  if (input.signature === undefined) return fail("bad_signature", "missing X-Slack-Signature header");
  if (!/^\d{1,12}$/.test(input.timestamp))
    return fail("bad_signature", "X-Slack-Request-Timestamp is not a number of seconds");
  const timestampSec = Number(input.timestamp);
  const skewSec = Math.floor(input.nowMs / 1000) - timestampSec;
  if (skewSec > tolerance)
    return fail("stale_timestamp", `timestamp is ${skewSec} s old; the window is ±${tolerance} s`);
  if (-skewSec > tolerance)
    return fail("stale_timestamp", `timestamp is ${-skewSec} s in the future; the window is ±${tolerance} s`);
  const separator = input.signature.indexOf("=");
  const version = separator < 0 ? input.signature : input.signature.slice(0, separator);
  if (version !== "v0")
    return fail("bad_signature", `unsupported signature version "${version.slice(0, 8)}"`);
  const hex = input.signature.slice(separator + 1);
  if (!hexSignature.test(hex)) return fail("bad_signature", "signature is not 64 lower-case hex digits");
  const expected = createHmac("sha256", input.signingSecret)
    .update(`v0:${input.timestamp}:`)
    .update(input.body)
    .digest();
  if (!timingSafeEqual(expected, Buffer.from(hex, "hex"))) return fail("bad_signature", "signature mismatch");
  return { ok: true, timestampSec, signature: hex };
}
