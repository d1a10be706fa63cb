import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { canonicalSha256 } from "../domain/hashing.js";
import type { Policy } from "../domain/types.js";
import {
  compilePolicies,
  loadPolicyFile,
  PolicyLoadError,
  type PolicyProblem,
  parsePolicyDocument,
} from "./policy-loader.js";
import { resolvePolicy } from "./policy-match.js";

/** The example of SPEC C3, verbatim. */
const specExample = `version: 1
defaults:
  channel: C0DEFAULT            # Slack channel id
  timeout: 10m
  unknown_action: deny          # or: require_super_approver
  super_approvers: [UADMIN1]
policies:
  - name: production-deploy
    match: "deploy.production*" # glob over action names; the most specific match wins
    description: Deploy a service to production
    channel: C0PROD             # or \`dm: true\` to message the approvers directly
    approvers: { users: [U1, U2, U3], groups: [S0RELEASE] }
    required_approvals: 2
    deny_threshold: 1
    stages:                     # co-sign stages, in order, before approvals count
      - { name: qa, users: [UQA1, UQA2], required: 1 }
    timeout: 30m
    reminders: [10m, 20m]
    escalation: { after: 25m, channel: C0ESC, users: [UONCALL] }
    redaction: { mode: allowlist, keys: [service, version] }   # allowlist | denylist | all
    overrides:                  # what approvers may edit, and requesters may override
      keys: [version]
      max_keys: 1
      max_diff_bytes: 256
      schema: { type: object, properties: { version: { type: string, pattern: "^v[0-9]+" } } }
    rerequest: { allowed: true, cooldown: 5m, max_per_day: 5 }
`;

type Json = Record<string, unknown>;

/** A valid document with one policy; `policy` and `defaults` are merged over the base. */
function doc(policy: Json = {}, defaults: Json = {}): string {
  return JSON.stringify({
    version: 1,
    defaults: { channel: "C0DEFAULT", ...defaults },
    policies: [{ name: "p", match: "deploy.*", approvers: { users: ["U1", "U2"] }, ...policy }],
  });
}

function problemsOf(text: string): PolicyProblem[] {
  const result = parsePolicyDocument(text);
  if (result.ok) throw new Error("expected the document to be invalid");
  return result.problems;
}

function policyOf(text: string, index = 0): Policy {
  const result = parsePolicyDocument(text);
  if (!result.ok)
    throw new Error(`expected a valid document:\n${new PolicyLoadError(result.problems).message}`);
  const policy = result.policySet.policies[index];
  if (policy === undefined) throw new Error(`no policy ${index}`);
  return policy;
}

describe("parsePolicyDocument: the SPEC C3 example", () => {
  it("loads cleanly and compiles every value", () => {
    const result = parsePolicyDocument(specExample);
    if (!result.ok) throw new Error(new PolicyLoadError(result.problems).message);
    expect(result.policySet.defaults).toEqual({
      channel: "C0DEFAULT",
      timeoutMs: 600_000,
      unknownAction: "deny",
      superApprovers: ["UADMIN1"],
    });
    expect(result.policySet.policies).toEqual([
      {
        name: "production-deploy",
        match: "deploy.production*",
        description: "Deploy a service to production",
        channel: "C0PROD",
        dm: false,
        approvers: { users: ["U1", "U2", "U3"], groups: ["S0RELEASE"] },
        superApprovers: ["UADMIN1"],
        requiredApprovals: 2,
        denyThreshold: 1,
        denyReasonRequired: false,
        stages: [{ name: "qa", members: { users: ["UQA1", "UQA2"], groups: [] }, required: 1 }],
        timeoutMs: 1_800_000,
        remindersMs: [600_000, 1_200_000],
        escalation: { afterMs: 1_500_000, channel: "C0ESC", users: ["UONCALL"] },
        redaction: { mode: "allowlist", keys: ["service", "version"] },
        paramsMustFit: false,
        onBehalfOfRequired: false,
        overrides: {
          keys: ["version"],
          maxKeys: 1,
          maxDiffBytes: 256,
          schema: { type: "object", properties: { version: { type: "string", pattern: "^v[0-9]+" } } },
          requestKeys: [],
        },
        rerequest: { allowed: true, cooldownMs: 300_000, maxPerDay: 5 },
      },
    ]);
    expect(resolvePolicy(result.policySet, "deploy.production.eu")?.name).toBe("production-deploy");
  });

  it("hashes the canonical JSON of the document, so the same policies in JSON have the same hash", () => {
    const yaml = parsePolicyDocument(specExample);
    if (!yaml.ok) throw new Error("invalid");
    expect(yaml.sha256).toBe(canonicalSha256(yaml.document));
    expect(yaml.policySet.sha256).toBe(yaml.sha256);
    expect(yaml.sha256).toMatch(/^[0-9a-f]{64}$/);

    const json = parsePolicyDocument(JSON.stringify(yaml.document, null, 2));
    if (!json.ok) throw new Error("invalid");
    expect(json.sha256).toBe(yaml.sha256);

    const changed = parsePolicyDocument(specExample.replace("timeout: 30m", "timeout: 31m"));
    if (!changed.ok) throw new Error("invalid");
    expect(changed.sha256).not.toBe(yaml.sha256);
  });
});

describe("parsePolicyDocument: the example file", () => {
  it("loads examples/policies.yaml", async () => {
    const path = fileURLToPath(new URL("../../examples/policies.yaml", import.meta.url));
    const result = await loadPolicyFile(path);
    if (!result.ok) throw new Error(new PolicyLoadError(result.problems).message);
    const set = result.policySet;
    expect(set.defaults).toEqual({
      channel: "C0DEFAULT",
      timeoutMs: 600_000,
      unknownAction: "deny",
      superApprovers: ["UADMIN1"],
    });
    expect(resolvePolicy(set, "deploy.production")?.requiredApprovals).toBe(1);
    expect(resolvePolicy(set, "db.migrate.users")?.stages.map((s) => s.name)).toEqual(["qa"]);
    const secrets = resolvePolicy(set, "secrets.rotate.db");
    expect(secrets?.denyReasonRequired).toBe(true);
    expect(secrets?.redaction.mode).toBe("allowlist");
    expect(secrets?.overrides.schema).toBeDefined();
    const agent = resolvePolicy(set, "agent.shell");
    expect(agent?.name).toBe("agent-actions");
    expect(agent?.overrides.keys).toEqual(["command", "paths"]);
    const probe = resolvePolicy(set, "countersign.probe");
    expect(probe?.approvers.users).toEqual(["probe-bot"]);
    expect(probe?.timeoutMs).toBe(60_000);
    expect(resolvePolicy(set, "something.else")).toBeUndefined();
  });
});

describe("parsePolicyDocument: defaults", () => {
  it("applies every default to a minimal policy", () => {
    const result = parsePolicyDocument(
      "version: 1\ndefaults: { channel: C0 }\npolicies:\n  - { name: p, match: a.b, approvers: { users: [U1] } }\n",
    );
    if (!result.ok) throw new Error("invalid");
    expect(result.policySet.defaults).toEqual({
      channel: "C0",
      timeoutMs: 600_000,
      unknownAction: "deny",
      superApprovers: [],
    });
    expect(result.policySet.policies[0]).toEqual({
      name: "p",
      match: "a.b",
      description: "",
      channel: "C0",
      dm: false,
      approvers: { users: ["U1"], groups: [] },
      superApprovers: [],
      requiredApprovals: 1,
      denyThreshold: 1,
      denyReasonRequired: false,
      stages: [],
      timeoutMs: 600_000,
      remindersMs: [],
      redaction: { mode: "none", keys: [] },
      paramsMustFit: false,
      onBehalfOfRequired: false,
      overrides: { keys: [], maxKeys: 0, maxDiffBytes: 4096, requestKeys: [] },
      rerequest: { allowed: false, cooldownMs: 0, maxPerDay: 5 },
    });
  });

  it("accepts a file with no defaults and no policies", () => {
    const result = parsePolicyDocument("version: 1\npolicies: []\n");
    expect(result.ok && result.policySet).toMatchObject({
      defaults: { channel: "", timeoutMs: 600_000, unknownAction: "deny", superApprovers: [] },
      policies: [],
    });
  });

  it("takes the defaults' timeout, and lets a policy override it", () => {
    expect(policyOf(doc({}, { timeout: "1h" })).timeoutMs).toBe(3_600_000);
    expect(policyOf(doc({ timeout: "2m" }, { timeout: "1h" })).timeoutMs).toBe(120_000);
  });

  it("unites the policy's super-approvers with the defaults', without duplicates", () => {
    const policy = policyOf(
      doc({ super_approvers: ["UOWN", "uadmin"] }, { super_approvers: ["UADMIN", "U9"] }),
    );
    expect(policy.superApprovers).toEqual(["UOWN", "uadmin", "U9"]);
  });

  it("uses defaults.channel unless the policy has its own or messages approvers directly", () => {
    expect(policyOf(doc()).channel).toBe("C0DEFAULT");
    expect(policyOf(doc({ channel: "C0OWN" })).channel).toBe("C0OWN");
    const dm = policyOf(doc({ dm: true }));
    expect(dm.dm).toBe(true);
    expect(dm.channel).toBe("");
  });

  it("makes max_keys default to the number of override keys", () => {
    const policy = policyOf(doc({ overrides: { keys: ["a", "b"], request_keys: ["timeout", "channel"] } }));
    expect(policy.overrides).toEqual({
      keys: ["a", "b"],
      maxKeys: 2,
      maxDiffBytes: 4096,
      requestKeys: ["timeout", "channel"],
    });
  });

  it("compiles stages with groups and an escalation to users only", () => {
    const policy = policyOf(
      doc({
        stages: [{ name: "security", groups: ["S0SEC"] }],
        escalation: { after: "5m", users: ["UONCALL"] },
      }),
    );
    expect(policy.stages).toEqual([
      { name: "security", members: { users: [], groups: ["S0SEC"] }, required: 1 },
    ]);
    expect(policy.escalation).toEqual({ afterMs: 300_000, channel: "", users: ["UONCALL"] });
  });

  it("lets only super-approvers decide a policy without approvers", () => {
    const policy = policyOf(doc({ approvers: undefined }, { super_approvers: ["UADMIN"] }));
    expect(policy.approvers).toEqual({ users: [], groups: [] });
    expect(policy.superApprovers).toEqual(["UADMIN"]);
  });
});

describe("parsePolicyDocument: schema problems", () => {
  it("reports unknown keys at their own path", () => {
    const text = JSON.stringify({
      version: 1,
      defaults: { channel: "C0", timout: "10m" },
      policies: [
        { name: "a", match: "a.*", approvers: { users: ["U1"] } },
        { name: "b", match: "b.*", aprovers: { users: ["U1"] } },
      ],
      polices: [],
    });
    expect(problemsOf(text)).toEqual([
      { path: "polices", message: "unknown key" },
      { path: "defaults.timout", message: "unknown key" },
      { path: "policies[1].aprovers", message: "unknown key" },
      // The misspelt key's consequence is reported too.
      {
        path: "policies[1].approvers",
        message:
          "no one can decide: list approvers.users or approvers.groups, or super_approvers here or in defaults",
      },
    ]);
  });

  it("reports missing keys at the path of the key", () => {
    expect(problemsOf("defaults: {}\n")).toEqual([
      { path: "version", message: "is required" },
      { path: "policies", message: "is required" },
    ]);
    expect(problemsOf(JSON.stringify({ version: 1, policies: [{ name: "x" }] }))).toEqual([
      { path: "policies[0].match", message: "is required" },
    ]);
  });

  it("reports wrong types, values and formats in the file's terms", () => {
    const text = JSON.stringify({
      version: 2,
      defaults: { unknown_action: "allow", timeout: 600 },
      policies: [
        {
          name: "Deploy",
          match: "",
          approvers: { users: "U1" },
          required_approvals: 1.5,
          deny_threshold: 0,
          dm: "yes",
          reminders: ["10 minutes"],
          redaction: { mode: "some" },
          overrides: { request_keys: ["title"] },
        },
      ],
    });
    expect(problemsOf(text)).toEqual([
      { path: "version", message: "must be 1" },
      { path: "defaults.timeout", message: "must be a duration such as 500ms, 90s, 10m, 1h30m or 2d" },
      { path: "defaults.unknown_action", message: "must be one of: deny, require_super_approver" },
      {
        path: "policies[0].name",
        message:
          "must be 1 to 64 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit",
      },
      { path: "policies[0].match", message: "must not be empty" },
      { path: "policies[0].dm", message: "must be true or false" },
      { path: "policies[0].approvers.users", message: "must be a list" },
      { path: "policies[0].required_approvals", message: "must be a whole number" },
      { path: "policies[0].deny_threshold", message: "must be at least 1" },
      {
        path: "policies[0].reminders[0]",
        message: "must be a duration such as 500ms, 90s, 10m, 1h30m or 2d",
      },
      { path: "policies[0].redaction.mode", message: "must be one of: allowlist, denylist, all, none" },
      { path: "policies[0].overrides.request_keys[0]", message: "must be one of: timeout, channel" },
    ]);
  });

  it("reports a person listed twice at the second occurrence", () => {
    expect(problemsOf(doc({ approvers: { users: ["U1", "U2", "U1"] } }))).toEqual([
      { path: "policies[0].approvers.users[2]", message: '"U1" is listed twice (also at [0])' },
    ]);
  });

  it("reports a document that is not a mapping", () => {
    expect(problemsOf("- a\n- b\n")).toEqual([{ path: "(root)", message: "must be a mapping" }]);
    expect(problemsOf("")).toEqual([
      { path: "(root)", message: "the policy file is empty; it needs at least `version: 1` and `policies`" },
    ]);
    expect(problemsOf("# only a comment\n")).toHaveLength(1);
  });

  it("still checks the rules of the policies that are schema-valid", () => {
    const text = JSON.stringify({
      version: 1,
      defaults: { channel: "C0" },
      policies: [
        { name: "a", match: "a.*", approvers: { users: ["U1"] }, required_approvals: "two" },
        { name: "b", match: "b.*", approvers: { users: ["U1"] }, required_approvals: 2 },
        { name: "b", match: "a.*", approvers: { users: ["U1"] }, bogus: true },
      ],
    });
    expect(problemsOf(text)).toEqual([
      { path: "policies[0].required_approvals", message: "must be a whole number" },
      {
        path: "policies[1].required_approvals",
        message: "is 2 but approvers.users lists only 1 person and no groups",
      },
      { path: "policies[2].bogus", message: "unknown key" },
      { path: "policies[2].name", message: "repeats the name of policies[1]" },
      {
        path: "policies[2].match",
        message: "is the same as policies[0].match; only one of the two policies would ever be used",
      },
    ]);
  });
});

describe("parsePolicyDocument: YAML", () => {
  it("reports syntax errors with their line and column", () => {
    const problems = problemsOf("version: 1\npolicies:\n  - name: [a\n    match: b\n");
    expect(problems.length).toBeGreaterThan(0);
    for (const problem of problems) expect(problem.path).toMatch(/^\(line \d+, column \d+\)$/);
    expect(problems[0]?.path).toMatch(/^\(line [34], column \d+\)$/);
  });

  it("reports a key given twice", () => {
    expect(problemsOf("version: 1\nversion: 1\npolicies: []\n")).toEqual([
      { path: "(line 2, column 1)", message: "Map keys must be unique" },
    ]);
  });

  it("accepts anchors and aliases", () => {
    const text = [
      "version: 1",
      "defaults: { channel: C0 }",
      "policies:",
      "  - { name: a, match: a.*, approvers: &release { users: [U1, U2] } }",
      "  - { name: b, match: b.*, approvers: *release }",
    ].join("\n");
    expect(policyOf(text, 1).approvers.users).toEqual(["U1", "U2"]);
  });

  it("rejects values JSON cannot represent", () => {
    const problems = problemsOf(
      doc().replace('"match":"deploy.*"', '"match":"deploy.*","overrides":{"max_diff_bytes":.inf}'),
    );
    expect(problems).toContainEqual({
      path: "policies[0].overrides.max_diff_bytes",
      message: "must be a finite number",
    });
  });
});

describe("parsePolicyDocument: rules", () => {
  const rule = (policy: Json, defaults: Json = {}): PolicyProblem[] => problemsOf(doc(policy, defaults));

  it("required_approvals and deny_threshold cannot exceed the listed approvers when there are no groups", () => {
    expect(rule({ required_approvals: 3 })).toEqual([
      {
        path: "policies[0].required_approvals",
        message: "is 3 but approvers.users lists only 2 people and no groups",
      },
    ]);
    expect(rule({ deny_threshold: 3 })).toEqual([
      {
        path: "policies[0].deny_threshold",
        message: "is 3 but approvers.users lists only 2 people and no groups",
      },
    ]);
    // Ids compare case-insensitively, as votes do.
    expect(rule({ approvers: { users: ["U1", "u1"] }, required_approvals: 2 })).toEqual([
      {
        path: "policies[0].required_approvals",
        message: "is 2 but approvers.users lists only 1 person and no groups",
      },
    ]);
    // Groups have an unknown size: no check.
    expect(
      policyOf(doc({ approvers: { users: ["U1"], groups: ["S1"] }, required_approvals: 5 }))
        .requiredApprovals,
    ).toBe(5);
  });

  it("a policy needs approvers or super-approvers", () => {
    expect(rule({ approvers: { users: [], groups: [] } })).toEqual([
      {
        path: "policies[0].approvers",
        message:
          "no one can decide: list approvers.users or approvers.groups, or super_approvers here or in defaults",
      },
    ]);
    expect(policyOf(doc({ approvers: undefined, super_approvers: ["UBOSS"] })).superApprovers).toEqual([
      "UBOSS",
    ]);
  });

  it("timeouts are between 60s and 7d", () => {
    expect(rule({ timeout: "59s" })).toEqual([
      { path: "policies[0].timeout", message: "must be between 1m and 7d (is 59s)" },
    ]);
    expect(rule({ timeout: "7d1ms" })).toEqual([
      { path: "policies[0].timeout", message: "must be between 1m and 7d (is 7d1ms)" },
    ]);
    expect(rule({}, { timeout: "30s" })).toEqual([
      { path: "defaults.timeout", message: "must be between 1m and 7d (is 30s)" },
    ]);
    expect(policyOf(doc({ timeout: "7d" }, { timeout: "60s" })).timeoutMs).toBe(7 * 86_400_000);
  });

  it("reminders are positive, before the timeout, and strictly increasing", () => {
    expect(rule({ timeout: "30m", reminders: ["0s", "10m", "10m", "5m", "30m"] })).toEqual([
      { path: "policies[0].reminders[0]", message: "must be greater than 0" },
      { path: "policies[0].reminders[2]", message: "must be later than the reminder before it (10m)" },
      { path: "policies[0].reminders[3]", message: "must be later than the reminder before it (10m)" },
      { path: "policies[0].reminders[4]", message: "must be shorter than the timeout (30m)" },
    ]);
    // Measured against the defaults' timeout when the policy has none.
    expect(rule({ reminders: ["1h"] }, { timeout: "1h" })).toEqual([
      { path: "policies[0].reminders[0]", message: "must be shorter than the timeout (1h)" },
    ]);
    // And against 10m when neither has one.
    expect(rule({ reminders: ["10m"] })).toEqual([
      { path: "policies[0].reminders[0]", message: "must be shorter than the timeout (10m)" },
    ]);
  });

  it("escalation comes after 0 and before the timeout, and goes somewhere", () => {
    expect(rule({ timeout: "30m", escalation: { after: "30m", channel: "C0ESC" } })).toEqual([
      { path: "policies[0].escalation.after", message: "must be shorter than the timeout (30m)" },
    ]);
    expect(rule({ escalation: { after: "0s", users: ["U9"] } })).toEqual([
      { path: "policies[0].escalation.after", message: "must be greater than 0" },
    ]);
    expect(rule({ escalation: { after: "5m" } })).toEqual([
      { path: "policies[0].escalation", message: "needs a channel or users to escalate to" },
    ]);
  });

  it("stages have unique names, members, and a reachable count", () => {
    expect(
      rule({
        stages: [
          { name: "qa", users: ["UQA"] },
          { name: "qa", groups: ["S0QA"] },
          { name: "security" },
          { name: "legal", users: ["UL1", "UL2"], required: 3 },
        ],
      }),
    ).toEqual([
      { path: "policies[0].stages[1].name", message: 'repeats the name of stages[0] ("qa")' },
      { path: "policies[0].stages[2]", message: "has no members: list users or groups" },
      { path: "policies[0].stages[3].required", message: "is 3 but users lists only 2 people and no groups" },
    ]);
  });

  it("redaction keys fit the mode", () => {
    expect(rule({ redaction: { mode: "all", keys: ["a"] } })).toEqual([
      { path: "policies[0].redaction.keys", message: "must be empty when mode is all" },
    ]);
    expect(rule({ redaction: { mode: "none", keys: ["a"] } })).toEqual([
      { path: "policies[0].redaction.keys", message: "must be empty when mode is none" },
    ]);
    expect(rule({ redaction: { mode: "allowlist" } })).toEqual([
      { path: "policies[0].redaction.keys", message: "must list at least one key when mode is allowlist" },
    ]);
    expect(rule({ redaction: { mode: "denylist", keys: [] } })).toEqual([
      { path: "policies[0].redaction.keys", message: "must list at least one key when mode is denylist" },
    ]);
    expect(policyOf(doc({ redaction: { mode: "all" } })).redaction).toEqual({ mode: "all", keys: [] });
  });

  it("params_must_fit is a boolean, off unless set", () => {
    expect(policyOf(doc({ params_must_fit: true })).paramsMustFit).toBe(true);
    expect(policyOf(doc({})).paramsMustFit).toBe(false);
    expect(rule({ params_must_fit: "yes" })).toEqual([
      { path: "policies[0].params_must_fit", message: "must be true or false" },
    ]);
  });

  it("on_behalf_of_required is a boolean, off unless set", () => {
    expect(policyOf(doc({ on_behalf_of_required: true })).onBehalfOfRequired).toBe(true);
    expect(policyOf(doc({})).onBehalfOfRequired).toBe(false);
    expect(rule({ on_behalf_of_required: "yes" })).toEqual([
      { path: "policies[0].on_behalf_of_required", message: "must be true or false" },
    ]);
  });

  it("override limits fit the keys, and keys exist in the schema", () => {
    expect(rule({ overrides: { keys: ["a"], max_keys: 2 } })).toEqual([
      { path: "policies[0].overrides.max_keys", message: "is 2 but keys lists only 1 key" },
    ]);
    expect(rule({ overrides: { max_keys: 0 } })).toEqual([
      { path: "policies[0].overrides.max_keys", message: "must be at least 1" },
    ]);
    expect(
      rule({
        overrides: { keys: ["version", "region"], schema: { type: "object", properties: { version: {} } } },
      }),
    ).toEqual([
      { path: "policies[0].overrides.keys[1]", message: '"region" is not a property of overrides.schema' },
    ]);
    const withPatterns = doc({
      overrides: {
        keys: ["version", "label_team"],
        schema: { type: "object", properties: { version: {} }, patternProperties: { "^label_": {} } },
      },
    });
    expect(policyOf(withPatterns).overrides.keys).toEqual(["version", "label_team"]);
    // A schema without properties constrains nothing by key.
    expect(policyOf(doc({ overrides: { keys: ["x"], schema: { type: "object" } } })).overrides.keys).toEqual([
      "x",
    ]);
  });

  it("the overrides schema must compile", () => {
    const problems = rule({
      overrides: { keys: ["a"], schema: { type: "object", properties: { a: { type: "strin" } } } },
    });
    expect(problems).toHaveLength(1);
    expect(problems[0]?.path).toBe("policies[0].overrides.schema");
    expect(problems[0]?.message).toMatch(/^is not a valid JSON Schema: /);
    expect(rule({ overrides: { schema: { $id: "x", type: "object" } } })).toEqual([
      {
        path: "policies[0].overrides.schema.$id",
        message: "must not be set: each action's schema is compiled on its own",
      },
    ]);
  });

  it("refuses an unknown keyword in the overrides schema, at its path, rather than ignore it", () => {
    expect(
      rule({
        overrides: {
          keys: ["version"],
          schema: { type: "object", properties: { version: { type: "string", minLenght: 2 } } },
        },
      }),
    ).toEqual([
      {
        path: "policies[0].overrides.schema.properties.version.minLenght",
        message: "is not a JSON Schema keyword (a misspelling?); it would be ignored",
      },
    ]);
    // A property may have any name; annotations and errorMessage (ajv-errors) are keywords.
    expect(
      policyOf(
        doc({
          overrides: {
            keys: ["minLenght"],
            schema: {
              type: "object",
              title: "t",
              properties: {
                minLenght: { type: "integer", description: "d", errorMessage: "must be a whole number" },
              },
            },
          },
        }),
      ).overrides.keys,
    ).toEqual(["minLenght"]);
  });

  it("a policy posts to its channel, by DM, or to the default channel", () => {
    const noDefaultChannel = JSON.stringify({
      version: 1,
      policies: [{ name: "p", match: "a.*", approvers: { users: ["U1"] } }],
    });
    expect(problemsOf(noDefaultChannel)).toEqual([
      { path: "policies[0].channel", message: "no channel: set channel, or dm: true, or defaults.channel" },
    ]);
    expect(rule({ dm: true, channel: "C1" })).toEqual([
      { path: "policies[0].dm", message: "dm: true and channel are exclusive; keep one" },
    ]);
    expect(policyOf(noDefaultChannel.replace('"match"', '"dm":true,"match"')).dm).toBe(true);
  });

  it("policy names are unique and matches distinct and valid", () => {
    const text = JSON.stringify({
      version: 1,
      defaults: { channel: "C0", super_approvers: ["UADMIN"] },
      policies: [
        { name: "a", match: "deploy.*" },
        { name: "a", match: "deploy.*" },
        { name: "c", match: "deploy.(prod|stage)" },
      ],
    });
    expect(problemsOf(text)).toEqual([
      { path: "policies[1].name", message: "repeats the name of policies[0]" },
      {
        path: "policies[1].match",
        message: "is the same as policies[0].match; only one of the two policies would ever be used",
      },
      {
        path: "policies[2].match",
        message:
          'is not a valid glob: "(" is not allowed at position 8; use letters, digits, . _ : - and the wildcards * ? [...] {a,b}',
      },
    ]);
  });

  it("require_super_approver needs default super-approvers", () => {
    expect(rule({}, { unknown_action: "require_super_approver" })).toEqual([
      {
        path: "defaults.super_approvers",
        message: "must list at least one person when unknown_action is require_super_approver",
      },
    ]);
  });

  it("reports every problem of a document at once, in document order", () => {
    const text = `version: 1
defaults:
  timeout: 8d
policies:
  - name: one
    match: "a.*"
    approvers: { users: [U1] }
    required_approvals: 2
    redaction: { mode: all, keys: [x] }
  - name: two
    match: "b.*"
    dm: true
    approvers: { users: [U1] }
    timeout: 15m
    reminders: [20m]
    stages: [{ name: qa }]
`;
    expect(problemsOf(text)).toEqual([
      { path: "defaults.timeout", message: "must be between 1m and 7d (is 8d)" },
      {
        path: "policies[0].required_approvals",
        message: "is 2 but approvers.users lists only 1 person and no groups",
      },
      { path: "policies[0].channel", message: "no channel: set channel, or dm: true, or defaults.channel" },
      { path: "policies[0].redaction.keys", message: "must be empty when mode is all" },
      { path: "policies[1].reminders[0]", message: "must be shorter than the timeout (15m)" },
      { path: "policies[1].stages[0]", message: "has no members: list users or groups" },
    ]);
  });
});

describe("compilePolicies", () => {
  it("returns the compiled set", () => {
    expect(compilePolicies(specExample).policies.map((p) => p.name)).toEqual(["production-deploy"]);
  });

  it("throws PolicyLoadError listing every problem, one per line", () => {
    let error: unknown;
    try {
      compilePolicies(
        JSON.stringify({
          version: 3,
          defaults: { channel: "C0" },
          policies: [{ name: "x", match: "y", approvers: { users: ["U1"] }, aprovers: {} }],
        }),
      );
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(PolicyLoadError);
    const loadError = error as PolicyLoadError;
    expect(loadError.problems).toEqual([
      { path: "version", message: "must be 1" },
      { path: "policies[0].aprovers", message: "unknown key" },
    ]);
    expect(loadError.message).toBe("version: must be 1\npolicies[0].aprovers: unknown key");
    expect(loadError.name).toBe("PolicyLoadError");
  });
});

describe("loadPolicyFile", () => {
  it("reads a file and reports its path", async () => {
    const dir = await mkdtemp(join(tmpdir(), "countersign-policy-"));
    try {
      const path = join(dir, "policies.yaml");
      await writeFile(path, specExample);
      const result = await loadPolicyFile(path);
      expect(result.ok).toBe(true);
      expect(result.source).toBe(path);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("reports a missing file as a problem, without throwing", async () => {
    const result = await loadPolicyFile("/nonexistent/countersign/policies.yaml");
    expect(result).toEqual({
      ok: false,
      source: "/nonexistent/countersign/policies.yaml",
      problems: [
        { path: "(file)", message: "cannot read /nonexistent/countersign/policies.yaml: no such file" },
      ],
    });
  });
});
