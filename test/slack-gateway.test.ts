import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Decision, State } from "../gen/countersign/v1/approval_pb.js";
import { createTestPki, type TestPki, testIdentities } from "./support/certs.js";
import { type SlackTestbed, startSlackTestbed } from "./support/fake-slack.js";
import { blockActionPayload } from "./support/slack-signing.js";

let pki: TestPki;
let bed: SlackTestbed;

beforeAll(async () => {
  pki = createTestPki();
  bed = await startSlackTestbed({ pki, flags: { deciders: testIdentities.decider } });
});
afterAll(async () => {
  await bed?.close();
});

/** Text of every block of a message, for assertions on what people see. */
function textOf(m: { text: string; blocks: unknown[] }): string {
  return JSON.stringify(m.blocks);
}

function actionIds(m: { blocks: unknown[] }): string[] {
  return (m.blocks as { type: string; elements?: { action_id?: string }[] }[])
    .filter((b) => b.type === "actions")
    .flatMap((b) => (b.elements ?? []).map((e) => e.action_id ?? ""));
}

describe("Slack gateway end to end", () => {
  it("posts the request, turns signed clicks into decisions that reach a WatchApproval stream, and updates the message", async () => {
    const { approvals } = bed.ts.clients(pki.requester, "grpc");
    const { approval } = await approvals.createApproval({
      action: "deploy.production",
      title: "Deploy api v42",
      justification: "hotfix for <!channel> outage",
      params: { service: "api", version: "v42", api_token: "s3cr3t-value" },
      onBehalfOf: "U9",
      origin: {
        repo: "acme/api",
        branch: "main",
        links: [{ label: "CI run", url: "https://ci.example/run/1" }],
      },
    });
    const id = approval?.id ?? "";
    const posted = await bed.waitForMessage(id, () => true, "the approval message");
    expect(posted.channel).toBe("C0PROD");
    const text = textOf(posted);
    expect(text).toContain("<@U9>");
    expect(text).toContain(approval?.paramsSha256.slice(0, 12));
    expect(text).not.toContain("s3cr3t-value");
    expect(text).toContain("&lt;!channel&gt;");
    expect(actionIds(posted)).toEqual(["countersign_approve", "countersign_deny", "countersign_info"]);

    const seen: State[] = [];
    const watching = (async () => {
      for await (const msg of approvals.watchApproval({ id })) {
        if (!msg.heartbeat) seen.push(msg.approval?.state ?? State.UNSPECIFIED);
      }
    })();

    const first = await bed.click("U1", "countersign_approve", id);
    expect(first.status).toBe(200);
    await bed.waitForMessage(id, (m) => textOf(m).includes("<@U1> approved"), "U1's vote on the message");
    const second = await bed.click("U2", "countersign_approve", id);
    expect(second.status).toBe(200);
    await watching;
    expect(seen[0]).toBe(State.PENDING);
    expect(seen.at(-1)).toBe(State.APPROVED);
    const final = await bed.waitForMessage(
      id,
      (m) => textOf(m).includes("Approved"),
      "the outcome on the message",
    );
    expect(actionIds(final)).toEqual([]);
    expect(textOf(final)).toContain("<@U2>");
    const got = await approvals.getApproval({ id });
    expect(got.approval?.votes.map((v) => [v.approver, v.decision])).toEqual([
      ["U1", Decision.APPROVE],
      ["U2", Decision.APPROVE],
    ]);
    expect(bed.slack.callsTo("chat.postMessage").filter((c) => c.args.channel === "C0PROD")).toHaveLength(1);
  });

  it("answers clicks that are not allowed with an ephemeral message saying why, and changes nothing", async () => {
    const { approvals } = bed.ts.clients(pki.requester, "connect");
    const create = async (action: string, onBehalfOf = "U9") =>
      (await approvals.createApproval({ action, title: `t ${action}`, onBehalfOf })).approval?.id ?? "";
    const told = (user: string, fragment: string) =>
      bed.slack.waitFor(
        () => bed.slack.ephemerals().find((e) => e.user === user && e.text.includes(fragment)),
        `an ephemeral message to ${user} containing ${JSON.stringify(fragment)}`,
      );

    const prod = await create("deploy.production.eu");
    await bed.click("U7", "countersign_approve", prod);
    await told("U7", "U7 is not an approver of this action");
    await bed.click("U9", "countersign_approve", prod);
    await told("U9", "U9 requested this approval and cannot decide it");

    const migration = await create("db.migrate");
    await bed.click("U1", "countersign_approve", migration);
    await told("U1", 'co-sign stage "qa" must be acknowledged before approvals count');

    for (const id of [prod, migration]) {
      expect((await approvals.getApproval({ id })).approval?.votes).toEqual([]);
    }
    const refusals = bed.events.filter(
      (e) => e.type === "unauthorized" && [prod, migration].includes(e.approvalId),
    );
    expect(refusals.map((e) => e.type === "unauthorized" && [e.user, e.code])).toEqual([
      ["U7", "permission_denied"],
      ["U9", "permission_denied"],
      ["U1", "failed_precondition"],
    ]);

    const staging = await create("deploy.staging");
    await bed.click("U1", "countersign_approve", staging);
    await bed.waitForMessage(staging, (m) => textOf(m).includes("Approved"), "the staging approval decided");
    await bed.click("U2", "countersign_approve", staging);
    await told("U2", "is already approved");
    expect((await approvals.getApproval({ id: staging })).approval?.votes.map((v) => v.approver)).toEqual([
      "U1",
    ]);
  });

  it("runs co-sign stages in order: Acknowledge first, then Approve", async () => {
    const { approvals } = bed.ts.clients(pki.requester, "grpc");
    const id =
      (await approvals.createApproval({ action: "db.migrate", title: "Migrate users table" })).approval?.id ??
      "";
    const posted = await bed.waitForMessage(id, () => true, "the migration message");
    expect(actionIds(posted)).toEqual([
      "countersign_acknowledge",
      "countersign_approve",
      "countersign_deny",
      "countersign_info",
    ]);
    expect(textOf(posted)).toContain("waiting for co-sign stage *qa*: 0 of 1 acknowledgements");
    await bed.click("UQA", "countersign_acknowledge", id);
    const acknowledged = await bed.waitForMessage(
      id,
      (m) => textOf(m).includes("<@UQA> acknowledged (qa)"),
      "the co-sign",
    );
    expect(actionIds(acknowledged)).not.toContain("countersign_acknowledge");
    await bed.click("U1", "countersign_approve", id);
    await bed.waitForMessage(id, (m) => textOf(m).includes("Approved"), "the approval");
    expect((await approvals.getApproval({ id })).approval?.state).toBe(State.APPROVED);
  });

  it("resolves the clicker's Slack user groups when the policy names groups", async () => {
    bed.slack.setUserGroup("S0RELEASE", ["U5", "U6"]);
    const { approvals } = bed.ts.clients(pki.requester, "grpc");
    const id =
      (await approvals.createApproval({ action: "deploy.production", title: "Group vote" })).approval?.id ??
      "";
    await bed.click("U5", "countersign_approve", id);
    await bed.waitForMessage(id, (m) => textOf(m).includes("<@U5> approved"), "the group member's vote");
    expect(bed.slack.callsTo("usergroups.users.list").at(-1)?.args.usergroup).toBe("S0RELEASE");
  });

  it("makes a repeated click (same Slack action, signed again) a no-op", async () => {
    const { approvals } = bed.ts.clients(pki.requester, "grpc");
    const id =
      (await approvals.createApproval({ action: "deploy.production", title: "Retry" })).approval?.id ?? "";
    const message = await bed.waitForMessage(id, () => true, "the message");
    const payload = blockActionPayload({
      user: "U1",
      actionId: "countersign_approve",
      approvalId: id,
      channel: message.channel,
      messageTs: message.ts,
    });
    expect((await bed.interact(payload)).status).toBe(200);
    // A new timestamp gives a new signature: not a replay, but the same interaction.
    expect((await bed.interact(payload, { timestampSec: bed.nowSec() + 1 })).status).toBe(200);
    await bed.waitForMessage(id, (m) => textOf(m).includes("<@U1> approved"), "the vote");
    await bed.slack.waitFor(
      () => bed.slack.calls.filter((c) => c.method === "chat.update" && c.args.ts === message.ts).length > 0,
      "the update",
    );
    const votes = (await approvals.getApproval({ id })).approval?.votes ?? [];
    expect(votes.map((v) => v.approver)).toEqual(["U1"]);
  });

  it("answers More info with the details, redacted, for the clicker only", async () => {
    const { approvals } = bed.ts.clients(pki.requester, "grpc");
    const id =
      (
        await approvals.createApproval({
          action: "deploy.production",
          title: "Details",
          params: { service: "billing", api_token: "hunter2-secret" },
        })
      ).approval?.id ?? "";
    await bed.click("U3", "countersign_info", id);
    const details = await bed.slack.waitFor(
      () =>
        bed.slack
          .callsTo("chat.postEphemeral")
          .find((c) => c.args.user === "U3" && JSON.stringify(c.args).includes(id)),
      "the details",
    );
    const shown = JSON.stringify(details.args);
    expect(shown).toContain("billing");
    expect(shown).not.toContain("hunter2-secret");
  });

  it("shows Re-request on a denied approval; only the person it was for may use it", async () => {
    const { approvals } = bed.ts.clients(pki.requester, "grpc");
    const { approvals: decider } = bed.ts.clients(pki.decider, "grpc");
    const id =
      (await approvals.createApproval({ action: "deploy.production", title: "Try me", onBehalfOf: "U9" }))
        .approval?.id ?? "";
    await decider.submitDecision({ id, approver: "U1", decision: Decision.DENY, reason: "not now" });
    const denied = await bed.waitForMessage(id, (m) => textOf(m).includes("Denied"), "the denial");
    expect(actionIds(denied)).toEqual(["countersign_rerequest"]);
    expect(textOf(denied)).toContain("not now");

    await bed.click("U1", "countersign_rerequest", id);
    await bed.slack.waitFor(
      () => bed.slack.ephemerals().find((e) => e.user === "U1" && e.text.includes("only U9")),
      "the refusal",
    );
    await bed.click("U9", "countersign_rerequest", id);
    const told = await bed.slack.waitFor(
      () => bed.slack.ephemerals().find((e) => e.user === "U9" && e.text.includes("Asked again")),
      "the confirmation",
    );
    const newId = /`([0-9A-Z]+)`/.exec(told.text)?.[1] ?? "";
    const again = (await approvals.getApproval({ id: newId })).approval;
    expect(again?.rerequestOf).toBe(id);
    expect(again?.requester).toBe((await approvals.getApproval({ id })).approval?.requester);
    await bed.waitForMessage(newId, () => true, "the new request's message");
  });

  it("messages each approver directly in DM mode and keeps every DM up to date", async () => {
    const { approvals } = bed.ts.clients(pki.requester, "grpc");
    const id =
      (
        await approvals.createApproval({
          action: "secrets.rotate",
          title: "Rotate the DB password",
          params: { secret_name: "db-password", new_value: "correct-horse-battery" },
        })
      ).approval?.id ?? "";
    const dms = await bed.slack.waitFor(() => {
      const list = bed.slack.messages().filter((m) => m.metadata?.event_payload.approval_id === id);
      return list.length === 2 ? list : undefined;
    }, "two DMs");
    expect(dms.map((m) => m.channel).sort()).toEqual(["DU1", "DU2"]);
    for (const m of dms) {
      expect(textOf(m)).toContain("db-password");
      expect(textOf(m)).not.toContain("correct-horse-battery");
    }
    const dm = dms.find((m) => m.channel === "DU2");
    await bed.interact(
      blockActionPayload({
        user: "U2",
        actionId: "countersign_approve",
        approvalId: id,
        channel: "DU2",
        messageTs: dm?.ts ?? "",
      }),
    );
    await bed.slack.waitFor(
      () =>
        bed.slack
          .messages()
          .filter((m) => m.metadata?.event_payload.approval_id === id && textOf(m).includes("Approved"))
          .length === 2,
      "both DMs showing the outcome",
    );
  });
});
