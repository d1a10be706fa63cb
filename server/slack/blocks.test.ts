import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { buildApproval, type CreateInput } from "../domain/lifecycle.js";
import type { Approval, JsonObject, Policy, PolicySet, Redaction } from "../domain/types.js";
import {
  renderApprovalDetails,
  renderApprovalMessage,
  renderEscalation,
  renderEscalationNotice,
  renderReminder,
  slackActions,
  visibleParams,
} from "./blocks.js";
import { denyModal, editModal } from "./modals.js";

const now = Date.UTC(2026, 0, 1, 12);

function policy(overrides: Partial<Policy> = {}): Policy {
  return {
    name: "production-deploy",
    match: "deploy.production*",
    description: "",
    channel: "C0PROD",
    dm: false,
    approvers: { users: ["U1", "U2"], groups: ["S0RELEASE"] },
    superApprovers: [],
    requiredApprovals: 2,
    denyThreshold: 1,
    denyReasonRequired: false,
    stages: [],
    timeoutMs: 30 * 60_000,
    remindersMs: [10 * 60_000],
    escalation: { afterMs: 25 * 60_000, channel: "C0ESC", users: ["UONCALL"] },
    redaction: { mode: "none", keys: [] },
    overrides: { keys: [], maxKeys: 1, maxDiffBytes: 64, requestKeys: [] },
    rerequest: { allowed: true, cooldownMs: 0, maxPerDay: 3 },
    ...overrides,
  };
}

function approval(input: Partial<CreateInput> = {}, p: Policy = policy()): Approval {
  const set: PolicySet = {
    sha256: "f".repeat(64),
    defaults: { channel: "C0DEFAULT", timeoutMs: 600_000, unknownAction: "deny", superApprovers: [] },
    policies: [p],
  };
  return {
    ...buildApproval(
      {
        action: "deploy.production",
        title: "Deploy api v42",
        justification: "",
        params: { service: "api" },
        idempotencyKey: "",
        onBehalfOf: "",
        origin: { repo: "", branch: "", pullRequest: "", runId: "", links: [] },
        overrides: {},
        rerequestOf: "",
        ...input,
      },
      { id: "01TESTAPPROVAL", requester: "spiffe://ci", now, policySet: set, policy: p },
    ),
    version: 1,
  };
}

const all = (a: Approval) =>
  JSON.stringify([
    renderApprovalMessage(a),
    renderApprovalDetails(a),
    renderReminder(a, 0),
    renderEscalation(a),
    renderEscalationNotice(a, "https://slack.test/archives/C0PROD/p1"),
    denyModal(a, { approvalId: a.id, channel: "C0PROD" }),
    editModal(a, { approvalId: a.id, channel: "C0PROD" }),
  ]);

function actions(a: Approval): string[] {
  return (renderApprovalMessage(a).blocks as { type: string; elements?: { action_id?: string }[] }[])
    .filter((b) => b.type === "actions")
    .flatMap((b) => (b.elements ?? []).map((e) => e.action_id ?? ""));
}

describe("approval message", () => {
  it("mentions Slack users, escapes everything a requester wrote, and shows the hash prefix", () => {
    const a = approval({
      onBehalfOf: "U9",
      title: "Deploy <@U1> & co",
      justification: "please <!channel> > now",
      origin: {
        repo: "acme/api",
        branch: "main",
        pullRequest: "https://git.example/pr/7",
        runId: "99",
        links: [{ label: "run|x", url: "https://ci.example/1?a=b|c" }],
      },
    });
    const text = JSON.stringify(renderApprovalMessage(a).blocks);
    expect(text).toContain("for <@U9>");
    expect(text).toContain("requested by `spiffe://ci`");
    expect(text).toContain("please &lt;!channel&gt; &gt; now");
    expect(text).not.toContain("<!channel>");
    expect(text).toContain(`\`${a.paramsSha256.slice(0, 12)}\``);
    expect(text).not.toContain(a.paramsSha256);
    expect(text).toContain("<https://ci.example/1?a=b%7Cc|run/x>");
    expect(text).toContain("<https://git.example/pr/7|pull request>");
    expect(text).toContain("<@U1>, <@U2>, <!subteam^S0RELEASE>");
    expect(renderApprovalMessage(a).text).toBe(
      "Approval requested: Deploy &lt;@U1&gt; &amp; co (deploy.production)",
    );
  });

  it("has the buttons a pending approval needs, and none once finished except Re-request where allowed", () => {
    const pending = approval();
    expect(actions(pending)).toEqual([slackActions.approve, slackActions.deny, slackActions.info]);
    const editable = approval(
      {},
      policy({ overrides: { keys: ["version"], maxKeys: 1, maxDiffBytes: 64, requestKeys: [] } }),
    );
    expect(actions(editable)).toEqual([
      slackActions.approve,
      slackActions.deny,
      slackActions.edit,
      slackActions.info,
    ]);
    const staged = approval(
      {},
      policy({ stages: [{ name: "qa", members: { users: ["UQA"], groups: [] }, required: 1 }] }),
    );
    expect(actions(staged)).toEqual([
      slackActions.acknowledge,
      slackActions.approve,
      slackActions.deny,
      slackActions.info,
    ]);
    const finish = (a: Approval, state: Approval["state"]): Approval => ({
      ...a,
      state,
      decidedBy: "U2",
      decideTime: now + 1,
      reason: "r",
    });
    expect(actions(finish(pending, "approved"))).toEqual([]);
    expect(actions(finish(pending, "cancelled"))).toEqual([]);
    expect(actions(finish(pending, "denied"))).toEqual([slackActions.rerequest]);
    expect(actions(finish(pending, "expired"))).toEqual([slackActions.rerequest]);
    const noRerequest = approval({}, policy({ rerequest: { allowed: false, cooldownMs: 0, maxPerDay: 0 } }));
    expect(actions(finish(noRerequest, "denied"))).toEqual([]);
    expect(JSON.stringify(renderApprovalMessage(finish(pending, "approved")).blocks)).toContain(
      "*Approved* by <@U2>",
    );
  });

  it("keeps to Slack's limits with huge values", () => {
    const a = approval({
      title: "t".repeat(200),
      justification: "j".repeat(4000),
      params: { blob: "x".repeat(16_000) },
    });
    const { blocks } = renderApprovalMessage(a);
    for (const b of blocks as { type: string; text?: { text: string } }[]) {
      if (b.type === "header") expect(b.text?.text.length).toBeLessThanOrEqual(150);
      if (b.type === "section") expect(b.text?.text.length).toBeLessThanOrEqual(3000);
    }
  });
});

describe("redaction", () => {
  const modes: Redaction[] = [
    { mode: "all", keys: [] },
    { mode: "allowlist", keys: ["service"] },
    { mode: "denylist", keys: ["token", "password", "version"] },
  ];

  it("never renders a hidden param, in any message, modal or edit record", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...modes),
        fc.dictionary(
          fc.constantFrom("token", "password", "version", "nested"),
          fc.uint8Array({ minLength: 6, maxLength: 12 }),
          {
            minKeys: 1,
          },
        ),
        fc.boolean(),
        (redaction, secrets, editable) => {
          const hidden: JsonObject = {};
          const values: string[] = [];
          for (const [key, bytes] of Object.entries(secrets)) {
            const secret = `SECRET${Buffer.from(bytes).toString("hex")}`;
            values.push(secret);
            hidden[key] = key === "nested" ? { deep: [secret] } : secret;
          }
          const p = policy({
            redaction,
            overrides: editable
              ? { keys: ["version", "token"], maxKeys: 2, maxDiffBytes: 64, requestKeys: [] }
              : { keys: [], maxKeys: 1, maxDiffBytes: 64, requestKeys: [] },
          });
          const base = approval({ params: { service: "api", ...hidden } }, p);
          const shown = visibleParams(base).shown;
          const secretsHidden = values.filter((v) => !JSON.stringify(shown).includes(v));
          const withEdit: Approval = {
            ...base,
            edits: [
              {
                editor: "U1",
                time: now,
                changes: Object.keys(hidden).map((key) => ({
                  key,
                  before: hidden[key] ?? null,
                  after: `${key}-SECRETNEW`,
                })),
                paramsSha256Before: "a".repeat(64),
                paramsSha256After: "b".repeat(64),
              },
            ],
          };
          const rendered = all(withEdit);
          for (const secret of secretsHidden) expect(rendered).not.toContain(secret);
          for (const key of Object.keys(hidden)) {
            if (!(key in shown)) expect(rendered).not.toContain(`${key}-SECRETNEW`);
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  it("shows what the policy allows and says how many params are hidden", () => {
    const a = approval(
      { params: { service: "api", version: "v42", token: "t0k3n" } },
      policy({ redaction: { mode: "denylist", keys: ["token"] } }),
    );
    const text = JSON.stringify(renderApprovalMessage(a).blocks);
    expect(text).toContain("v42");
    expect(text).toContain("1 param is hidden by policy");
    expect(text).not.toContain("t0k3n");
  });
});

describe("reminders and escalation", () => {
  it("remind the approvers who have not voted yet, and escalate to the fallback people", () => {
    const a = approval({}, policy());
    const voted: Approval = {
      ...a,
      votes: [
        {
          approver: "U1",
          decision: "approve",
          reason: "",
          time: now,
          stage: "",
          submittedBy: "gw",
          interactionId: "",
        },
      ],
    };
    expect(renderReminder(voted, 0).text).toContain("from <@U2>, <!subteam^S0RELEASE>");
    expect(renderReminder(voted, 0).text).toContain("Reminder 1");
    expect(renderEscalation(a).text).toContain("<@UONCALL>, please take a look");
    expect(renderEscalationNotice(a, "https://slack.test/x").text).toContain(
      "<https://slack.test/x|Open the request>",
    );
  });
});
