/**
 * The policy file's contract (SPEC C3): its JSON form as a JSON Schema (draft-07, ajv's default), and the
 * TypeScript shape of a document that satisfies it. Every object is closed (`additionalProperties:
 * false`) so that a misspelt key is an error, not a silently ignored setting.
 */
import { durationPatternSource } from "./duration.js";

/** A Slack user id, Slack user-group id, channel id or e-mail. */
const id = { type: "string", minLength: 1, maxLength: 256 } as const;
const idList = { type: "array", items: id, uniqueItems: true } as const;

/**
 * JSON Schema (draft-07) of the policy file. Definitions that the loader gives friendlier error messages
 * for: `duration`, `policyName`.
 */
export const policyFileSchema = {
  $schema: "http://json-schema.org/draft-07/schema#",
  title: "Countersign policy file",
  type: "object",
  additionalProperties: false,
  required: ["version", "policies"],
  properties: {
    version: { description: "Format version; must be 1.", const: 1 },
    defaults: { $ref: "#/definitions/defaults" },
    policies: {
      description: "Policies, matched against action names; the most specific match wins.",
      type: "array",
      items: { $ref: "#/definitions/policy" },
    },
  },
  definitions: {
    duration: {
      description: "One or more number+unit pairs; units ms, s, m, h, d. E.g. 90s, 10m, 1h30m, 2d.",
      type: "string",
      maxLength: 64,
      pattern: durationPatternSource,
    },
    policyName: {
      type: "string",
      pattern: "^[a-z0-9][a-z0-9._-]{0,63}$",
    },
    people: {
      type: "object",
      additionalProperties: false,
      properties: {
        users: { ...idList, description: "Slack user ids (or e-mails)." },
        groups: { ...idList, description: "Slack user-group ids." },
      },
    },
    defaults: {
      description: "Settings every policy, and every action no policy matches, falls back to.",
      type: "object",
      additionalProperties: false,
      properties: {
        channel: { ...id, description: "Slack channel id used when a policy names none." },
        timeout: { $ref: "#/definitions/duration" },
        unknown_action: {
          description: "What an action no policy matches gets.",
          enum: ["deny", "require_super_approver"],
        },
        super_approvers: { ...idList, description: "May approve or deny any action alone." },
      },
    },
    stage: {
      description: "A co-sign stage: `required` members must acknowledge before approvals count.",
      type: "object",
      additionalProperties: false,
      required: ["name"],
      properties: {
        name: { type: "string", minLength: 1, maxLength: 64 },
        users: idList,
        groups: idList,
        required: { type: "integer", minimum: 1 },
      },
    },
    escalation: {
      type: "object",
      additionalProperties: false,
      required: ["after"],
      properties: {
        after: { $ref: "#/definitions/duration" },
        channel: id,
        users: idList,
      },
    },
    redaction: {
      type: "object",
      additionalProperties: false,
      required: ["mode"],
      properties: {
        mode: { enum: ["allowlist", "denylist", "all", "none"] },
        keys: { type: "array", items: { type: "string", minLength: 1 }, uniqueItems: true },
      },
    },
    overrides: {
      type: "object",
      additionalProperties: false,
      properties: {
        keys: {
          description: "Top-level params keys approvers may edit.",
          type: "array",
          items: { type: "string", minLength: 1 },
          uniqueItems: true,
        },
        max_keys: { type: "integer", minimum: 1 },
        max_diff_bytes: { type: "integer", minimum: 1 },
        schema: { description: "JSON Schema (draft-07) the edited params must satisfy.", type: "object" },
        request_keys: {
          description: "Policy settings a requester may override per request.",
          type: "array",
          items: { enum: ["timeout", "channel"] },
          uniqueItems: true,
        },
        edits_keep_approvals: {
          description:
            "An applied edit keeps the approvals given before it (default false: they must be given again).",
          type: "boolean",
        },
      },
    },
    rerequest: {
      type: "object",
      additionalProperties: false,
      properties: {
        allowed: { type: "boolean" },
        cooldown: { $ref: "#/definitions/duration" },
        max_per_day: { type: "integer", minimum: 1 },
      },
    },
    policy: {
      type: "object",
      additionalProperties: false,
      required: ["name", "match"],
      properties: {
        name: { $ref: "#/definitions/policyName" },
        match: { description: "Glob over action names.", type: "string", minLength: 1, maxLength: 1024 },
        description: { type: "string", maxLength: 1000 },
        channel: id,
        dm: { description: "Message the approvers directly instead of a channel.", type: "boolean" },
        approvers: { $ref: "#/definitions/people" },
        super_approvers: idList,
        required_approvals: { type: "integer", minimum: 1 },
        deny_threshold: { type: "integer", minimum: 1 },
        deny_reason_required: { type: "boolean" },
        stages: { type: "array", items: { $ref: "#/definitions/stage" } },
        timeout: { $ref: "#/definitions/duration" },
        reminders: { type: "array", items: { $ref: "#/definitions/duration" } },
        escalation: { $ref: "#/definitions/escalation" },
        redaction: { $ref: "#/definitions/redaction" },
        params_must_fit: {
          description: "Refuse requests whose visible params do not fit in full in the approval message.",
          type: "boolean",
        },
        on_behalf_of_required: {
          description: "Refuse requests that do not name the person they are made for (on_behalf_of).",
          type: "boolean",
        },
        overrides: { $ref: "#/definitions/overrides" },
        rerequest: { $ref: "#/definitions/rerequest" },
      },
    },
  },
} as const;

/** `defaults` of a policy file. */
export interface PolicyFileDefaults {
  channel?: string;
  timeout?: string;
  unknown_action?: "deny" | "require_super_approver";
  super_approvers?: string[];
}

/** A set of people as written in the file. */
export interface PolicyFilePeople {
  users?: string[];
  groups?: string[];
}

/** A co-sign stage as written in the file. */
export interface PolicyFileStage extends PolicyFilePeople {
  name: string;
  required?: number;
}

/** One entry of `policies`. */
export interface PolicyFilePolicy {
  name: string;
  match: string;
  description?: string;
  channel?: string;
  dm?: boolean;
  approvers?: PolicyFilePeople;
  super_approvers?: string[];
  required_approvals?: number;
  deny_threshold?: number;
  deny_reason_required?: boolean;
  stages?: PolicyFileStage[];
  timeout?: string;
  reminders?: string[];
  escalation?: { after: string; channel?: string; users?: string[] };
  redaction?: { mode: "allowlist" | "denylist" | "all" | "none"; keys?: string[] };
  params_must_fit?: boolean;
  on_behalf_of_required?: boolean;
  overrides?: {
    keys?: string[];
    max_keys?: number;
    max_diff_bytes?: number;
    schema?: { [key: string]: unknown };
    request_keys?: ("timeout" | "channel")[];
    edits_keep_approvals?: boolean;
  };
  rerequest?: { allowed?: boolean; cooldown?: string; max_per_day?: number };
}

/** A policy file that satisfies `policyFileSchema`. */
export interface PolicyFileDocument {
  version: 1;
  defaults?: PolicyFileDefaults;
  policies: PolicyFilePolicy[];
}
