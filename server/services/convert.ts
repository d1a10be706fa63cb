import {
  create,
  fromJson,
  type JsonObject as ProtoJsonObject,
  type JsonValue as ProtoJsonValue,
  toJson,
} from "@bufbuild/protobuf";
import type { Duration, Timestamp, Value } from "@bufbuild/protobuf/wkt";
import {
  durationFromMs,
  durationMs,
  timestampFromMs,
  timestampMs,
  ValueSchema,
} from "@bufbuild/protobuf/wkt";
import {
  type Approval as ApprovalMessage,
  ApprovalSchema,
  Decision as DecisionEnum,
  type Origin as OriginMessage,
  type PolicyOverrides,
  State,
} from "../../gen/countersign/v1/approval_pb.js";
import {
  type ApprovalRules as ApprovalRulesMessage,
  ApprovalRulesSchema,
  RedactionMode,
} from "../../gen/countersign/v1/approval_rules_pb.js";
import type { CreateApprovalRequest } from "../../gen/countersign/v1/approval_service_pb.js";
import { ValidationError } from "../domain/errors.js";
import type { CreateInput } from "../domain/lifecycle.js";
import type {
  Approval,
  ApprovalRules,
  ApprovalState,
  Decision,
  JsonObject,
  JsonValue,
  Origin,
  ParamChange,
} from "../domain/types.js";

const stateToProto: Record<ApprovalState, State> = {
  pending: State.PENDING,
  approved: State.APPROVED,
  denied: State.DENIED,
  expired: State.EXPIRED,
  cancelled: State.CANCELLED,
};

/** The State enum value of a domain state. */
export function stateToMessage(state: ApprovalState): State {
  return stateToProto[state];
}

/**
 * The domain state of a State enum value; undefined for STATE_UNSPECIFIED.
 * @throws ValidationError for values outside the enum
 */
export function stateFromMessage(state: State, field: string): ApprovalState | undefined {
  switch (state) {
    case State.UNSPECIFIED:
      return undefined;
    case State.PENDING:
      return "pending";
    case State.APPROVED:
      return "approved";
    case State.DENIED:
      return "denied";
    case State.EXPIRED:
      return "expired";
    case State.CANCELLED:
      return "cancelled";
    default:
      throw ValidationError.of(field, `unknown state ${String(state)}`);
  }
}

const decisionToProto: Record<Decision, DecisionEnum> = {
  approve: DecisionEnum.APPROVE,
  deny: DecisionEnum.DENY,
  acknowledge: DecisionEnum.ACKNOWLEDGE,
};

/**
 * The domain decision of a Decision enum value.
 * @throws ValidationError for DECISION_UNSPECIFIED and unknown values
 */
export function decisionFromMessage(decision: DecisionEnum, field: string): Decision {
  switch (decision) {
    case DecisionEnum.APPROVE:
      return "approve";
    case DecisionEnum.DENY:
      return "deny";
    case DecisionEnum.ACKNOWLEDGE:
      return "acknowledge";
    case DecisionEnum.UNSPECIFIED:
      return invalid(field, "is required (DECISION_APPROVE, DECISION_DENY or DECISION_ACKNOWLEDGE)");
    default:
      return invalid(field, `unknown decision ${String(decision)}`);
  }
}

function invalid(field: string, description: string): never {
  throw ValidationError.of(field, description);
}

/** Epoch ms of an optional timestamp; undefined when absent. */
export function optionalMs(ts: Timestamp | undefined): number | undefined {
  return ts === undefined ? undefined : timestampMs(ts);
}

function originFromMessage(origin: OriginMessage | undefined): Origin {
  return {
    repo: origin?.repo ?? "",
    branch: origin?.branch ?? "",
    pullRequest: origin?.pullRequest ?? "",
    runId: origin?.runId ?? "",
    links: (origin?.links ?? []).map((l) => ({ label: l.label, url: l.url })),
  };
}

function overridesFromMessage(overrides: PolicyOverrides | undefined): CreateInput["overrides"] {
  const result: CreateInput["overrides"] = {};
  if (overrides?.timeout !== undefined) result.timeoutMs = durationMs(overrides.timeout);
  if (overrides !== undefined && overrides.channel !== "") result.channel = overrides.channel;
  return result;
}

/** The domain input of a CreateApprovalRequest. */
export function createInputFromMessage(req: CreateApprovalRequest): CreateInput {
  return {
    action: req.action,
    title: req.title,
    justification: req.justification,
    params: (req.params ?? {}) as JsonObject,
    idempotencyKey: req.idempotencyKey,
    onBehalfOf: req.onBehalfOf,
    origin: originFromMessage(req.origin),
    overrides: overridesFromMessage(req.overrides),
    rerequestOf: req.rerequestOf,
  };
}

function optionalTimestamp(ms: number): Timestamp | undefined {
  return ms === 0 ? undefined : timestampFromMs(ms);
}

function value(json: unknown) {
  return fromJson(ValueSchema, json as ProtoJsonValue);
}

/** Messages are built once per stored version and shared by every watcher of it. */
const messages = new WeakMap<Approval, ApprovalMessage>();

/** The Approval message of a domain approval (cached per stored version; do not mutate). */
export function approvalToMessage(a: Approval): ApprovalMessage {
  const cached = messages.get(a);
  if (cached !== undefined) return cached;
  const overrides: { timeout?: ReturnType<typeof durationFromMs>; channel: string } = {
    channel: a.overrides.channel ?? "",
  };
  if (a.overrides.timeoutMs !== undefined) overrides.timeout = durationFromMs(a.overrides.timeoutMs);
  const message = create(ApprovalSchema, {
    id: a.id,
    action: a.action,
    title: a.title,
    justification: a.justification,
    params: a.params,
    paramsSha256: a.paramsSha256,
    requester: a.requester,
    onBehalfOf: a.onBehalfOf,
    origin: a.origin,
    policyName: a.policyName,
    policySha256: a.policySha256,
    state: stateToProto[a.state],
    votes: a.votes.map((v) => ({
      approver: v.approver,
      decision: decisionToProto[v.decision],
      reason: v.reason,
      time: timestampFromMs(v.time),
      stage: v.stage,
      submittedBy: v.submittedBy,
    })),
    requiredApprovals: a.rules.requiredApprovals,
    denyThreshold: a.rules.denyThreshold,
    stages: a.stages.map((s) => ({
      name: s.name,
      required: s.required,
      acknowledgedBy: s.acknowledgedBy,
      complete: s.acknowledgedBy.length >= s.required,
    })),
    createTime: timestampFromMs(a.createTime),
    expireTime: timestampFromMs(a.expireTime),
    decideTime: optionalTimestamp(a.decideTime),
    decidedBy: a.decidedBy,
    reason: a.reason,
    lineageId: a.lineageId,
    rerequestOf: a.rerequestOf,
    edits: a.edits.map((e) => ({
      editor: e.editor,
      time: timestampFromMs(e.time),
      changes: e.changes.map((c) => ({
        key: c.key,
        ...(c.before === undefined ? {} : { before: value(c.before) }),
        ...(c.after === undefined ? {} : { after: value(c.after) }),
      })),
      paramsSha256Before: e.paramsSha256Before,
      paramsSha256After: e.paramsSha256After,
    })),
    adminOverride: a.adminOverride,
    overrides,
    version: BigInt(a.version),
  });
  messages.set(a, message);
  return message;
}

const redactionToProto: Record<ApprovalRules["redaction"]["mode"], RedactionMode> = {
  none: RedactionMode.NONE,
  allowlist: RedactionMode.ALLOWLIST,
  denylist: RedactionMode.DENYLIST,
  all: RedactionMode.ALL,
};

function redactionFromMessage(mode: RedactionMode): ApprovalRules["redaction"]["mode"] {
  switch (mode) {
    case RedactionMode.ALLOWLIST:
      return "allowlist";
    case RedactionMode.DENYLIST:
      return "denylist";
    case RedactionMode.ALL:
      return "all";
    case RedactionMode.NONE:
    case RedactionMode.UNSPECIFIED:
      return "none";
    default:
      return "none";
  }
}

/** Rule messages are built once per rules object (shared by every version of an approval). */
const ruleMessages = new WeakMap<ApprovalRules, ApprovalRulesMessage>();

/** The ApprovalRules message of an approval's rules (cached; do not mutate). */
export function rulesToMessage(r: ApprovalRules): ApprovalRulesMessage {
  const cached = ruleMessages.get(r);
  if (cached !== undefined) return cached;
  const message = create(ApprovalRulesSchema, {
    policyName: r.name,
    channel: r.channel,
    dm: r.dm,
    approvers: { users: r.approvers.users, groups: r.approvers.groups },
    superApprovers: r.superApprovers,
    requiredApprovals: r.requiredApprovals,
    denyThreshold: r.denyThreshold,
    denyReasonRequired: r.denyReasonRequired,
    stages: r.stages.map((s) => ({
      name: s.name,
      members: { users: s.members.users, groups: s.members.groups },
      required: s.required,
    })),
    timeout: durationFromMs(r.timeoutMs),
    reminders: r.remindersMs.map(durationFromMs),
    ...(r.escalation === undefined
      ? {}
      : {
          escalation: {
            after: durationFromMs(r.escalation.afterMs),
            channel: r.escalation.channel,
            users: r.escalation.users,
          },
        }),
    redaction: { mode: redactionToProto[r.redaction.mode], keys: r.redaction.keys },
    overrides: {
      keys: r.overrides.keys,
      maxKeys: r.overrides.maxKeys,
      maxDiffBytes: r.overrides.maxDiffBytes,
      ...(r.overrides.schema === undefined ? {} : { schema: r.overrides.schema as ProtoJsonObject }),
      requestKeys: r.overrides.requestKeys,
    },
    rerequest: {
      allowed: r.rerequest.allowed,
      cooldown: durationFromMs(r.rerequest.cooldownMs),
      maxPerDay: r.rerequest.maxPerDay,
    },
  });
  ruleMessages.set(r, message);
  return message;
}

function msOf(d: Duration | undefined): number {
  return d === undefined ? 0 : durationMs(d);
}

/** The domain rules of an ApprovalRules message (as a decider receives them). */
export function rulesFromMessage(m: ApprovalRulesMessage): ApprovalRules {
  const people = (p: { users: string[]; groups: string[] } | undefined) => ({
    users: [...(p?.users ?? [])],
    groups: [...(p?.groups ?? [])],
  });
  const rules: ApprovalRules = {
    name: m.policyName,
    channel: m.channel,
    dm: m.dm,
    approvers: people(m.approvers),
    superApprovers: [...m.superApprovers],
    requiredApprovals: m.requiredApprovals,
    denyThreshold: m.denyThreshold,
    denyReasonRequired: m.denyReasonRequired,
    stages: m.stages.map((s) => ({ name: s.name, members: people(s.members), required: s.required })),
    timeoutMs: msOf(m.timeout),
    remindersMs: m.reminders.map((d) => durationMs(d)),
    redaction: {
      mode: redactionFromMessage(m.redaction?.mode ?? RedactionMode.UNSPECIFIED),
      keys: [...(m.redaction?.keys ?? [])],
    },
    overrides: {
      keys: [...(m.overrides?.keys ?? [])],
      maxKeys: m.overrides?.maxKeys ?? 0,
      maxDiffBytes: m.overrides?.maxDiffBytes ?? 0,
      ...(m.overrides?.schema === undefined ? {} : { schema: m.overrides.schema as JsonObject }),
      requestKeys: (m.overrides?.requestKeys ?? []).filter(
        (k): k is "timeout" | "channel" => k === "timeout" || k === "channel",
      ),
    },
    rerequest: {
      allowed: m.rerequest?.allowed ?? false,
      cooldownMs: msOf(m.rerequest?.cooldown),
      maxPerDay: m.rerequest?.maxPerDay ?? 0,
    },
  };
  if (m.escalation !== undefined) {
    rules.escalation = {
      afterMs: msOf(m.escalation.after),
      channel: m.escalation.channel,
      users: [...m.escalation.users],
    };
  }
  return rules;
}

function jsonOf(v: Value | undefined): JsonValue | undefined {
  return v === undefined ? undefined : (toJson(ValueSchema, v) as JsonValue);
}

/**
 * The domain approval of an Approval message and its rules, as a decider in another process rebuilds it.
 * Votes carry no interaction id (the API does not expose them).
 * @throws ValidationError for a state or decision outside the enums
 */
export function approvalFromMessage(m: ApprovalMessage, rules: ApprovalRules): Approval {
  const overrides: Approval["overrides"] = {};
  if (m.overrides?.timeout !== undefined) overrides.timeoutMs = durationMs(m.overrides.timeout);
  if (m.overrides !== undefined && m.overrides.channel !== "") overrides.channel = m.overrides.channel;
  return {
    id: m.id,
    action: m.action,
    title: m.title,
    justification: m.justification,
    params: (m.params ?? {}) as JsonObject,
    paramsSha256: m.paramsSha256,
    requester: m.requester,
    onBehalfOf: m.onBehalfOf,
    origin: originFromMessage(m.origin),
    policyName: m.policyName,
    policySha256: m.policySha256,
    rules,
    state: stateFromMessage(m.state, "approval.state") ?? "pending",
    votes: m.votes.map((v) => ({
      approver: v.approver,
      decision: decisionFromMessage(v.decision, "approval.votes.decision"),
      reason: v.reason,
      time: optionalMs(v.time) ?? 0,
      stage: v.stage,
      submittedBy: v.submittedBy,
      interactionId: "",
    })),
    stages: m.stages.map((s) => ({
      name: s.name,
      required: s.required,
      acknowledgedBy: [...s.acknowledgedBy],
    })),
    edits: m.edits.map((e) => ({
      editor: e.editor,
      time: optionalMs(e.time) ?? 0,
      changes: e.changes.map((c) => {
        const change: ParamChange = { key: c.key };
        const before = jsonOf(c.before);
        const after = jsonOf(c.after);
        if (before !== undefined) change.before = before;
        if (after !== undefined) change.after = after;
        return change;
      }),
      paramsSha256Before: e.paramsSha256Before,
      paramsSha256After: e.paramsSha256After,
    })),
    createTime: optionalMs(m.createTime) ?? 0,
    expireTime: optionalMs(m.expireTime) ?? 0,
    decideTime: optionalMs(m.decideTime) ?? 0,
    decidedBy: m.decidedBy,
    reason: m.reason,
    adminOverride: m.adminOverride,
    lineageId: m.lineageId,
    rerequestOf: m.rerequestOf,
    overrides,
    version: Number(m.version),
  };
}
