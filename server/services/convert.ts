import { create, fromJson, type JsonValue as ProtoJsonValue } from "@bufbuild/protobuf";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
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
import type { CreateApprovalRequest } from "../../gen/countersign/v1/approval_service_pb.js";
import { ValidationError } from "../domain/errors.js";
import type { CreateInput } from "../domain/lifecycle.js";
import type { Approval, ApprovalState, Decision, JsonObject, Origin } from "../domain/types.js";

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
