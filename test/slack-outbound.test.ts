import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Decision, State } from "../gen/countersign/v1/approval_pb.js";
import type { FakeSlackMessage } from "./support/fake-slack.js";
import { type SlackTestbed, startSlackTestbed } from "./support/fake-slack.js";

let bed: SlackTestbed;

beforeAll(async () => {
  bed = await startSlackTestbed();
});
afterAll(async () => {
  await bed?.close();
});

function create(title: string, action = "deploy.production") {
  const { approvals } = bed.ts.clients(undefined, "connect");
  return approvals.createApproval({ action, title }).then((r) => r.approval?.id ?? "");
}

/** The request messages in Slack for an approval (there must be exactly one per channel). */
function requestMessages(id: string): FakeSlackMessage[] {
  return bed.slack
    .messages()
    .filter((m) => m.threadTs === undefined && m.metadata?.event_payload.approval_id === id);
}

describe("the outbound queue", () => {
  it("gets every post through a 429 storm exactly once, honouring Retry-After", async () => {
    const before = bed.slack.calls.length;
    bed.slack.inject("chat.postMessage", { kind: "rate_limited", retryAfterSec: 2 }, 6);
    const ids = await Promise.all(Array.from({ length: 4 }, (_, i) => create(`storm ${i}`)));
    // More approvals arrive while the method is paused: they must wait for the pause too.
    await bed.slack.waitFor(
      () => bed.slack.calls.slice(before).some((c) => c.status === 429),
      "the first 429",
    );
    ids.push(...(await Promise.all(Array.from({ length: 8 }, (_, i) => create(`storm late ${i}`)))));
    await bed.slack.waitFor(() => ids.every((id) => requestMessages(id).length > 0), "every post", 30_000);
    for (const id of ids) expect(requestMessages(id)).toHaveLength(1);

    const posts = bed.slack.calls.slice(before).filter((c) => c.method === "chat.postMessage");
    const limited = posts.filter((c) => c.status === 429);
    expect(limited).toHaveLength(6);
    // After a 429 the gateway sends nothing to that method until Retry-After has passed (calls already
    // on the wire when the 429 was answered may still arrive just after it).
    const inFlightGraceMs = 500;
    for (const answer of limited) {
      const t = answer.answeredAt ?? 0;
      const early = posts.filter((c) => c.receivedAt > t + inFlightGraceMs && c.receivedAt < t + 2_000);
      expect(early.map((c) => c.receivedAt - t)).toEqual([]);
    }
    // And as the gateway saw it: no post started between a 429 and the end of its Retry-After.
    const pauses = bed.timedEvents.flatMap(({ at, event }) =>
      event.type === "rate_limited" && event.method === "chat.postMessage"
        ? [{ at, until: at + event.retryAfterMs }]
        : [],
    );
    expect(pauses.length).toBeGreaterThanOrEqual(6);
    const starts = bed.timedEvents.flatMap(({ at, event }) =>
      event.type === "api_call" && event.method === "chat.postMessage" ? [at - event.durationMs] : [],
    );
    for (const pause of pauses) {
      expect(starts.filter((start) => start > pause.at && start < pause.until - 5)).toEqual([]);
    }
  });

  it("never posts twice after an ambiguous failure: it finds the message that landed", async () => {
    bed.slack.inject("chat.postMessage", { kind: "http_after_apply", status: 500 }, 1);
    const first = await create("ambiguous 500");
    await bed.slack.waitFor(
      () => bed.events.some((e) => e.type === "post_recovered" && e.approvalId === first),
      "the post found after the 500",
    );
    bed.slack.inject("chat.postMessage", { kind: "hang_after_apply" }, 1);
    const second = await create("ambiguous time-out");
    await bed.slack.waitFor(
      () => bed.events.some((e) => e.type === "post_recovered" && e.approvalId === second),
      "the post found after the time-out",
    );
    // Both messages are edited later on: the recovered ts is the one in use.
    const { approvals } = bed.ts.clients(undefined, "connect");
    for (const id of [first, second]) {
      await approvals.submitDecision({ id, approver: "U1", decision: Decision.APPROVE });
      await bed.slack.waitFor(
        () => JSON.stringify(requestMessages(id)[0]?.blocks ?? []).includes("<@U1> approved"),
        "the vote on the recovered message",
      );
      expect(requestMessages(id)).toHaveLength(1);
    }
    expect(bed.slack.callsTo("conversations.history").length).toBeGreaterThanOrEqual(2);
  });

  it("never makes CreateApproval wait for Slack", async () => {
    bed.slack.inject("*", { kind: "hang" }, 1_000);
    try {
      const id = await create("Slack hangs");
      const { approvals } = bed.ts.clients(undefined, "connect");
      expect((await approvals.getApproval({ id })).approval?.state).toBe(State.PENDING);
      // The post is still waiting for a Slack that does not answer.
      await bed.slack.waitFor(
        () =>
          bed.slack.calls.some(
            (c) =>
              c.method === "chat.postMessage" &&
              c.status === undefined &&
              c.args.text?.toString().includes("Slack hangs"),
          ),
        "a hanging post",
      );
      expect(requestMessages(id)).toEqual([]);
      bed.slack.clearFaults();
      await bed.slack.waitFor(() => requestMessages(id).length === 1, "the post once Slack answers");
      expect(requestMessages(id)).toHaveLength(1);
    } finally {
      bed.slack.clearFaults();
    }
  });

  it("lets people decide while Slack is down, then catches the message up in one update", async () => {
    const id = await create("During the outage");
    const message = await bed.slack.waitFor(() => requestMessages(id)[0], "the message");
    bed.slack.setDown(true);
    try {
      const { approvals } = bed.ts.clients(undefined, "connect");
      await approvals.submitDecision({ id, approver: "U1", decision: Decision.APPROVE });
      const decided = await approvals.submitDecision({
        id,
        approver: "U2",
        decision: Decision.APPROVE,
        reason: "ok",
      });
      expect(decided.approval?.state).toBe(State.APPROVED);
      await bed.slack.waitFor(
        () =>
          bed.slack.calls.filter((c) => c.method === "chat.update" && c.args.ts === message.ts).length >= 2,
        "the gateway trying to update while Slack is down",
      );
    } finally {
      bed.slack.setDown(false);
    }
    await bed.slack.waitFor(() => message.updates > 0, "the update once Slack is back");
    const delivered = bed.slack.calls.filter(
      (c) => c.method === "chat.update" && c.args.ts === message.ts && c.status === 200,
    );
    // Coalesced: the first update that got through already shows the outcome.
    expect(JSON.stringify(delivered[0]?.args.blocks)).toContain("Approved");
    expect(JSON.stringify(message.blocks)).toContain("<@U2>");
    expect(message.updates).toBe(1);
  });

  it("keeps retrying a post Slack refuses until an operator fixes it (bot not in channel)", async () => {
    bed.slack.inject("chat.postMessage", { kind: "error", error: "not_in_channel" }, 3);
    const id = await create("Invite the bot");
    await bed.slack.waitFor(() => requestMessages(id).length === 1, "the post after the bot was invited");
    const refused = bed.events.filter((e) => e.type === "api_call" && e.error === "not_in_channel");
    expect(refused.length).toBe(3);
  });
});
