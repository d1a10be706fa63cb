/**
 * What the Slack gateway reports about its own work, for metrics and audit to subscribe to. The gateway
 * writes no metrics itself; a listener turns these events into counters, histograms and audit lines.
 */

import type { Approval } from "../domain/types.js";

/** How one Slack Web API call ended. */
export type SlackCallOutcome =
  /** Slack answered `ok: true`. */
  | "ok"
  /** HTTP 429: nothing happened; retried after `Retry-After`. */
  | "rate_limited"
  /** The request never reached Slack (connection refused, DNS): nothing happened; retried. */
  | "unavailable"
  /** No answer or a server error: the call may or may not have taken effect (time-out, 5xx, reset). */
  | "ambiguous"
  /** Slack refused it for a reason an operator can fix (bot not in channel, bad token, missing scope). */
  | "blocked"
  /** Slack refused it for good (the request itself is wrong); not retried. */
  | "rejected";

/**
 * Why a request to the interactivity endpoint was refused before it reached the app (the names of the
 * product's security events).
 */
export type SlackSecurityEventKind =
  /**
   * Missing or malformed headers, wrong signature version or length, a signature that does not match,
   * or a body over the size cap (refused with 413 before it is hashed, so it cannot be verified).
   */
  | "bad_signature"
  /** The signed timestamp is more than the window (300 s) in the past or in the future. */
  | "stale_timestamp"
  /** The same signed request was already received within the window. */
  | "replay";

/** One thing the Slack gateway did or refused. */
export type SlackGatewayEvent =
  /** One Slack Web API call; `attempt` counts from 1 for the piece of work it belongs to. */
  | {
      type: "api_call";
      method: string;
      outcome: SlackCallOutcome;
      /** HTTP status; 0 when there was no response. */
      status: number;
      /** Slack's error code, or the network error code; empty when ok. */
      error: string;
      attempt: number;
      durationMs: number;
    }
  /** Slack answered 429: calls of `method` pause for `retryAfterMs`. */
  | { type: "rate_limited"; method: string; retryAfterMs: number }
  /** The outbound queue changed: work items waiting or running, and the age of the oldest one. */
  | { type: "queue"; depth: number; oldestAgeMs: number }
  /** An interactivity request was refused with 401 (413 for an oversized body). */
  | { type: "security"; kind: SlackSecurityEventKind; reason: string; remoteAddress: string }
  /**
   * A click that is not allowed (not an approver, self-approval, wrong stage, already decided).
   * `source: "service"`: the API refused the call (the application layer also reports a `refused`
   * event for votes, so audit should not count it twice); `"gateway"`: refused before any call (a click
   * on a request the gateway already knows is finished).
   */
  | {
      type: "unauthorized";
      source: "service" | "gateway";
      approvalId: string;
      user: string;
      /** What was clicked: approve, deny, acknowledge, edit, rerequest. */
      action: string;
      code: "permission_denied" | "failed_precondition";
      message: string;
    }
  /** After an ambiguous failure a post was found in Slack, so it was not posted again. */
  | { type: "post_recovered"; approvalId: string; key: string; channel: string; ts: string }
  /**
   * Slack refused a post or update for good; the gateway gave up on it. For the request message itself
   * (`key` `request`, or `request:<channel>`), its approvers were not notified there.
   */
  | { type: "post_failed"; approvalId: string; key: string; method: string; error: string }
  /**
   * A reminder or the escalation was posted: in the thread of the request message in `channel`
   * (`notice` reminder or escalation), in the fallback channel (`escalation_notice`), or to an escalation
   * user directly (`escalation_dm`). `index` is the reminder's, counting from 0 (-1 for the escalation).
   */
  | {
      type: "notice_posted";
      approval: Approval;
      notice: "reminder" | "escalation" | "escalation_notice" | "escalation_dm";
      index: number;
      channel: string;
    }
  /** The reminder tick found notices due and handed them to the outbound queue (not sent when none were). */
  | { type: "notices_due"; reminders: number; escalations: number; approvals: number };

/** Receives gateway events. It must not throw; it is called synchronously on the gateway's paths. */
export type SlackGatewayEventListener = (event: SlackGatewayEvent) => void;

/** Wraps a listener so that what it throws never disturbs the gateway. */
export function safeListener(listener: SlackGatewayEventListener | undefined): SlackGatewayEventListener {
  if (listener === undefined) return () => {};
  return (event) => {
    try {
      listener(event);
    } catch {
      // The listener's own problem; the gateway carries on.
    }
  };
}
