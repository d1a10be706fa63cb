import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { State } from "../gen/countersign/v1/approval_pb.js";
import { type SlackTestbed, startSlackTestbed } from "./support/fake-slack.js";
import { blockActionPayload, viewSubmissionPayload } from "./support/slack-signing.js";

let bed: SlackTestbed;

beforeAll(async () => {
  bed = await startSlackTestbed({ socketMode: true });
});
afterAll(async () => {
  await bed?.close();
});

describe("Socket Mode (SLACK_APP_TOKEN)", () => {
  it("receives clicks and modal submissions over the WebSocket instead of the HTTP endpoint", async () => {
    expect(bed.ts.server.slackEventsUrl).toBeUndefined();
    await bed.slack.waitFor(() => bed.slack.socketConnected(), "the Socket Mode connection");
    const { approvals } = bed.ts.clients(undefined, "connect");
    const id =
      (await approvals.createApproval({ action: "deploy.staging", title: "Over a socket" })).approval?.id ??
      "";
    const message = await bed.waitForMessage(id, () => true, "the message");

    const opened = bed.slack.callsTo("views.open").length;
    const click = await bed.slack.sendEnvelope(
      "interactive",
      blockActionPayload({
        user: "U1",
        actionId: "countersign_deny",
        approvalId: id,
        channel: message.channel,
        messageTs: message.ts,
      }),
    );
    expect(click.elapsedMs).toBeLessThan(3_000);
    const view = (await bed.slack.waitFor(() => bed.slack.callsTo("views.open")[opened], "the Deny modal"))
      .response?.view as Record<string, unknown>;

    const refused = await bed.slack.sendEnvelope(
      "interactive",
      viewSubmissionPayload({ user: "U1", view, values: {} }),
    );
    expect(refused.payload).toEqual({
      response_action: "errors",
      errors: { reason: 'policy "staging-deploy" requires a reason to deny' },
    });
    await bed.slack.sendEnvelope(
      "interactive",
      viewSubmissionPayload({ user: "U1", view, values: { reason: "over the socket" } }),
    );
    const denied = (await approvals.getApproval({ id })).approval;
    expect(denied?.state).toBe(State.DENIED);
    expect(denied?.reason).toBe("over the socket");
    await bed.waitForMessage(id, (m) => JSON.stringify(m.blocks).includes("Denied"), "the outcome");
  });
});
