import { createHmac } from "node:crypto";
import * as http from "node:http";

/**
 * Slack's request signature, computed as Slack documents it: `v0=` + hex HMAC-SHA256, keyed with the
 * signing secret, of `v0:{timestamp}:{raw body}`. Written independently of the server's verifier.
 */
export function slackSignature(signingSecret: string, timestampSec: number | string, body: string): string {
  return `v0=${createHmac("sha256", signingSecret).update(`v0:${timestampSec}:${body}`).digest("hex")}`;
}

/** The form body Slack posts for an interaction: `payload=<url-encoded JSON>`. */
export function interactionBody(payload: unknown): string {
  return `payload=${encodeURIComponent(JSON.stringify(payload))}`;
}

/** What the endpoint answered, and how long it took. */
export interface SlackPostResult {
  status: number;
  body: string;
  elapsedMs: number;
}

/**
 * POSTs to the interactivity endpoint as Slack does: form-encoded, with `X-Slack-Request-Timestamp` and
 * `X-Slack-Signature` computed from the body (unless `headers` overrides or removes them).
 */
export async function postSigned(
  url: string,
  options: {
    signingSecret: string;
    body: string;
    /** Epoch seconds signed and sent. @default now */
    timestampSec?: number;
    /** Replaces (string) or removes (undefined) headers after signing. */
    headers?: Record<string, string | undefined>;
  },
): Promise<SlackPostResult> {
  const timestampSec = options.timestampSec ?? Math.floor(Date.now() / 1000);
  const headers: Record<string, string> = {
    "content-type": "application/x-www-form-urlencoded",
    "x-slack-request-timestamp": String(timestampSec),
    "x-slack-signature": slackSignature(options.signingSecret, timestampSec, options.body),
  };
  for (const [name, value] of Object.entries(options.headers ?? {})) {
    if (value === undefined) delete headers[name];
    else headers[name] = value;
  }
  return send(url, headers, Buffer.from(options.body));
}

/** Sends raw bytes with the given headers (for oversized or malformed requests). */
export function send(url: string, headers: Record<string, string>, body: Buffer): Promise<SlackPostResult> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const req = http.request(
      url,
      { method: "POST", headers: { ...headers, "content-length": String(body.length) } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            body: Buffer.concat(chunks).toString("utf8"),
            elapsedMs: performance.now() - started,
          }),
        );
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

let actionSeq = 0;

/** A `block_actions` payload for a click on one of an approval message's buttons, as Slack sends it. */
export function blockActionPayload(click: {
  user: string;
  actionId: string;
  approvalId: string;
  channel: string;
  messageTs: string;
  /** @default a new unique action ts */
  actionTs?: string;
}): Record<string, unknown> {
  actionSeq++;
  const actionTs = click.actionTs ?? `${Math.floor(Date.now() / 1000)}.${String(actionSeq).padStart(6, "0")}`;
  return {
    type: "block_actions",
    team: { id: "TFAKE", domain: "fake" },
    user: { id: click.user, username: click.user.toLowerCase(), team_id: "TFAKE" },
    api_app_id: "AFAKE",
    token: "legacy-verification-token",
    trigger_id: `trigger.${actionSeq}.${click.user}`,
    container: {
      type: "message",
      message_ts: click.messageTs,
      channel_id: click.channel,
      is_ephemeral: false,
    },
    channel: { id: click.channel, name: "approvals" },
    message: { type: "message", ts: click.messageTs, text: "" },
    response_url: "https://hooks.slack.test/actions/1",
    actions: [
      {
        type: "button",
        action_id: click.actionId,
        block_id: "countersign_actions",
        text: { type: "plain_text", text: "button" },
        value: click.approvalId,
        action_ts: actionTs,
      },
    ],
  };
}

/**
 * A `view_submission` payload for a modal the gateway opened (as the fake recorded it), with the values
 * typed into its inputs (block id → text; omitted inputs are empty).
 */
export function viewSubmissionPayload(submission: {
  user: string;
  view: Record<string, unknown>;
  values: Record<string, string>;
}): Record<string, unknown> {
  const blocks = (submission.view.blocks ?? []) as {
    type: string;
    block_id?: string;
    element?: { action_id?: string; type?: string };
  }[];
  const values: Record<string, Record<string, { type: string; value: string | null }>> = {};
  for (const block of blocks) {
    if (block.type !== "input" || block.block_id === undefined) continue;
    const actionId = block.element?.action_id ?? "value";
    values[block.block_id] = {
      [actionId]: {
        type: block.element?.type ?? "plain_text_input",
        value: submission.values[block.block_id] ?? null,
      },
    };
  }
  return {
    type: "view_submission",
    team: { id: "TFAKE", domain: "fake" },
    user: { id: submission.user, name: submission.user.toLowerCase(), team_id: "TFAKE" },
    api_app_id: "AFAKE",
    token: "legacy-verification-token",
    trigger_id: `trigger.view.${submission.user}`,
    view: {
      ...submission.view,
      team_id: "TFAKE",
      app_id: "AFAKE",
      bot_id: "BFAKEBOT",
      state: { values },
      root_view_id: submission.view.id,
      previous_view_id: null,
    },
  };
}
