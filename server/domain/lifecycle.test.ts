import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  FailedPreconditionError,
  type FieldViolation,
  PermissionDeniedError,
  ResourceExhaustedError,
  ValidationError,
} from "./errors.js";
import { canonicalJson, canonicalSha256 } from "./hashing.js";
import {
  applyVote,
  buildApproval,
  type CreateContext,
  type CreateInput,
  cancelApproval,
  createFingerprint,
  expireApproval,
  isOverdue,
  rerequestWindowStart,
  resolveApproval,
  unknownActionPolicyName,
  type VoteInput,
  validateCreate,
} from "./lifecycle.js";
import { limits } from "./limits.js";
import type { Approval, JsonObject, Policy, PolicySet } from "./types.js";

const t0 = Date.UTC(2026, 0, 1);
const minute = 60_000;
const hour = 60 * minute;
const day = 24 * hour;

function policy(fields: Partial<Policy> = {}): Policy {
  return {
    name: "production-deploy",
    match: "deploy.production*",
    description: "",
    channel: "C-DEPLOY",
    dm: false,
    approvers: { users: ["U-ALICE", "U-BOB", "U-CAROL", "alice@example.com"], groups: [] },
    superApprovers: ["U-SUPER"],
    requiredApprovals: 1,
    denyThreshold: 1,
    denyReasonRequired: false,
    stages: [],
    timeoutMs: hour,
    remindersMs: [],
    redaction: { mode: "none", keys: [] },
    overrides: { keys: [], maxKeys: 0, maxDiffBytes: 0, requestKeys: [] },
    rerequest: { allowed: true, cooldownMs: 0, maxPerDay: 5 },
    ...fields,
  };
}

function policySet(
  policies: Policy[],
  unknownAction: PolicySet["defaults"]["unknownAction"] = "deny",
): PolicySet {
  return {
    sha256: "a".repeat(64),
    defaults: { channel: "C-DEFAULT", timeoutMs: 2 * hour, unknownAction, superApprovers: ["U-ROOT"] },
    policies,
  };
}

function request(fields: Partial<CreateInput> = {}): CreateInput {
  return {
    action: "deploy.production",
    title: "Deploy api 1.2.3",
    justification: "Release train",
    params: { service: "api", version: "1.2.3", replicas: 3 },
    idempotencyKey: "run-42",
    onBehalfOf: "alice@example.com",
    origin: {
      repo: "acme/api",
      branch: "main",
      pullRequest: "17",
      runId: "42",
      links: [{ label: "run", url: "https://ci.example.com/runs/42" }],
    },
    overrides: {},
    rerequestOf: "",
    ...fields,
  };
}

let ids = 0;

/** Builds an approval governed by `p` (or by no policy when `p` is null). */
function build(
  p: Policy | null,
  input: CreateInput = request(),
  ctx: Partial<CreateContext> = {},
  unknownAction: PolicySet["defaults"]["unknownAction"] = "deny",
): Approval {
  return buildApproval(input, {
    id: `A${String(++ids).padStart(4, "0")}`,
    requester: "ci-bot",
    now: t0,
    policySet: policySet(p === null ? [] : [p], unknownAction),
    policy: p ?? undefined,
    ...ctx,
  });
}

let interactions = 0;

function voteInput(
  approver: string,
  decision: VoteInput["decision"],
  fields: Partial<VoteInput> = {},
): VoteInput {
  return {
    approver,
    approverGroups: [],
    decision,
    reason: "",
    interactionId: `click-${++interactions}`,
    submittedBy: "slack-gateway",
    ...fields,
  };
}

/** Applies a vote that must change the approval, and returns the new approval. */
function vote(
  a: Approval,
  approver: string,
  decision: VoteInput["decision"],
  fields: Partial<VoteInput> = {},
  now = t0 + minute,
): Approval {
  const t = applyVote(a, voteInput(approver, decision, fields), now);
  expect(t.changed).toBe(true);
  return t.approval;
}

function violationsOf(fn: () => unknown): FieldViolation[] {
  try {
    fn();
  } catch (err) {
    if (err instanceof ValidationError) return err.violations;
    throw err;
  }
  throw new Error("expected a ValidationError");
}

const fieldsOf = (fn: () => unknown): string[] =>
  violationsOf(fn)
    .map((v) => v.field)
    .sort();

/** An object nested `levels` objects deep (the outermost counts), with a value in the innermost. */
function nested(levels: number): JsonObject {
  let value: JsonObject = { leaf: "x" };
  for (let i = 1; i < levels; i++) value = { a: value };
  return value;
}

describe("validateCreate", () => {
  it("accepts a well-formed request", () => {
    expect(() => validateCreate(request())).not.toThrow();
  });

  it("reports every problem at once, each with its field path", () => {
    const input = request({
      action: "-deploy",
      title: "   ",
      justification: "j".repeat(limits.justificationLength + 1),
      onBehalfOf: "p".repeat(limits.identityLength + 1),
      origin: {
        repo: "r".repeat(limits.originFieldLength + 1),
        branch: "main",
        pullRequest: "",
        runId: "",
        links: [
          { label: "ok", url: "https://ci.example.com/1" },
          { label: "relative", url: "/runs/2" },
          { label: "l".repeat(limits.originFieldLength + 1), url: "ftp://files.example.com/3" },
        ],
      },
      overrides: { timeoutMs: 1_000, channel: "" },
      rerequestOf: "not an id!",
      params: { service: "api", notes: "n".repeat(limits.paramsStringLength + 1), nested: { n: Number.NaN } },
    });
    expect(fieldsOf(() => validateCreate(input))).toEqual(
      [
        "action",
        "title",
        "justification",
        "on_behalf_of",
        "origin.repo",
        "origin.links[1].url",
        "origin.links[2].label",
        "origin.links[2].url",
        "overrides.channel",
        "overrides.timeout",
        "rerequest_of",
        "params.notes",
        "params.nested.n",
      ].sort(),
    );
  });

  it("requires an action and a title", () => {
    expect(fieldsOf(() => validateCreate(request({ action: "", title: "" })))).toEqual(["action", "title"]);
  });

  it("limits the number of origin links", () => {
    const links = Array.from({ length: limits.links + 1 }, (_, i) => ({
      label: `l${i}`,
      url: `https://ci.example.com/${i}`,
    }));
    const input = request({ origin: { ...request().origin, links } });
    expect(fieldsOf(() => validateCreate(input))).toEqual(["origin.links"]);
  });

  it("limits the timeout override to 60 s – 7 days", () => {
    expect(fieldsOf(() => validateCreate(request({ overrides: { timeoutMs: 59_999 } })))).toEqual([
      "overrides.timeout",
    ]);
    expect(fieldsOf(() => validateCreate(request({ overrides: { timeoutMs: 7 * day + 1 } })))).toEqual([
      "overrides.timeout",
    ]);
    expect(() => validateCreate(request({ overrides: { timeoutMs: 60_000 } }))).not.toThrow();
    expect(() => validateCreate(request({ overrides: { timeoutMs: 7 * day } }))).not.toThrow();
  });

  it("accepts params nested as deep as the limit and rejects one level more, naming the path", () => {
    expect(() => validateCreate(request({ params: nested(limits.paramsDepth) }))).not.toThrow();
    const tooDeep = violationsOf(() => validateCreate(request({ params: nested(limits.paramsDepth + 1) })));
    expect(tooDeep).toHaveLength(1);
    expect(tooDeep[0]?.field).toBe(`params${".a".repeat(limits.paramsDepth)}`);
    expect(tooDeep[0]?.description).toMatch(/deeper than 16/);
  });

  it("limits keys per object, list length and string length inside params", () => {
    const manyKeys: JsonObject = {};
    for (let i = 0; i <= limits.paramsKeys; i++) manyKeys[`k${i}`] = i;
    const params: JsonObject = {
      config: manyKeys,
      hosts: Array.from({ length: limits.paramsListLength + 1 }, (_, i) => `h${i}`),
      list: ["ok", "s".repeat(limits.paramsStringLength + 1)],
    };
    expect(fieldsOf(() => validateCreate(request({ params })))).toEqual([
      "params.config",
      "params.hosts",
      "params.list[1]",
    ]);
  });

  it("limits the canonical size of params, and reports it alongside other problems", () => {
    const chunk = "x".repeat(limits.paramsStringLength);
    const params: JsonObject = { a: chunk, b: chunk, c: chunk, d: chunk, e: chunk };
    const alone = violationsOf(() => validateCreate(request({ params })));
    expect(alone).toEqual([
      { field: "params", description: expect.stringMatching(/bytes; the limit is 65536/) },
    ]);
    expect(fieldsOf(() => validateCreate(request({ params, title: "" })))).toEqual(["params", "title"]);
  });
});

describe("payload hash", () => {
  it("is the SHA-256 of the RFC 8785 canonical JSON of params", () => {
    const params = { version: "1.2.3", service: "api", replicas: 3, dryRun: false };
    const sorted = Object.fromEntries(Object.entries(params).sort(([x], [y]) => (x < y ? -1 : 1)));
    const expectedJson = JSON.stringify(sorted);
    expect(expectedJson).toBe('{"dryRun":false,"replicas":3,"service":"api","version":"1.2.3"}');
    const expected = createHash("sha256").update(expectedJson, "utf8").digest("hex");

    expect(canonicalJson(params)).toBe(expectedJson);
    expect(build(policy(), request({ params })).paramsSha256).toBe(expected);
  });

  it("does not depend on key order, at any depth", () => {
    const a = build(policy(), request({ params: { b: 1, a: { d: [1, { y: 2, x: 1 }], c: "3" } } }));
    const b = build(policy(), request({ params: { a: { c: "3", d: [1, { x: 1, y: 2 }] }, b: 1 } }));
    expect(a.paramsSha256).toBe(b.paramsSha256);
    expect(a.paramsSha256).toMatch(/^[0-9a-f]{64}$/);
    const c = build(policy(), request({ params: { a: { c: "3", d: [{ x: 1, y: 2 }, 1] }, b: 1 } }));
    expect(c.paramsSha256).not.toBe(a.paramsSha256);
  });

  it("gives an idempotent retry the same fingerprint, whatever its key order, and other content another", () => {
    const one = createFingerprint(request({ params: { x: 1, y: 2 } }));
    expect(createFingerprint(request({ params: { y: 2, x: 1 } }))).toBe(one);
    expect(createFingerprint(request({ params: { x: 1, y: 3 } }))).not.toBe(one);
    expect(createFingerprint(request({ params: { x: 1, y: 2 }, title: "other" }))).not.toBe(one);
  });
});

describe("buildApproval", () => {
  it("creates a pending approval under the policy's rules and timeout", () => {
    const a = build(
      policy({ stages: [{ name: "qa", members: { users: ["U-QA"], groups: [] }, required: 1 }] }),
    );
    expect(a).toMatchObject({
      state: "pending",
      policyName: "production-deploy",
      policySha256: "a".repeat(64),
      requester: "ci-bot",
      createTime: t0,
      expireTime: t0 + hour,
      decideTime: 0,
      votes: [],
      edits: [],
      stages: [{ name: "qa", required: 1, acknowledgedBy: [] }],
      paramsSha256: canonicalSha256(request().params),
    });
    expect(a.lineageId).toBe(a.id);
    expect(a.rules).not.toHaveProperty("match");
  });

  it("refuses a request without on_behalf_of when the policy requires it, naming the policy", () => {
    const strict = policy({ onBehalfOfRequired: true });
    expect(violationsOf(() => build(strict, request({ onBehalfOf: "" })))).toEqual([
      {
        field: "on_behalf_of",
        description: 'policy "production-deploy" requires on_behalf_of, the person this request is made for',
      },
    ]);
    expect(build(strict).onBehalfOf).toBe("alice@example.com");
    expect(build(policy(), request({ onBehalfOf: "" })).state).toBe("pending");
    expect(build(strict).rules).not.toHaveProperty("onBehalfOfRequired");
  });

  describe("an action no policy matches", () => {
    it('is denied at once with unknownAction "deny"', () => {
      const a = build(null, request({ action: "db.drop" }), {}, "deny");
      expect(a.state).toBe("denied");
      expect(a.policyName).toBe(unknownActionPolicyName);
      expect(a.decidedBy).toBe("policy");
      expect(a.decideTime).toBe(t0);
      expect(a.reason).toContain("db.drop");
      expect(() => applyVote(a, voteInput("U-ROOT", "approve"), t0 + 1)).toThrow(FailedPreconditionError);
    });

    it('can be approved only by a super-approver with unknownAction "require_super_approver"', () => {
      const a = build(null, request({ action: "db.drop" }), {}, "require_super_approver");
      expect(a.state).toBe("pending");
      expect(a.expireTime).toBe(t0 + 2 * hour);
      expect(a.rules.channel).toBe("C-DEFAULT");
      expect(() => applyVote(a, voteInput("U-ALICE", "approve"), t0 + 1)).toThrow(PermissionDeniedError);
      expect(() =>
        applyVote(a, voteInput("U-ALICE", "approve", { approverGroups: ["S-ANY"] }), t0 + 1),
      ).toThrow(PermissionDeniedError);
      const approved = vote(a, "u-root", "approve");
      expect(approved.state).toBe("approved");
      expect(approved.decidedBy).toBe("u-root");
    });
  });

  describe("requester overrides", () => {
    it("may shorten the timeout when the policy allows it", () => {
      const p = policy({ overrides: { keys: [], maxKeys: 0, maxDiffBytes: 0, requestKeys: ["timeout"] } });
      const a = build(p, request({ overrides: { timeoutMs: 10 * minute } }));
      expect(a.expireTime).toBe(t0 + 10 * minute);
      expect(a.overrides).toEqual({ timeoutMs: 10 * minute });
      expect(build(p, request({ overrides: { timeoutMs: hour } })).expireTime).toBe(t0 + hour);
    });

    it("may not lengthen the timeout", () => {
      const p = policy({ overrides: { keys: [], maxKeys: 0, maxDiffBytes: 0, requestKeys: ["timeout"] } });
      expect(fieldsOf(() => build(p, request({ overrides: { timeoutMs: hour + 1 } })))).toEqual([
        "overrides.timeout",
      ]);
    });

    it("may override only the settings the policy lists", () => {
      expect(
        fieldsOf(() =>
          build(policy(), request({ overrides: { timeoutMs: 10 * minute, channel: "C-OTHER" } })),
        ),
      ).toEqual(["overrides.channel", "overrides.timeout"]);
      const p = policy({ overrides: { keys: [], maxKeys: 0, maxDiffBytes: 0, requestKeys: ["channel"] } });
      expect(build(p, request({ overrides: { channel: "C-OTHER" } })).overrides).toEqual({
        channel: "C-OTHER",
      });
      expect(fieldsOf(() => build(p, request({ overrides: { timeoutMs: 10 * minute } })))).toEqual([
        "overrides.timeout",
      ]);
    });
  });
});

describe("applyVote", () => {
  it("approves once N distinct approvers approved", () => {
    let a = build(policy({ requiredApprovals: 3 }));
    a = vote(a, "U-ALICE", "approve");
    a = vote(a, "U-BOB", "approve");
    expect(a.state).toBe("pending");
    a = vote(a, "U-CAROL", "approve", { reason: "lgtm" }, t0 + 5 * minute);
    expect(a).toMatchObject({
      state: "approved",
      decidedBy: "U-CAROL",
      reason: "lgtm",
      decideTime: t0 + 5 * minute,
    });
    expect(a.votes.map((v) => v.approver)).toEqual(["U-ALICE", "U-BOB", "U-CAROL"]);
  });

  it("changes nothing when the same approver votes again, whatever the case or the decision", () => {
    let a = build(policy({ requiredApprovals: 2 }));
    a = vote(a, "U-ALICE", "approve");
    for (const again of [
      voteInput("U-ALICE", "approve"),
      voteInput("u-alice", "approve"),
      voteInput("U-ALICE", "deny"),
    ]) {
      const t = applyVote(a, again, t0 + 2 * minute);
      expect(t.changed).toBe(false);
      expect(t.approval).toBe(a);
    }
    expect(a.state).toBe("pending");
  });

  it("treats a repeated interaction id as a no-op, even after the approval is decided", () => {
    const a = build(policy());
    const click = voteInput("U-ALICE", "approve");
    const approved = applyVote(a, click, t0 + minute).approval;
    expect(approved.state).toBe("approved");
    const retry = applyVote(approved, click, t0 + 2 * minute);
    expect(retry.changed).toBe(false);
    expect(retry.approval).toBe(approved);
    expect(() => applyVote(approved, { ...click, interactionId: "click-other" }, t0 + 2 * minute)).toThrow(
      FailedPreconditionError,
    );
  });

  it("denies on the first deny by default", () => {
    const a = vote(build(policy({ requiredApprovals: 2 })), "U-BOB", "deny", { reason: "not now" });
    expect(a).toMatchObject({ state: "denied", decidedBy: "U-BOB", reason: "not now" });
  });

  it("denies only when the deny threshold is reached", () => {
    let a = build(policy({ denyThreshold: 2, requiredApprovals: 3 }));
    a = vote(a, "U-ALICE", "deny");
    expect(a.state).toBe("pending");
    a = vote(a, "U-BOB", "approve");
    expect(a.state).toBe("pending");
    a = vote(a, "U-CAROL", "deny");
    expect(a.state).toBe("denied");
    expect(a.decidedBy).toBe("U-CAROL");
  });

  it("requires a reason to deny when the policy says so", () => {
    const a = build(policy({ denyReasonRequired: true }));
    expect(fieldsOf(() => applyVote(a, voteInput("U-ALICE", "deny"), t0))).toEqual(["reason"]);
    expect(fieldsOf(() => applyVote(a, voteInput("U-ALICE", "deny", { reason: "  " }), t0))).toEqual([
      "reason",
    ]);
    expect(vote(a, "U-ALICE", "deny", { reason: "broken build" }).state).toBe("denied");
  });

  it("never lets the requester or the person it is on behalf of decide, whatever the case", () => {
    const p = policy({ approvers: { users: ["ci-bot", "alice@example.com", "U-BOB"], groups: [] } });
    const a = build(p);
    for (const who of ["ci-bot", "CI-Bot", "alice@example.com", "Alice@Example.COM"]) {
      expect(() => applyVote(a, voteInput(who, "approve"), t0)).toThrow(PermissionDeniedError);
    }
    expect(vote(a, "U-BOB", "approve").state).toBe("approved");
  });

  it("refuses people who are not approvers", () => {
    const a = build(policy());
    expect(() => applyVote(a, voteInput("U-MALLORY", "approve"), t0)).toThrow(PermissionDeniedError);
    expect(() => applyVote(a, voteInput("U-MALLORY", "deny", { reason: "x" }), t0)).toThrow(
      PermissionDeniedError,
    );
  });

  it("counts approvers by user-group membership", () => {
    const a = build(policy({ approvers: { users: [], groups: ["S-SRE"] } }));
    expect(() => applyVote(a, voteInput("U-DAVE", "approve", { approverGroups: ["S-DEV"] }), t0)).toThrow(
      PermissionDeniedError,
    );
    expect(vote(a, "U-DAVE", "approve", { approverGroups: ["S-DEV", "S-SRE"] }).state).toBe("approved");
  });

  describe("co-sign stages", () => {
    const staged = (required = 1) =>
      build(
        policy({
          stages: [
            { name: "qa", members: { users: ["U-QA1", "U-QA2"], groups: [] }, required },
            { name: "security", members: { users: [], groups: ["S-SEC"] }, required: 1 },
          ],
        }),
      );
    const sec = { approverGroups: ["S-SEC"] };

    it("must be acknowledged in order before approvals count", () => {
      let a = staged();
      expect(() => applyVote(a, voteInput("U-ALICE", "approve"), t0)).toThrow(FailedPreconditionError);
      expect(() => applyVote(a, voteInput("U-SEC", "acknowledge", sec), t0)).toThrow(FailedPreconditionError);

      a = vote(a, "U-QA1", "acknowledge");
      expect(a.stages[0]?.acknowledgedBy).toEqual(["U-QA1"]);
      expect(a.votes[0]).toMatchObject({ approver: "U-QA1", decision: "acknowledge", stage: "qa" });
      expect(() => applyVote(a, voteInput("U-ALICE", "approve"), t0)).toThrow(FailedPreconditionError);

      a = vote(a, "U-SEC", "acknowledge", sec);
      expect(a.stages[1]?.acknowledgedBy).toEqual(["U-SEC"]);
      expect(a.votes[1]?.stage).toBe("security");
      expect(a.state).toBe("pending");
      expect(() => applyVote(a, voteInput("U-QA2", "acknowledge"), t0)).toThrow(FailedPreconditionError);

      a = vote(a, "U-ALICE", "approve");
      expect(a.state).toBe("approved");
    });

    it("refuses an acknowledgement by someone in no stage", () => {
      const a = staged();
      expect(() => applyVote(a, voteInput("U-ALICE", "acknowledge"), t0)).toThrow(PermissionDeniedError);
    });

    it("needs the stage's number of distinct members", () => {
      let a = staged(2);
      a = vote(a, "U-QA1", "acknowledge");
      expect(applyVote(a, voteInput("u-qa1", "acknowledge"), t0).changed).toBe(false);
      expect(() => applyVote(a, voteInput("U-SEC", "acknowledge", sec), t0)).toThrow(FailedPreconditionError);
      a = vote(a, "U-QA2", "acknowledge");
      expect(a.stages[0]?.acknowledgedBy).toEqual(["U-QA1", "U-QA2"]);
      expect(vote(a, "U-SEC", "acknowledge", sec).stages[1]?.acknowledgedBy).toEqual(["U-SEC"]);
    });

    it("lets a stage member deny before the stages are complete", () => {
      expect(vote(staged(), "U-QA1", "deny", { reason: "tests fail" }).state).toBe("denied");
    });
  });

  it("lets a super-approver decide alone, before quorum and stages", () => {
    const p = policy({
      requiredApprovals: 3,
      denyThreshold: 3,
      stages: [{ name: "qa", members: { users: ["U-QA1"], groups: [] }, required: 1 }],
    });
    const approved = vote(build(p), "U-SUPER", "approve");
    expect(approved).toMatchObject({ state: "approved", decidedBy: "U-SUPER" });
    const denied = vote(build(p), "u-super", "deny", { reason: "freeze" });
    expect(denied).toMatchObject({ state: "denied", decidedBy: "u-super" });
  });

  it("refuses votes on a decided approval", () => {
    const p = policy({ stages: [] });
    const decided = [
      vote(build(p), "U-ALICE", "approve"),
      vote(build(p), "U-ALICE", "deny"),
      cancelApproval(build(p), "ci-bot", "", t0).approval,
      expireApproval(build(p), t0 + hour).approval,
    ];
    for (const a of decided) {
      for (const decision of ["approve", "deny", "acknowledge"] as const) {
        expect(() => applyVote(a, voteInput("U-BOB", decision), t0 + 2 * hour)).toThrow(
          FailedPreconditionError,
        );
      }
    }
  });

  it("applies an approver's edit and rehashes params", () => {
    const p = policy({
      requiredApprovals: 2,
      overrides: { keys: ["replicas"], maxKeys: 1, maxDiffBytes: 16, requestKeys: [] },
    });
    const a = build(p);
    const edited = { ...a.params, replicas: 2 };
    const next = vote(a, "U-ALICE", "approve", { editedParams: edited });
    expect(next.params).toEqual(edited);
    expect(next.paramsSha256).toBe(canonicalSha256(edited));
    expect(next.edits).toEqual([
      {
        editor: "U-ALICE",
        time: t0 + minute,
        changes: [{ key: "replicas", before: 3, after: 2 }],
        paramsSha256Before: a.paramsSha256,
        paramsSha256After: canonicalSha256(edited),
      },
    ]);
    expect(() =>
      applyVote(a, voteInput("U-ALICE", "approve", { editedParams: { ...a.params, service: "db" } }), t0),
    ).toThrow(ValidationError);
  });

  describe("an edit sets earlier approvals aside (two-person rule)", () => {
    const twoOfTwo = (editsKeepApprovals?: boolean) =>
      policy({
        requiredApprovals: 2,
        denyThreshold: 2,
        overrides: {
          keys: ["version"],
          maxKeys: 1,
          maxDiffBytes: 64,
          requestKeys: [],
          ...(editsKeepApprovals === undefined ? {} : { editsKeepApprovals }),
        },
      });

    it("does not approve with params the earlier approver never saw; they must approve again", () => {
      const a = build(twoOfTwo());
      const bob = voteInput("U-BOB", "approve", { interactionId: "bob-click" });
      const approvedByBob = applyVote(a, bob, t0 + minute).approval;
      const edited = { ...a.params, version: "evil" };
      const afterEdit = vote(approvedByBob, "U-ALICE", "approve", { editedParams: edited });
      expect(afterEdit.state).toBe("pending");
      expect(afterEdit.params).toEqual(edited);
      expect(afterEdit.votes.map((v) => v.approver)).toEqual(["U-ALICE"]);
      expect(afterEdit.supersededVotes?.map((v) => v.approver)).toEqual(["U-BOB"]);
      // A retry of Bob's old click is not a new approval of the edited params.
      expect(applyVote(afterEdit, bob, t0 + 2 * minute)).toEqual({ approval: afterEdit, changed: false });
      // Bob, having seen the edit, approves again: now it counts.
      const final = vote(afterEdit, "U-BOB", "approve", {}, t0 + 3 * minute);
      expect(final).toMatchObject({ state: "approved", decidedBy: "U-BOB", params: edited });
    });

    it("keeps denials, and keeps approvals when the policy says edits_keep_approvals", () => {
      const a = build(twoOfTwo());
      const denied = vote(a, "U-CAROL", "deny");
      const edited = vote(denied, "U-ALICE", "approve", { editedParams: { ...a.params, version: "v2" } });
      expect(edited.votes.map((v) => [v.approver, v.decision])).toEqual([
        ["U-CAROL", "deny"],
        ["U-ALICE", "approve"],
      ]);

      const kept = build(twoOfTwo(true));
      const byBob = vote(kept, "U-BOB", "approve");
      const final = vote(byBob, "U-ALICE", "approve", { editedParams: { ...a.params, version: "v2" } });
      expect(final.state).toBe("approved");
      expect(final.supersededVotes).toBeUndefined();
    });
  });
});

describe("cancel, resolve and expiry", () => {
  it("cancels a pending approval and records who and why", () => {
    const t = cancelApproval(build(policy()), "ci-bot", "superseded", t0 + minute);
    expect(t.changed).toBe(true);
    expect(t.approval).toMatchObject({
      state: "cancelled",
      decidedBy: "ci-bot",
      reason: "superseded",
      decideTime: t0 + minute,
      adminOverride: false,
    });
    expect(cancelApproval(build(policy()), "admin", "stuck", t0, true).approval.adminOverride).toBe(true);
  });

  it("resolves as an admin's break-glass decision, even with stages pending", () => {
    const p = policy({
      requiredApprovals: 3,
      stages: [{ name: "qa", members: { users: ["U-QA1"], groups: [] }, required: 1 }],
    });
    const approved = resolveApproval(build(p), "admin@example.com", "approve", "incident 123", t0 + minute);
    expect(approved.approval).toMatchObject({
      state: "approved",
      decidedBy: "admin@example.com",
      reason: "incident 123",
      decideTime: t0 + minute,
      adminOverride: true,
    });
    expect(resolveApproval(build(p), "admin@example.com", "deny", "no", t0).approval).toMatchObject({
      state: "denied",
      adminOverride: true,
    });
  });

  it("refuses to cancel or resolve a decided approval", () => {
    const a = vote(build(policy()), "U-ALICE", "approve");
    expect(() => cancelApproval(a, "ci-bot", "", t0)).toThrow(FailedPreconditionError);
    expect(() => resolveApproval(a, "admin", "deny", "x", t0)).toThrow(FailedPreconditionError);
  });

  it("refuses every decision at or after the deadline, before the expiry is stored", () => {
    const a = build(policy());
    expect(isOverdue(a, a.expireTime - 1)).toBe(false);
    expect(isOverdue(a, a.expireTime)).toBe(true);
    expect(applyVote(a, voteInput("U-ALICE", "approve"), a.expireTime - 1).approval.state).toBe("approved");
    const late = [
      () => applyVote(a, voteInput("U-ALICE", "approve"), a.expireTime),
      () => applyVote(a, voteInput("U-ALICE", "deny"), a.expireTime + hour),
      () => cancelApproval(a, "ci-bot", "", a.expireTime),
      () => resolveApproval(a, "admin", "approve", "break glass", a.expireTime),
    ];
    for (const attempt of late) {
      expect(attempt).toThrow(FailedPreconditionError);
      expect(attempt).toThrow(`approval ${a.id} expired at ${new Date(a.expireTime).toISOString()}`);
    }
    const expired = expireApproval(a, a.expireTime).approval;
    expect(() => applyVote(expired, voteInput("U-ALICE", "approve"), a.expireTime)).toThrow(
      /expired at .*nothing done after its deadline counts/,
    );
  });

  it("expires only at or after the deadline, and only pending approvals", () => {
    const a = build(policy());
    const early = expireApproval(a, a.expireTime - 1);
    expect(early.changed).toBe(false);
    expect(early.approval).toBe(a);
    const expired = expireApproval(a, a.expireTime);
    expect(expired.changed).toBe(true);
    expect(expired.approval).toMatchObject({
      state: "expired",
      decidedBy: "system",
      decideTime: a.expireTime,
    });
    expect(expireApproval(expired.approval, a.expireTime + hour).changed).toBe(false);
    const approved = vote(a, "U-ALICE", "approve");
    expect(expireApproval(approved, a.expireTime + 1)).toEqual({ approval: approved, changed: false });
  });
});

describe("re-request", () => {
  const rerequestPolicy = (rerequest: Partial<Policy["rerequest"]> = {}) =>
    policy({ rerequest: { allowed: true, cooldownMs: 10 * minute, maxPerDay: 3, ...rerequest } });

  /** A denied approval, decided at t0 + 1 min. */
  const deniedOne = (p: Policy) => vote(build(p), "U-ALICE", "deny", { reason: "not yet" }, t0 + minute);

  const rerequest = (
    previous: Approval | undefined,
    p: Policy,
    now: number,
    fields: Partial<CreateInput> = {},
  ) =>
    build(p, request({ rerequestOf: previous?.id ?? "A9999", ...fields }), {
      now,
      ...(previous === undefined ? {} : { previous }),
      lineageCountLastDay: 1,
    });

  it("links a re-request of a denied or expired approval to the lineage", () => {
    const p = rerequestPolicy();
    const first = deniedOne(p);
    const second = rerequest(first, p, t0 + hour);
    expect(second).toMatchObject({ state: "pending", lineageId: first.id, rerequestOf: first.id });
    expect(second.id).not.toBe(first.id);
    const expired = expireApproval(second, second.expireTime).approval;
    const third = rerequest(expired, p, expired.expireTime + hour);
    expect(third).toMatchObject({ lineageId: first.id, rerequestOf: second.id });
  });

  it("refuses approvals that are pending, approved or cancelled", () => {
    const p = rerequestPolicy();
    const pending = build(p);
    const approved = vote(build(p), "U-ALICE", "approve");
    const cancelled = cancelApproval(build(p), "ci-bot", "", t0).approval;
    for (const previous of [pending, approved, cancelled]) {
      expect(() => rerequest(previous, p, t0 + day)).toThrow(FailedPreconditionError);
    }
  });

  it("must come from the same requester, for the same action", () => {
    const p = rerequestPolicy();
    const first = deniedOne(p);
    expect(rerequest(first, p, t0 + hour).requester).toBe("ci-bot");
    expect(() =>
      buildApproval(request({ rerequestOf: first.id }), {
        id: "A-OTHER",
        requester: "other-bot",
        now: t0 + hour,
        policySet: policySet([p]),
        policy: p,
        previous: first,
        lineageCountLastDay: 1,
      }),
    ).toThrow(PermissionDeniedError);
    expect(fieldsOf(() => rerequest(first, p, t0 + hour, { action: "deploy.production.eu" }))).toEqual([
      "action",
    ]);
  });

  it("names rerequest_of when the previous approval does not exist", () => {
    expect(fieldsOf(() => rerequest(undefined, rerequestPolicy(), t0))).toEqual(["rerequest_of"]);
  });

  it("must be allowed by the policy", () => {
    const p = rerequestPolicy({ allowed: false });
    expect(() => rerequest(deniedOne(p), p, t0 + day)).toThrow(FailedPreconditionError);
  });

  it("waits for the cooldown, and says how long is left", () => {
    const p = rerequestPolicy({ cooldownMs: 10 * minute });
    const first = deniedOne(p);
    let err: unknown;
    try {
      rerequest(first, p, t0 + 5 * minute);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ResourceExhaustedError);
    expect((err as ResourceExhaustedError).retryAfterMs).toBe(6 * minute);
    expect(rerequest(first, p, t0 + 11 * minute).state).toBe("pending");
  });

  it("caps the requests of a lineage per 24 h", () => {
    const p = rerequestPolicy({ maxPerDay: 3, cooldownMs: 0 });
    const first = deniedOne(p);
    const input = request({ rerequestOf: first.id });
    const ctx = (lineageCountLastDay: number): CreateContext => ({
      id: "A-NEXT",
      requester: "ci-bot",
      now: t0 + hour,
      policySet: policySet([p]),
      policy: p,
      previous: first,
      lineageCountLastDay,
    });
    expect(buildApproval(input, ctx(2)).state).toBe("pending");
    let err: unknown;
    try {
      buildApproval(input, ctx(3));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ResourceExhaustedError);
    expect((err as ResourceExhaustedError).retryAfterMs).toBeGreaterThan(0);
    expect(rerequestWindowStart(t0 + day)).toBe(t0);
  });
});
