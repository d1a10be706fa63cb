import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Decision } from "../gen/countersign/v1/approval_pb.js";
import { parseAuditLine } from "../server/audit/audit-record.js";
import { createManualClock, type ManualClock } from "../server/domain/clock.js";
import { parsePrometheusText } from "../server/telemetry/prometheus-text.js";
import type { FakeSlackMessage } from "./support/fake-slack.js";
import { type SlackTestbed, startSlackTestbed } from "./support/fake-slack.js";
import { waitFor } from "./support/wait.js";

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
    // Each tick that found notices due said so once (what becomes the `scheduler reminders` span).
    expect(
      bed.events.flatMap((e) =>
        e.type === "notices_due" ? [[e.reminders, e.escalations, e.approvals]] : [],
      ),
    ).toEqual([
      [1, 0, 1],
      [1, 0, 1],
      [0, 1, 1],
    ]);
    expect(
      bed.slack.messages().filter((m) => m.metadata?.event_payload.approval_id === decidedEarly),
    ).toHaveLength(1);

    // The escalation users are messaged directly too, once.
    const dm = posted(id, "escalation-dm:");
    expect(dm.map((m) => m.channel)).toEqual([await dmChannelOf("UONCALL")]);
    expect(dm[0]?.text).toContain("has no decision yet");

    // Each reminder and escalation is audited and counted.
    const noticesAudited = () =>
      readFileSync(bed.ts.auditPath, "utf8")
        .split("\n")
        .map((l) => parseAuditLine(l) as (Record<string, unknown> & { type: string }) | undefined)
        .filter((l) => l?.approval_id === id && (l.type === "reminded" || l.type === "escalated"))
        .map((l) => [l?.type, l?.notice, l?.channel]);
    await waitFor(() => noticesAudited().length >= 5, 15_000, "the reminded and escalated audit lines");
    const notices = noticesAudited();
    expect(notices).toEqual([
      ["reminded", "reminder", "C0PROD"],
      ["reminded", "reminder", "C0PROD"],
      ["escalated", "escalation", "C0PROD"],
      ["escalated", "escalation_notice", "C0ESC"],
      ["escalated", "escalation_dm", "UONCALL"],
    ]);
    const metrics = parsePrometheusText(await (await fetch(`${bed.ts.server.opsUrl}/metrics`)).text());
    expect(metrics.value("countersign_reminders_total", { action: "deploy.production" })).toBe(2);
    expect(metrics.value("countersign_escalations_total", { action: "deploy.production" })).toBe(1);
  });

  it("logs, audits and counts a post Slack refuses for good", async () => {
    bed.slack.inject("chat.postMessage", { kind: "error", error: "invalid_blocks" }, 1);
    const { approvals } = bed.ts.clients(undefined, "connect");
    const id =
      (await approvals.createApproval({ action: "deploy.production", title: "Nowhere to go" })).approval
        ?.id ?? "";
    await waitFor(
      () => bed.events.some((e) => e.type === "post_failed" && e.approvalId === id),
      15_000,
      "the post_failed event",
    );
    const failed = bed.events.find((e) => e.type === "post_failed" && e.approvalId === id);
    expect(failed).toMatchObject({ method: "chat.postMessage", error: "invalid_blocks" });
    const auditedLine = () =>
      readFileSync(bed.ts.auditPath, "utf8")
        .split("\n")
        .map((l) => parseAuditLine(l))
        .find((l) => l?.type === "notification_failed" && l.approval_id === id);
    await waitFor(() => auditedLine() !== undefined, 15_000, "the notification_failed audit line");
    const audited = auditedLine();
    expect(audited).toMatchObject({
      method: "chat.postMessage",
      error: "invalid_blocks",
      actor: "slack-gateway",
    });
    const metrics = parsePrometheusText(await (await fetch(`${bed.ts.server.opsUrl}/metrics`)).text());
    expect(
      metrics.value("countersign_slack_posts_failed_total", {
        method: "chat.postMessage",
        error: "invalid_blocks",
      }),
    ).toBe(1);
  });
});

/** The DM channel the fake Slack opens for a user. */
async function dmChannelOf(user: string): Promise<string> {
  const open = bed.slack.callsTo("conversations.open").find((c) => String(c.args.users) === user);
  return String((open?.response?.channel as { id?: string } | undefined)?.id);
}
