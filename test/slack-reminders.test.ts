import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Decision } from "../gen/countersign/v1/approval_pb.js";
import { createManualClock, type ManualClock } from "../server/domain/clock.js";
import type { FakeSlackMessage } from "./support/fake-slack.js";
import { type SlackTestbed, startSlackTestbed } from "./support/fake-slack.js";

const minute = 60_000;
let clock: ManualClock;
let bed: SlackTestbed;

beforeAll(async () => {
  clock = createManualClock(Date.now());
  bed = await startSlackTestbed({ clock });
});
afterAll(async () => {
  await bed?.close();
});

/** Messages the gateway posted for an approval with a marker key starting with `prefix`. */
function posted(id: string, prefix: string): FakeSlackMessage[] {
  return bed.slack
    .messages()
    .filter(
      (m) =>
        m.metadata?.event_payload.approval_id === id &&
        String(m.metadata.event_payload.key).startsWith(prefix),
    );
}

function waitForPost(id: string, prefix: string): Promise<FakeSlackMessage> {
  return bed.slack.waitFor(() => posted(id, prefix)[0], `the ${prefix} post of ${id}`);
}

describe("reminders and the escalation", () => {
  it("post in the thread at the policy's offsets, each exactly once, and stop when the approval ends", async () => {
    const { approvals } = bed.ts.clients(undefined, "connect");
    const create = async (title: string) =>
      (await approvals.createApproval({ action: "deploy.production", title })).approval?.id ?? "";
    const id = await create("Remind me");
    const decidedEarly = await create("Decided before any reminder");
    const request = await waitForPost(id, "request:");
    await waitForPost(decidedEarly, "request:");
    await approvals.submitDecision({ id: decidedEarly, approver: "U1", decision: Decision.DENY });

    clock.advance(10 * minute);
    const first = await waitForPost(id, "reminder:0:");
    expect(first.threadTs).toBe(request.ts);
    expect(first.channel).toBe("C0PROD");
    expect(first.text).toContain("<@U1>, <@U2>, <@U3>, <!subteam^S0RELEASE>");

    await approvals.submitDecision({ id, approver: "U1", decision: Decision.APPROVE });
    clock.advance(10 * minute);
    const second = await waitForPost(id, "reminder:1:");
    expect(second.text).toContain("1 of 2 approvals");
    expect(second.text).not.toContain("<@U1>");

    clock.advance(5 * minute);
    const escalation = await waitForPost(id, "escalation:");
    expect(escalation.threadTs).toBe(request.ts);
    expect(escalation.text).toContain("<@UONCALL>");
    const notice = await waitForPost(id, "escalation-notice:");
    expect(notice.channel).toBe("C0ESC");
    expect(notice.text).toContain(`https://fake.slack.test/archives/C0PROD/p${request.ts.replace(".", "")}`);

    // Past the deadline the scheduler expires it, and the message says so.
    clock.advance(6 * minute);
    await bed.waitForMessage(
      id,
      (m) => JSON.stringify(m.blocks).includes("Expired"),
      "the expiry on the message",
    );
    expect(posted(id, "reminder:0:")).toHaveLength(1);
    expect(posted(id, "reminder:1:")).toHaveLength(1);
    expect(posted(id, "escalation:")).toHaveLength(1);
    expect(posted(id, "escalation-notice:")).toHaveLength(1);
    expect(
      bed.slack.messages().filter((m) => m.metadata?.event_payload.approval_id === decidedEarly),
    ).toHaveLength(1);
  });
});
