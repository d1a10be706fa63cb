import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { paramsDisplay } from "../domain/display-text.js";
import { applyParamsEdit } from "../domain/governance.js";
import { canonicalJson, canonicalSha256 } from "../domain/hashing.js";
import { buildApproval, type CreateInput } from "../domain/lifecycle.js";
import { isParamVisible } from "../domain/redaction.js";
import type { Approval, JsonObject, JsonValue, Policy, PolicySet, Redaction } from "../domain/types.js";
import {
  renderApprovalDetails,
  renderApprovalMessage,
  renderEscalation,
  renderEscalationNotice,
  renderReminder,
  type SlackMessageContent,
  slackActions,
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
          const shown = paramsDisplay(base.params, base.rules.redaction).shown;
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
    expect(text).toContain("_Hidden by policy (1):_ `token`");
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

/** Keys that are special to JavaScript objects, and text that is special to Slack or to people. */
const hostileKey = fc.oneof(
  fc.constantFrom(
    "__proto__",
    "constructor",
    "prototype",
    "toString",
    "hasOwnProperty",
    "valueOf",
    "",
    " ",
    "`",
    "```",
    '"q"',
    "a\u202Eb",
    "\u200B",
    "<!channel>",
    "&amp;",
    "\\u202E",
  ),
  fc.string({ unit: "binary", maxLength: 12 }),
);
const hostileText = fc.string({
  unit: fc.oneof(
    fc.constantFrom(
      "\u202E",
      "\u2066",
      "\u200B",
      "\u200D",
      "\u0000",
      "\u001B",
      "\n",
      "`",
      "<",
      "&",
      "*",
      "😀",
    ),
    fc.string({ unit: "binary", minLength: 1, maxLength: 1 }),
  ),
  maxLength: 40,
});
/** Nested params whose keys may be any of the above: objects built with own keys only. */
const hostileParams: fc.Arbitrary<JsonObject> = fc.letrec<{ value: JsonValue; object: JsonObject }>(
  (tie) => ({
    value: fc.oneof(
      { depthSize: "small" },
      hostileText,
      fc.integer(),
      fc.boolean(),
      fc.constant(null),
      fc.array(tie("value"), { maxLength: 3 }),
      tie("object"),
    ),
    object: fc
      .uniqueArray(fc.tuple(hostileKey, tie("value")), { selector: ([k]) => k, maxLength: 5 })
      .map((entries) => Object.fromEntries(entries) as JsonObject),
  }),
).object;
const anyRedaction = (keys: string[]): fc.Arbitrary<Redaction> =>
  fc.oneof(
    fc.constant<Redaction>({ mode: "none", keys: [] }),
    fc.constant<Redaction>({ mode: "all", keys: [] }),
    fc.subarray(keys).map((k): Redaction => ({ mode: "allowlist", keys: k })),
    fc.subarray(keys).map((k): Redaction => ({ mode: "denylist", keys: k })),
  );

type Block = { type: string; text?: { text: string }; elements?: { text?: string | { text: string } }[] };
const sectionsOf = (m: SlackMessageContent) =>
  (m.blocks as Block[]).filter((b) => b.type === "section").map((b) => b.text?.text ?? "");
const unescapeMrkdwn = (text: string) =>
  text.replaceAll("&lt;", "<").replaceAll("&gt;", ">").replaceAll("&amp;", "&");

/** The params JSON an approver reads: the code blocks that follow "*Params:*", joined. */
function paramsRead(sections: string[]): JsonObject | undefined {
  const start = sections.findIndex((s) => s.startsWith("*Params:*"));
  let text = "";
  for (let i = start; i >= 0 && i < sections.length; i++) {
    const body = i === start ? (sections[i] ?? "").slice("*Params:*\n".length) : (sections[i] ?? "");
    const code = /^```([\s\S]*)```$/.exec(body);
    if (code === null) break;
    text += unescapeMrkdwn(code[1] ?? "");
  }
  return text === "" ? undefined : (JSON.parse(text) as JsonObject);
}

/** The key names listed after "Hidden by policy": bare names, or JSON strings when they need escapes. */
function hiddenRead(sections: string[]): string[] {
  const start = sections.findIndex((s) => s.startsWith("_Hidden by policy"));
  if (start < 0) return [];
  const names: string[] = [];
  for (const s of sections.slice(start)) {
    for (const [, span = ""] of s.matchAll(/`([^`]*)`/g)) {
      const text = unescapeMrkdwn(span);
      names.push(text.startsWith('"') ? (JSON.parse(text) as string) : text);
    }
  }
  return names;
}

/** Every text Slack would display, with the limit it must keep to. */
function textsWithLimits(m: SlackMessageContent): [string, number][] {
  const out: [string, number][] = [[m.text, 3000]];
  for (const b of m.blocks as Block[]) {
    if (b.type === "header") out.push([b.text?.text ?? "", 150]);
    if (b.type === "section") out.push([b.text?.text ?? "", 3000]);
    if (b.type === "context")
      for (const e of b.elements ?? []) out.push([typeof e.text === "string" ? e.text : "", 2000]);
    if (b.type === "actions")
      for (const e of b.elements ?? []) out.push([typeof e.text === "object" ? e.text.text : "", 75]);
  }
  return out;
}

/** Characters that would display as nothing or reorder the text around them. */
const deceptive = new Set(["\u202A", "\u202E", "\u2066", "\u2069", "\u200B", "\u0000", "\u001B"]);

const sameJson = (a: JsonValue | undefined, b: JsonValue | undefined) =>
  a === undefined || b === undefined ? a === b : canonicalJson(a) === canonicalJson(b);

describe("what approvers see is exactly what the params hash covers", () => {
  it("shows every key and value approvers may see, names every hidden key, within Slack's limits", () => {
    fc.assert(
      fc.property(
        hostileParams.chain((params) => fc.tuple(fc.constant(params), anyRedaction(Object.keys(params)))),
        hostileText,
        hostileText,
        ([params, redaction], title, justification) => {
          const a = approval({ params, title, justification }, policy({ redaction }));
          expect(a.paramsSha256).toBe(canonicalSha256(params));
          const message = renderApprovalMessage(a);
          const pages = renderApprovalDetails(a);
          expect(pages.length).toBeGreaterThan(0);
          for (const m of [message, ...pages]) {
            expect(m.blocks.length).toBeLessThanOrEqual(50);
            for (const [text, max] of textsWithLimits(m)) {
              expect(text.length).toBeLessThanOrEqual(max);
              expect(text).not.toMatch(/\p{Cs}/u);
              expect([...text].filter((c) => deceptive.has(c))).toEqual([]);
            }
          }
          const visible = Object.keys(params).filter((k) => isParamVisible(k, redaction));
          const hidden = Object.keys(params).filter((k) => !isParamVisible(k, redaction));
          // More info: every visible key with its exact value, every hidden key by name.
          const details = pages.flatMap(sectionsOf);
          const read = paramsRead(details) ?? {};
          expect(Object.keys(read)).toEqual(visible);
          for (const k of visible) expect(sameJson(read[k], params[k])).toBe(true);
          expect(hiddenRead(details)).toEqual(hidden);
          // The message: the same, or says plainly that it shows only part.
          const shownInMessage = sectionsOf(message);
          if (shownInMessage.some((s) => s.includes("shows only part of the params"))) return;
          const inMessage = paramsRead(shownInMessage) ?? {};
          expect(canonicalJson(inMessage)).toBe(canonicalJson(read));
          if (!shownInMessage.some((s) => s.includes("more: press *More info*")))
            expect(hiddenRead(shownInMessage)).toEqual(hidden);
        },
      ),
      { numRuns: 300 },
    );
  });

  it("shows an approver's edit exactly as it is applied", () => {
    fc.assert(
      fc.property(
        hostileParams,
        fc.uniqueArray(fc.tuple(hostileKey, fc.option(hostileText, { nil: undefined })), {
          selector: ([k]) => k,
          minLength: 1,
          maxLength: 4,
        }),
        (current, changes) => {
          const edited = Object.assign(Object.create(null) as JsonObject, current);
          for (const [key, value] of changes) {
            if (value === undefined) delete edited[key];
            else edited[key] = value;
          }
          const keys = changes.map(([k]) => k);
          const rules = { keys, maxKeys: keys.length, maxDiffBytes: 1 << 20, requestKeys: [] };
          const result = applyParamsEdit(current, edited, rules, "U1", now);
          const diff = [...new Set([...Object.keys(current), ...Object.keys(edited)])].filter(
            (k) =>
              !sameJson(
                Object.hasOwn(current, k) ? current[k] : undefined,
                Object.hasOwn(edited, k) ? edited[k] : undefined,
              ),
          );
          if (result === undefined) {
            expect(diff).toEqual([]);
            return;
          }
          const base = approval({ params: current }, policy({ overrides: rules }));
          const a: Approval = { ...base, params: result.params, edits: [result.edit] };
          const details = renderApprovalDetails(a).flatMap(sectionsOf);
          const editStart = details.findIndex((s) => s.startsWith("✏️"));
          let text = "";
          for (const s of details.slice(editStart + 1)) {
            const code = /^```([\s\S]*)```$/.exec(s);
            if (code === null) break;
            text += unescapeMrkdwn(code[1] ?? "");
          }
          const shown = JSON.parse(text) as { key: string; before?: JsonValue; after?: JsonValue }[];
          expect(shown.map((c) => c.key).sort()).toEqual([...diff].sort());
          for (const c of shown) {
            expect(sameJson(c.before, Object.hasOwn(current, c.key) ? current[c.key] : undefined)).toBe(true);
            expect(sameJson(c.after, Object.hasOwn(edited, c.key) ? edited[c.key] : undefined)).toBe(true);
          }
          // With every key removed, the details say "none": an empty object.
          expect(sameJson(paramsRead(details) ?? {}, result.params)).toBe(true);
        },
      ),
      { numRuns: 300 },
    );
  });
});
