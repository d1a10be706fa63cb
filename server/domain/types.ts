/**
 * The product's own vocabulary, free of any transport or storage type. Times are epoch milliseconds.
 */

/** A JSON value as it appears in params. */
export type JsonValue = string | number | boolean | null | JsonValue[] | JsonObject;
/** A JSON object, e.g. an approval's params. */
export type JsonObject = { [key: string]: JsonValue };

/** The value of `key` in `object`, read as an own key only: `constructor` is a key like any other. */
export function ownValue(object: JsonObject, key: string): JsonValue | undefined {
  return Object.hasOwn(object, key) ? object[key] : undefined;
}

/** Where an approval is in its lifecycle; every state but `pending` is terminal. */
export type ApprovalState = "pending" | "approved" | "denied" | "expired" | "cancelled";

/** What one person says about an approval. */
export type Decision = "approve" | "deny" | "acknowledge";

/** True for the states an approval never leaves. */
export function isTerminal(state: ApprovalState): boolean {
  return state !== "pending";
}

/** Where a request comes from. */
export interface Origin {
  repo: string;
  branch: string;
  pullRequest: string;
  runId: string;
  links: { label: string; url: string }[];
}

/** One person's recorded decision. */
export interface Vote {
  approver: string;
  decision: Decision;
  reason: string;
  time: number;
  /** The co-sign stage of an acknowledgement; empty otherwise. */
  stage: string;
  /** Identity of the client that submitted it (e.g. the Slack gateway). */
  submittedBy: string;
  /** The click or command id; a retry with the same id is a no-op. */
  interactionId: string;
  /** Other identities of the approver the decider resolved (a Slack user's e-mail), if any. */
  approverAliases?: string[];
}

/** One changed top-level key of params. */
export interface ParamChange {
  key: string;
  before?: JsonValue;
  after?: JsonValue;
}

/** An applied "approve with edits". */
export interface ParamsEdit {
  editor: string;
  time: number;
  changes: ParamChange[];
  paramsSha256Before: string;
  paramsSha256After: string;
}

/** A set of people: Slack user ids (or e-mails) and Slack user-group ids. */
export interface People {
  users: string[];
  groups: string[];
}

/** A co-sign stage: `required` distinct members must acknowledge before approvals count. */
export interface CoSignStage {
  name: string;
  members: People;
  required: number;
}

/** How params are shown to approvers. */
export interface Redaction {
  mode: "none" | "allowlist" | "denylist" | "all";
  keys: string[];
}

/** What approvers may edit ("approve with edits") and requesters may override. */
export interface OverrideRules {
  /** Top-level params keys approvers may change. Empty: edits are not allowed. */
  keys: string[];
  /** Maximum number of changed keys in one edit. */
  maxKeys: number;
  /** Maximum bytes of the changed values (canonical JSON of the new values). */
  maxDiffBytes: number;
  /** JSON Schema the edited params must satisfy. */
  schema?: JsonObject;
  /** Policy settings a requester may override per request. */
  requestKeys: ("timeout" | "channel")[];
  /**
   * An applied edit keeps the approvals given before it (`overrides.edits_keep_approvals`). Off (and
   * absent from rules stored before it existed): an edit sets earlier approvals aside, since they
   * approved other params.
   */
  editsKeepApprovals?: boolean;
}

/** Re-request rules. */
export interface RerequestRules {
  allowed: boolean;
  cooldownMs: number;
  maxPerDay: number;
}

/** Escalation: one message to a fallback channel / users before expiry. */
export interface Escalation {
  afterMs: number;
  channel: string;
  users: string[];
}

/** A policy, compiled from the policy file: who must look at an action, and how. */
export interface Policy {
  name: string;
  /** Glob over action names. */
  match: string;
  description: string;
  /** Slack channel id to post to; empty with `dm`. */
  channel: string;
  /** Message the approvers directly instead of a channel. */
  dm: boolean;
  approvers: People;
  /** May approve or deny alone: this policy's own plus `defaults.super_approvers`. */
  superApprovers: string[];
  requiredApprovals: number;
  denyThreshold: number;
  /** A deny must carry a reason. */
  denyReasonRequired: boolean;
  stages: CoSignStage[];
  timeoutMs: number;
  remindersMs: number[];
  escalation?: Escalation;
  redaction: Redaction;
  /**
   * Refuse at create params whose visible part does not fit in full in the approval message, so that
   * approvers never need "More info" to read them. @default false
   */
  paramsMustFit?: boolean;
  /**
   * Refuse at create a request without `on_behalf_of`, for actions that humans request through a client,
   * so that the person it is for can never approve it. @default false
   */
  onBehalfOfRequired?: boolean;
  overrides: OverrideRules;
  rerequest: RerequestRules;
}

/** The whole policy file, compiled. */
export interface PolicySet {
  /** SHA-256 over the canonical JSON of the document. */
  sha256: string;
  defaults: {
    channel: string;
    timeoutMs: number;
    unknownAction: "deny" | "require_super_approver";
    superApprovers: string[];
  };
  policies: Policy[];
}

/**
 * The rules an approval is governed by, copied from its policy when it was created, so that a policy
 * reload never changes the rules of a request already in flight.
 */
export type ApprovalRules = Omit<Policy, "match" | "description" | "paramsMustFit" | "onBehalfOfRequired">;

/** Progress of one co-sign stage. */
export interface StageProgress {
  name: string;
  required: number;
  acknowledgedBy: string[];
}

/**
 * The verified credentials of an admin call: `name` is what the caller says (recorded as `decidedBy`),
 * the others are what the server checked.
 */
export interface AdminCaller {
  /** The self-asserted admin name (`admin` of the request, else the token holder). */
  name: string;
  /** Identity of the client certificate the call came with; empty without one (development mode). */
  certificate: string;
  /** Holder of the admin token the call presented. */
  tokenHolder: string;
}

/** A request for human approval and everything that happened to it. */
export interface Approval {
  id: string;
  action: string;
  title: string;
  justification: string;
  params: JsonObject;
  paramsSha256: string;
  requester: string;
  onBehalfOf: string;
  origin: Origin;
  policyName: string;
  policySha256: string;
  rules: ApprovalRules;
  state: ApprovalState;
  /** The votes that count. */
  votes: Vote[];
  /**
   * Approvals set aside by a later edit of params (they approved other params): kept for the record,
   * never counted; their approvers may vote again on the edited params. Absent on approvals stored
   * before this existed.
   */
  supersededVotes?: Vote[];
  stages: StageProgress[];
  edits: ParamsEdit[];
  createTime: number;
  expireTime: number;
  /** 0 while pending. */
  decideTime: number;
  decidedBy: string;
  reason: string;
  adminOverride: boolean;
  lineageId: string;
  rerequestOf: string;
  overrides: { timeoutMs?: number; channel?: string };
  /** Incremented on every stored change. */
  version: number;
  /** Who made an admin override, as verified by the server (not the self-asserted `decidedBy`). */
  adminCaller?: AdminCaller;
  /**
   * Random id of the write that stored this version, set by the writer: lets it recognise its own write
   * when the store applied it after the call had failed (a timeout). Absent on older versions.
   */
  writeId?: string;
}
