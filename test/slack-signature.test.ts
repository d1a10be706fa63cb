import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createManualClock } from "../server/domain/clock.js";
import { verifySlackSignature } from "../server/slack/slack-signature.js";
import { type SlackTestbed, startSlackTestbed } from "./support/fake-slack.js";
import {
  blockActionPayload,
  interactionBody,
  postSigned,
  send,
  slackSignature,
} from "./support/slack-signing.js";

let bed: SlackTestbed;
let approvalId: string;
let body: string;
// Time stands still, so the ±300 s boundaries are tested exactly.
const clock = createManualClock(Date.now());

beforeAll(async () => {
  bed = await startSlackTestbed({ clock, tuning: { maxBodyBytes: 16 * 1024 } });
  const { approvals } = bed.ts.clients(undefined, "connect");
  approvalId =
    (await approvals.createApproval({ action: "deploy.production", title: "Signed" })).approval?.id ?? "";
  const message = await bed.waitForMessage(approvalId, () => true, "the message");
  body = interactionBody(
    blockActionPayload({
      user: "U1",
      actionId: "countersign_approve",
      approvalId,
      channel: message.channel,
      messageTs: message.ts,
    }),
  );
});
afterAll(async () => {
  await bed?.close();
});

async function votes(): Promise<string[]> {
  const { approvals } = bed.ts.clients(undefined, "connect");
  return ((await approvals.getApproval({ id: approvalId })).approval?.votes ?? []).map((v) => v.approver);
}

function securityEvents(kind: string): number {
  return bed.events.filter((e) => e.type === "security" && e.kind === kind).length;
}

describe("Slack request verification", () => {
  it("verifies Slack's own published example signature", () => {
    // https://api.slack.com/authentication/verifying-requests-from-slack
    const example =
      "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const published = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
    expect(slackSignature("8f742231b10e8888abcd99yyyzzz85a5", 1531420618, example)).toBe(published);
    const result = verifySlackSignature({
      signingSecret: "8f742231b10e8888abcd99yyyzzz85a5",
      timestamp: "1531420618",
      signature: published,
      body: Buffer.from(example),
      nowMs: 1531420618_000 + 60_000,
    });
    expect(result.ok).toBe(true);
  });

  it("refuses every malformed, forged or stale request with 401 and a security event, and changes nothing", async () => {
    const now = bed.nowSec();
    const secret = bed.signingSecret;
    const signature = slackSignature(secret, now, body);
    const changed = `${body.slice(0, -1)}${body.endsWith("A") ? "B" : "A"}`;
    const cases: { name: string; kind: string; post: () => ReturnType<typeof postSigned> }[] = [
      {
        name: "a changed byte",
        kind: "bad_signature",
        post: () =>
          postSigned(bed.eventsUrl, {
            signingSecret: secret,
            timestampSec: now,
            body: changed,
            headers: { "x-slack-signature": signature },
          }),
      },
      {
        name: "timestamp 301 s old",
        kind: "stale_timestamp",
        post: () => postSigned(bed.eventsUrl, { signingSecret: secret, body, timestampSec: now - 301 }),
      },
      {
        name: "timestamp 301 s in the future",
        kind: "stale_timestamp",
        post: () => postSigned(bed.eventsUrl, { signingSecret: secret, body, timestampSec: now + 301 }),
      },
      {
        name: "no timestamp header",
        kind: "bad_signature",
        post: () =>
          postSigned(bed.eventsUrl, {
            signingSecret: secret,
            timestampSec: now,
            body,
            headers: { "x-slack-request-timestamp": undefined },
          }),
      },
      {
        name: "no signature header",
        kind: "bad_signature",
        post: () =>
          postSigned(bed.eventsUrl, {
            signingSecret: secret,
            timestampSec: now,
            body,
            headers: { "x-slack-signature": undefined },
          }),
      },
      {
        name: "wrong version prefix",
        kind: "bad_signature",
        post: () =>
          postSigned(bed.eventsUrl, {
            signingSecret: secret,
            timestampSec: now,
            body,
            headers: { "x-slack-signature": signature.replace("v0=", "v1=") },
          }),
      },
      {
        name: "wrong length",
        kind: "bad_signature",
        post: () =>
          postSigned(bed.eventsUrl, {
            signingSecret: secret,
            timestampSec: now,
            body,
            headers: { "x-slack-signature": signature.slice(0, -1) },
          }),
      },
      {
        name: "another signing secret",
        kind: "bad_signature",
        post: () => postSigned(bed.eventsUrl, { signingSecret: "not-the-secret", body, timestampSec: now }),
      },
    ];
    for (const c of cases) {
      const before = securityEvents(c.kind);
      const result = await c.post();
      expect([c.name, result.status]).toEqual([c.name, 401]);
      expect([c.name, securityEvents(c.kind)]).toEqual([c.name, before + 1]);
    }
    expect(await votes()).toEqual([]);
    expect(bed.slack.callsTo("chat.postEphemeral")).toEqual([]);
  });

  it("accepts a timestamp at the edge of the window in both directions", async () => {
    const { approvals } = bed.ts.clients(undefined, "connect");
    for (const skew of [-300, 300]) {
      const id =
        (await approvals.createApproval({ action: "deploy.production", title: `skew ${skew}` })).approval
          ?.id ?? "";
      const message = await bed.waitForMessage(id, () => true, "the message");
      const click = interactionBody(
        blockActionPayload({
          user: "U2",
          actionId: "countersign_approve",
          approvalId: id,
          channel: message.channel,
          messageTs: message.ts,
        }),
      );
      const result = await postSigned(bed.eventsUrl, {
        signingSecret: bed.signingSecret,
        body: click,
        timestampSec: bed.nowSec() + skew,
      });
      expect([skew, result.status]).toEqual([skew, 200]);
      await bed.waitForMessage(
        id,
        (m) => JSON.stringify(m.blocks).includes("<@U2> approved"),
        `the vote (skew ${skew})`,
      );
    }
  });

  it("accepts a signed request once: a replay within the window is refused, counted, and changes nothing", async () => {
    const timestampSec = bed.nowSec();
    const first = await postSigned(bed.eventsUrl, { signingSecret: bed.signingSecret, body, timestampSec });
    expect(first.status).toBe(200);
    await bed.waitForMessage(
      approvalId,
      (m) => JSON.stringify(m.blocks).includes("<@U1> approved"),
      "the vote",
    );
    const replays = securityEvents("replay");
    const again = await postSigned(bed.eventsUrl, { signingSecret: bed.signingSecret, body, timestampSec });
    expect(again.status).toBe(401);
    expect(securityEvents("replay")).toBe(replays + 1);
    expect(await votes()).toEqual(["U1"]);
  });

  it("refuses an oversized body with 413 before hashing it, and never answers 500", async () => {
    const big = `payload=${"x".repeat(20 * 1024)}`;
    const before = securityEvents("bad_signature");
    const oversized = await postSigned(bed.eventsUrl, {
      signingSecret: bed.signingSecret,
      body: big,
      timestampSec: bed.nowSec(),
    });
    expect(oversized.status).toBe(413);
    expect(securityEvents("bad_signature")).toBe(before + 1);

    const garbage = await postSigned(bed.eventsUrl, {
      signingSecret: bed.signingSecret,
      body: "payload=%7Bnot-json",
    });
    expect(garbage.status).toBe(400);
    const unknown = await postSigned(bed.eventsUrl, {
      signingSecret: bed.signingSecret,
      body: interactionBody({
        type: "block_actions",
        user: { id: "U1" },
        actions: [{ action_id: "countersign_approve", value: "nope!", action_ts: "1" }],
      }),
    });
    expect(unknown.status).toBe(200);
    const wrongPath = await send(bed.eventsUrl.replace("/slack/events", "/other"), {}, Buffer.from(""));
    expect(wrongPath.status).toBe(404);
  });
});
