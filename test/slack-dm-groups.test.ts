import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { State } from "../gen/countersign/v1/approval_pb.js";
import { createTestPki, type TestPki, testIdentities } from "./support/certs.js";
import { type SlackTestbed, slackTestPolicy, startSlackTestbed } from "./support/fake-slack.js";
import { blockActionPayload } from "./support/slack-signing.js";

// Two DM-mode policies with user groups: one whose group Slack lists, one whose group it does not know.
const policy = `${slackTestPolicy}
  - name: access-grant
    match: "access.grant"
    dm: true
    approvers: { users: [U1], groups: [S0SEC] }
  - name: access-revoke
    match: "access.revoke"
    dm: true
    approvers: { users: [U1], groups: [S0GONE] }
`;

let pki: TestPki;
let bed: SlackTestbed;

beforeAll(async () => {
  pki = createTestPki();
  bed = await startSlackTestbed({ pki, policy, flags: { deciders: testIdentities.decider } });
});
afterAll(async () => {
  await bed?.close();
});

const requestsOf = (id: string) =>
  bed.slack
    .messages()
    .filter((m) => m.metadata?.event_payload.approval_id === id && m.threadTs === undefined);

describe("Slack DM mode with user groups", () => {
  it("messages each member of the policy's user groups directly, besides the listed users", async () => {
    bed.slack.setUserGroup("S0SEC", ["U7", "U8", "U1"]);
    const { approvals } = bed.ts.clients(pki.requester, "grpc");
    const id =
      (await approvals.createApproval({ action: "access.grant", title: "Grant prod" })).approval?.id ?? "";
    const dms = await bed.slack.waitFor(() => {
      const list = requestsOf(id);
      return list.length === 3 ? list : undefined;
    }, "three DMs");
    expect(dms.map((m) => m.channel).sort()).toEqual(["DU1", "DU7", "DU8"]);
    expect(bed.slack.callsTo("usergroups.users.list").map((c) => c.args.usergroup)).toContain("S0SEC");

    // A member approves from their own DM: the vote counts through the group, and every DM shows it.
    const dm = dms.find((m) => m.channel === "DU8");
    await bed.interact(
      blockActionPayload({
        user: "U8",
        actionId: "countersign_approve",
        approvalId: id,
        channel: "DU8",
        messageTs: dm?.ts ?? "",
      }),
    );
    await bed.slack.waitFor(
      () => requestsOf(id).filter((m) => JSON.stringify(m.blocks).includes("Approved")).length === 3,
      "all three DMs showing the outcome",
    );
    const decided = (await approvals.getApproval({ id })).approval;
    expect(decided?.state).toBe(State.APPROVED);
    expect(decided?.votes.map((v) => v.approver)).toEqual(["U8"]);
  });

  it("still messages the listed users when Slack cannot list a group, and reports the group", async () => {
    const { approvals } = bed.ts.clients(pki.requester, "grpc");
    const id =
      (await approvals.createApproval({ action: "access.revoke", title: "Revoke prod" })).approval?.id ?? "";
    const failed = await bed.slack.waitFor(
      () =>
        bed.events.find(
          (e) => e.type === "post_failed" && e.approvalId === id && e.key === "request-group:S0GONE",
        ),
      "the group reported",
    );
    expect(failed).toMatchObject({ method: "usergroups.users.list", error: "no_such_subteam" });
    const dms = await bed.slack.waitFor(() => {
      const list = requestsOf(id);
      return list.length === 1 ? list : undefined;
    }, "the listed user's DM");
    expect(dms.map((m) => m.channel)).toEqual(["DU1"]);
  });
});
