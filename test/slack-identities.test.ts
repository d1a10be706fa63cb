/**
 * People named by e-mail and people clicking in Slack are the same people: the gateway resolves the
 * clicker's e-mail (`users.info`) and the service compares every identity, so nobody approves their own
 * request by being named one way and clicking as the other, and an identity that cannot be resolved is
 * refused, never allowed.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Decision } from "../gen/countersign/v1/approval_pb.js";
import { createTestPki, type TestPki, testIdentities } from "./support/certs.js";
import { type SlackTestbed, startSlackTestbed } from "./support/fake-slack.js";

const policy = `
version: 1
defaults: { channel: C0DEFAULT, timeout: 10m, unknown_action: deny }
policies:
  - name: by-email
    match: "deploy.mail"
    channel: C0MAIL
    approvers: { users: [U1, carol@example.com, U2] }
    required_approvals: 2
`;

let pki: TestPki;
let bed: SlackTestbed;

beforeAll(async () => {
  pki = createTestPki();
  bed = await startSlackTestbed({ pki, policy, flags: { deciders: testIdentities.decider } });
  bed.slack.setUserEmail("U9", "Alice@Example.com");
  bed.slack.setUserEmail("U1", "bob@example.com");
  bed.slack.setUserEmail("U5", "carol@example.com");
  // U7 has no e-mail address in their Slack profile.
});
afterAll(async () => {
  await bed?.close();
});

async function create(onBehalfOf: string) {
  const { approvals } = bed.ts.clients(pki.requester, "grpc");
  const id = (await approvals.createApproval({ action: "deploy.mail", title: "Mail", onBehalfOf })).approval
    ?.id;
  if (id === undefined) throw new Error("no approval");
  await bed.waitForMessage(id, () => true, "the approval message");
  return id;
}

const votes = async (id: string) =>
  (await bed.ts.clients(pki.requester, "connect").approvals.getApproval({ id })).approval?.votes.map((v) => [
    v.approver,
    v.decision,
  ]);

function told(user: string, fragment: string) {
  return bed.slack.waitFor(
    () => bed.slack.ephemerals().find((e) => e.user === user && e.text.includes(fragment)),
    `an ephemeral message to ${user} containing ${JSON.stringify(fragment)}`,
  );
}

describe("identities in Slack", () => {
  it("refuses the requester's own vote however they are named: e-mail in any case, id, or mention", async () => {
    for (const onBehalfOf of ["alice@example.com", "ALICE@example.COM", "U9", "<@U9>"]) {
      const id = await create(onBehalfOf);
      const before = bed.slack.ephemerals().filter((e) => e.user === "U9").length;
      await bed.click("U9", "countersign_approve", id);
      await bed.slack.waitFor(
        () => bed.slack.ephemerals().filter((e) => e.user === "U9").length > before,
        `the refusal of ${onBehalfOf}'s own vote`,
      );
      const answer = bed.slack.ephemerals().filter((e) => e.user === "U9")[before]?.text ?? "";
      expect(answer, onBehalfOf).toMatch(
        /U9 requested this approval( \(as alice@example\.com\))? and cannot decide it/,
      );
      expect(await votes(id), onBehalfOf).toEqual([]);
    }
  });

  it("refuses a vote when the clicker's e-mail cannot be found and the request names someone by e-mail", async () => {
    const id = await create("alice@example.com");
    await bed.click("U7", "countersign_approve", id);
    await told("U7", "could not look up your e-mail address in Slack");
    expect(await votes(id)).toEqual([]);
    const refusal = bed.events.find(
      (e) => e.type === "unauthorized" && e.approvalId === id && e.user === "U7",
    );
    expect(refusal).toMatchObject({ code: "permission_denied", source: "gateway" });
  });

  it("counts an approver listed by e-mail when they click, and only once however they vote", async () => {
    const id = await create("U9");
    // Carol votes through the API by e-mail, then clicks in Slack: one person, one vote.
    await bed.ts
      .clients(pki.decider, "grpc")
      .approvals.submitDecision({ id, approver: "carol@example.com", decision: Decision.APPROVE });
    await bed.click("U5", "countersign_approve", id);
    await bed.waitForMessage(
      id,
      (m) => JSON.stringify(m.blocks).includes("1 of 2 approvals"),
      "one approval",
    );
    // U1 (bob) completes the quorum; carol's click changed nothing.
    await bed.click("U1", "countersign_approve", id);
    await bed.waitForMessage(id, (m) => JSON.stringify(m.blocks).includes("Approved"), "the approval");
    expect(await votes(id)).toEqual([
      ["carol@example.com", Decision.APPROVE],
      ["U1", Decision.APPROVE],
    ]);

    // Clicking first, as a Slack user listed only by e-mail, counts too.
    const other = await create("U9");
    await bed.click("U5", "countersign_approve", other);
    await bed.waitForMessage(
      other,
      (m) => JSON.stringify(m.blocks).includes("1 of 2 approvals"),
      "U5's vote",
    );
    expect(await votes(other)).toEqual([["U5", Decision.APPROVE]]);
  });
});
