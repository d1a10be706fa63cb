import { messageParamsChars, paramsDisplay } from "./display-text.js";
import {
  FailedPreconditionError,
  PermissionDeniedError,
  ResourceExhaustedError,
  ValidationError,
} from "./errors.js";
import { applyParamsEdit } from "./governance.js";
import { canonicalJson, canonicalSha256, sha256Hex } from "./hashing.js";
import { limits } from "./limits.js";
import type {
  AdminCaller,
  Approval,
  ApprovalRules,
  ApprovalState,
  Decision,
  JsonObject,
  Origin,
  People,
  Policy,
  PolicySet,
  Vote,
} from "./types.js";
import { isTerminal } from "./types.js";
import { checkAction, checkId, checkParams, checkUrl, Violations } from "./validation.js";

/** Shortest and longest timeout an approval can have. */
export const minTimeoutMs = 60_000;
export const maxTimeoutMs = 7 * 24 * 3_600_000;
const dayMs = 24 * 3_600_000;

/** Name recorded on approvals of actions no policy matches. */
export const unknownActionPolicyName = "unknown-action";

/** What a requester asks for. */
export interface CreateInput {
  action: string;
  title: string;
  justification: string;
  params: JsonObject;
  idempotencyKey: string;
  onBehalfOf: string;
  origin: Origin;
  overrides: { timeoutMs?: number; channel?: string };
  rerequestOf: string;
}

/**
 * Validates a create request, reporting every problem with its field path.
 * @throws ValidationError
 */
export function validateCreate(input: CreateInput): void {
  const v = new Violations();
  checkAction(v, "action", input.action);
  v.text("title", input.title, limits.titleLength, true);
  v.text("justification", input.justification, limits.justificationLength);
  v.text("idempotency_key", input.idempotencyKey, limits.idempotencyKeyLength);
  v.text("on_behalf_of", input.onBehalfOf, limits.identityLength);
  v.text("origin.repo", input.origin.repo, limits.originFieldLength);
  v.text("origin.branch", input.origin.branch, limits.originFieldLength);
  v.text("origin.pull_request", input.origin.pullRequest, limits.originFieldLength);
  v.text("origin.run_id", input.origin.runId, limits.originFieldLength);
  if (input.origin.links.length > limits.links) {
    v.add("origin.links", `has ${input.origin.links.length} links; the limit is ${limits.links}`);
  } else {
    input.origin.links.forEach((link, i) => {
      v.text(`origin.links[${i}].label`, link.label, limits.originFieldLength);
      checkUrl(v, `origin.links[${i}].url`, link.url);
    });
  }
  if (input.rerequestOf !== "") checkId(v, "rerequest_of", input.rerequestOf);
  if (input.overrides.channel !== undefined) v.text("overrides.channel", input.overrides.channel, 64, true);
  const timeout = input.overrides.timeoutMs;
  if (timeout !== undefined && (timeout < minTimeoutMs || timeout > maxTimeoutMs))
    v.add("overrides.timeout", "must be between 60s and 7d");
  const before = v.list.length;
  checkParams(v, "params", input.params);
  // Size is measured only on params of a valid shape (canonical JSON refuses non-finite numbers), but
  // is reported together with the problems of the other fields.
  if (v.list.length === before) {
    const bytes = Buffer.byteLength(canonicalJson(input.params));
    if (bytes > limits.paramsBytes) v.add("params", `is ${bytes} bytes; the limit is ${limits.paramsBytes}`);
  }
  v.throwIfAny();
}

/** A fingerprint of a request's content: an idempotent retry must have the same one. */
export function createFingerprint(input: CreateInput): string {
  return sha256Hex(
    canonicalJson({
      action: input.action,
      title: input.title,
      justification: input.justification,
      params: input.params,
      onBehalfOf: input.onBehalfOf,
      origin: {
        repo: input.origin.repo,
        branch: input.origin.branch,
        pullRequest: input.origin.pullRequest,
        runId: input.origin.runId,
        links: input.origin.links.map((l) => ({ label: l.label, url: l.url })),
      },
      overrides: { ...input.overrides },
      rerequestOf: input.rerequestOf,
    }),
  );
}

function rulesOf(policy: Policy): ApprovalRules {
  const {
    match: _match,
    description: _description,
    paramsMustFit: _paramsMustFit,
    onBehalfOfRequired: _onBehalfOfRequired,
    ...rules
  } = policy;
  return rules;
}

/** The rules of an action that no policy matches, as `defaults.unknown_action` says. */
function unknownActionRules(set: PolicySet): ApprovalRules {
  return {
    name: unknownActionPolicyName,
    channel: set.defaults.channel,
    dm: false,
    approvers: { users: [], groups: [] },
    superApprovers: set.defaults.superApprovers,
    requiredApprovals: 1,
    denyThreshold: 1,
    denyReasonRequired: false,
    stages: [],
    timeoutMs: set.defaults.timeoutMs,
    remindersMs: [],
    redaction: { mode: "all", keys: [] },
    overrides: { keys: [], maxKeys: 0, maxDiffBytes: 0, requestKeys: [] },
    rerequest: { allowed: false, cooldownMs: 0, maxPerDay: 0 },
  };
}

/** Everything needed to build an approval besides the request itself. */
export interface CreateContext {
  id: string;
  requester: string;
  now: number;
  policySet: PolicySet;
  /** The policy that matches the action, if any. */
  policy: Policy | undefined;
  /** The approval being re-requested, when `rerequest_of` is set. */
  previous?: Approval;
  /** Approvals in the previous approval's lineage created in the last 24 h. */
  lineageCountLastDay?: number;
}

/**
 * Builds a new approval from a validated request and its policy. An action that no policy matches is
 * denied at once, or governed by the super-approvers, as `defaults.unknown_action` says.
 * @throws ValidationError for overrides the policy does not allow
 * @throws FailedPreconditionError, PermissionDeniedError, ResourceExhaustedError for re-request rules
 */
export function buildApproval(input: CreateInput, ctx: CreateContext): Approval {
  const { policy, policySet, now } = ctx;
  const rules = policy !== undefined ? rulesOf(policy) : unknownActionRules(policySet);
  const overrides: Approval["overrides"] = {};
  const v = new Violations();
  if (input.overrides.timeoutMs !== undefined) {
    if (!rules.overrides.requestKeys.includes("timeout"))
      v.add("overrides.timeout", `policy "${rules.name}" does not allow overriding the timeout`);
    else if (input.overrides.timeoutMs > rules.timeoutMs)
      v.add("overrides.timeout", "may only shorten the policy's timeout");
    else overrides.timeoutMs = input.overrides.timeoutMs;
  }
  if (input.overrides.channel !== undefined) {
    if (!rules.overrides.requestKeys.includes("channel"))
      v.add("overrides.channel", `policy "${rules.name}" does not allow overriding the channel`);
    else overrides.channel = input.overrides.channel;
  }
  if (policy?.paramsMustFit === true) {
    const shown = paramsDisplay(input.params, rules.redaction).text.length;
    if (shown > messageParamsChars)
      v.add(
        "params",
        `are ${shown} characters as shown to approvers; policy "${rules.name}" requires params that fit in full in the approval message (${messageParamsChars})`,
      );
  }
  if (policy?.onBehalfOfRequired === true && input.onBehalfOf === "")
    v.add(
      "on_behalf_of",
      `policy "${rules.name}" requires on_behalf_of, the person this request is made for`,
    );
  v.throwIfAny();

  let lineageId = ctx.id;
  if (input.rerequestOf !== "") {
    const previous = ctx.previous;
    if (previous === undefined) throw ValidationError.of("rerequest_of", "no such approval");
    checkRerequest(previous, input, ctx.requester, rules, now, ctx.lineageCountLastDay ?? 0);
    lineageId = previous.lineageId;
  }

  const approval: Approval = {
    id: ctx.id,
    action: input.action,
    title: input.title,
    justification: input.justification,
    params: input.params,
    paramsSha256: canonicalSha256(input.params),
    requester: ctx.requester,
    onBehalfOf: input.onBehalfOf,
    origin: input.origin,
    policyName: rules.name,
    policySha256: policySet.sha256,
    rules,
    state: "pending",
    votes: [],
    stages: rules.stages.map((s) => ({ name: s.name, required: s.required, acknowledgedBy: [] })),
    edits: [],
    createTime: now,
    expireTime: now + (overrides.timeoutMs ?? rules.timeoutMs),
    decideTime: 0,
    decidedBy: "",
    reason: "",
    adminOverride: false,
    lineageId,
    rerequestOf: input.rerequestOf,
    overrides,
    version: 0,
  };
  if (policy === undefined && policySet.defaults.unknownAction === "deny") {
    return finish(approval, "denied", "policy", `no policy matches action "${input.action}"`, now);
  }
  return approval;
}

function checkRerequest(
  previous: Approval,
  input: CreateInput,
  requester: string,
  rules: ApprovalRules,
  now: number,
  lineageCountLastDay: number,
): void {
  if (previous.requester !== requester)
    throw new PermissionDeniedError(`approval ${previous.id} was requested by another client`);
  if (previous.action !== input.action)
    throw ValidationError.of("action", `must equal the re-requested approval's action "${previous.action}"`);
  if (previous.state !== "denied" && previous.state !== "expired")
    throw new FailedPreconditionError(
      `approval ${previous.id} is ${previous.state}; only denied or expired approvals can be re-requested`,
    );
  if (!rules.rerequest.allowed)
    throw new FailedPreconditionError(`policy "${rules.name}" does not allow re-requests`);
  const readyAt = previous.decideTime + rules.rerequest.cooldownMs;
  if (now < readyAt)
    throw new ResourceExhaustedError(
      `re-request cooldown: try again after ${new Date(readyAt).toISOString()}`,
      readyAt - now,
    );
  if (lineageCountLastDay >= rules.rerequest.maxPerDay)
    throw new ResourceExhaustedError(
      `re-request limit: at most ${rules.rerequest.maxPerDay} requests in this lineage per 24 h`,
      dayMs,
    );
}

/** Start of the 24 h window the re-request cap counts in. */
export function rerequestWindowStart(now: number): number {
  return now - dayMs;
}

function same(a: string, b: string): boolean {
  return a !== "" && a.toLowerCase() === b.toLowerCase();
}

/** True when `person` is one of `identities`. */
function isAny(identities: readonly string[], person: string): boolean {
  return identities.some((i) => same(i, person));
}

/** True when any of `who` (one person's identities) is listed in `people`, or one of `groups` is. */
function isMember(people: People, who: readonly string[], groups: readonly string[]): boolean {
  return people.users.some((u) => isAny(who, u)) || people.groups.some((g) => groups.includes(g));
}

function finish(a: Approval, state: ApprovalState, by: string, reason: string, now: number): Approval {
  return { ...a, state, decidedBy: by, reason, decideTime: now };
}

/**
 * True for a pending approval whose deadline has passed: it is expired in all but the stored state, and
 * every path (vote, edit, cancel, resolve, get, watch, list) must finish it as expired first.
 */
export function isOverdue(a: Approval, now: number): boolean {
  return a.state === "pending" && now >= a.expireTime;
}

/**
 * Refuses a change to an approval that is finished, or past its deadline (a decision after the deadline
 * never counts, even before the expiry is stored).
 * @throws FailedPreconditionError
 */
function checkOpen(a: Approval, now: number): void {
  if (a.state === "expired" || isOverdue(a, now)) {
    throw new FailedPreconditionError(
      `approval ${a.id} expired at ${new Date(a.expireTime).toISOString()}; ` +
        "nothing done after its deadline counts (request it again)",
    );
  }
  if (isTerminal(a.state)) {
    const by = a.decidedBy === "" ? "" : ` by ${a.decidedBy}`;
    throw new FailedPreconditionError(`approval ${a.id} is already ${a.state}${by}`);
  }
}

/** The result of a transition: the next approval, and whether anything changed. */
export interface Transition {
  approval: Approval;
  changed: boolean;
}

const unchanged = (approval: Approval): Transition => ({ approval, changed: false });

/** One vote as submitted by a decider. */
export interface VoteInput {
  approver: string;
  approverGroups: readonly string[];
  /**
   * Other identities of the same person, as the decider resolved them (a Slack user's e-mail address):
   * every rule that compares people (self-approval, distinct approvers, membership) compares them all.
   */
  approverAliases?: readonly string[];
  decision: Decision;
  reason: string;
  interactionId: string;
  submittedBy: string;
  editedParams?: JsonObject;
}

/**
 * Validates a vote's fields.
 * @throws ValidationError
 */
export function validateVote(id: string, vote: VoteInput): void {
  const v = new Violations();
  checkId(v, "id", id);
  v.text("approver", vote.approver, limits.identityLength, true);
  v.text("reason", vote.reason, limits.reasonLength);
  v.text("interaction_id", vote.interactionId, limits.idempotencyKeyLength);
  if (vote.approverGroups.length > limits.approverGroups)
    v.add(
      "approver_groups",
      `has ${vote.approverGroups.length} groups; the limit is ${limits.approverGroups}`,
    );
  const aliases = vote.approverAliases ?? [];
  if (aliases.length > limits.approverAliases)
    v.add("approver_aliases", `has ${aliases.length} identities; the limit is ${limits.approverAliases}`);
  else
    aliases.forEach((alias, i) => {
      v.text(`approver_aliases[${i}]`, alias, limits.identityLength, true);
    });
  if (vote.editedParams !== undefined) {
    if (vote.decision !== "approve") v.add("edited_params", "is only allowed with DECISION_APPROVE");
    checkParams(v, "edited_params", vote.editedParams);
  }
  v.throwIfAny();
}

/**
 * Applies one vote: distinct approvers, co-sign stages in order, quorum, deny threshold, super-approvers,
 * no self-approval, optional edits under override governance. A vote with an interaction id already
 * recorded, or a second vote by the same person, changes nothing.
 * @throws FailedPreconditionError when the approval is finished, past its deadline, or the vote comes at
 *   the wrong stage
 * @throws PermissionDeniedError when the approver may not make this decision
 * @throws ValidationError for a missing deny reason or a rejected edit
 */
export function applyVote(a: Approval, vote: VoteInput, now: number): Transition {
  const known = [...a.votes, ...(a.supersededVotes ?? [])];
  if (vote.interactionId !== "" && known.some((v) => v.interactionId === vote.interactionId)) {
    return unchanged(a);
  }
  checkOpen(a, now);
  const who = [vote.approver, ...(vote.approverAliases ?? [])];
  const requester = who.find((i) => same(i, a.requester) || same(i, a.onBehalfOf));
  if (requester !== undefined) {
    const as = requester === vote.approver ? "" : ` (as ${requester})`;
    throw new PermissionDeniedError(`${vote.approver} requested this approval${as} and cannot decide it`);
  }
  if (a.votes.some((v) => [v.approver, ...(v.approverAliases ?? [])].some((i) => isAny(who, i))))
    return unchanged(a);

  const rules = a.rules;
  const isSuper = rules.superApprovers.some((u) => isAny(who, u));
  const isApprover = isSuper || isMember(rules.approvers, who, vote.approverGroups);
  const pendingStage = a.stages.findIndex((s) => s.acknowledgedBy.length < s.required);
  const record: Vote = {
    approver: vote.approver,
    decision: vote.decision,
    reason: vote.reason,
    time: now,
    stage: "",
    submittedBy: vote.submittedBy,
    interactionId: vote.interactionId,
    ...(who.length > 1 ? { approverAliases: who.slice(1) } : {}),
  };

  switch (vote.decision) {
    case "acknowledge": {
      if (pendingStage < 0)
        throw new FailedPreconditionError("no co-sign stage is waiting for acknowledgement");
      const stage = a.stages[pendingStage];
      const stageRules = rules.stages[pendingStage];
      if (stage === undefined || stageRules === undefined) throw new FailedPreconditionError("unknown stage");
      if (!isMember(stageRules.members, who, vote.approverGroups)) {
        const later = rules.stages
          .slice(pendingStage + 1)
          .find((s) => isMember(s.members, who, vote.approverGroups));
        if (later !== undefined) {
          throw new FailedPreconditionError(
            `co-sign stage "${stage.name}" must be acknowledged before stage "${later.name}"`,
          );
        }
        throw new PermissionDeniedError(`${vote.approver} is not a member of co-sign stage "${stage.name}"`);
      }
      const stages = a.stages.map((s, i) =>
        i === pendingStage ? { ...s, acknowledgedBy: [...s.acknowledgedBy, vote.approver] } : s,
      );
      return {
        approval: { ...a, stages, votes: [...a.votes, { ...record, stage: stage.name }] },
        changed: true,
      };
    }
    case "approve": {
      if (!isApprover) throw new PermissionDeniedError(`${vote.approver} is not an approver of this action`);
      if (pendingStage >= 0 && !isSuper) {
        const name = a.stages[pendingStage]?.name ?? "";
        throw new FailedPreconditionError(
          `co-sign stage "${name}" must be acknowledged before approvals count`,
        );
      }
      let next: Approval = { ...a, votes: [...a.votes, record] };
      if (vote.editedParams !== undefined) {
        const edit = applyParamsEdit(a.params, vote.editedParams, rules.overrides, vote.approver, now);
        if (edit !== undefined) {
          next = {
            ...next,
            params: edit.params,
            paramsSha256: edit.edit.paramsSha256After,
            edits: [...a.edits, edit.edit],
          };
          if (rules.overrides.editsKeepApprovals !== true) next = setAsideApprovals(next, record);
        }
      }
      const approvals = next.votes.filter((v) => v.decision === "approve").length;
      if (isSuper || approvals >= rules.requiredApprovals) {
        next = finish(next, "approved", vote.approver, vote.reason, now);
      }
      return { approval: next, changed: true };
    }
    case "deny": {
      const inStage = rules.stages.some((s) => isMember(s.members, who, vote.approverGroups));
      if (!isApprover && !inStage) {
        throw new PermissionDeniedError(`${vote.approver} is not an approver of this action`);
      }
      if (rules.denyReasonRequired && vote.reason.trim() === "") {
        throw ValidationError.of("reason", `policy "${rules.name}" requires a reason to deny`);
      }
      let next: Approval = { ...a, votes: [...a.votes, record] };
      const denials = next.votes.filter((v) => v.decision === "deny").length;
      if (isSuper || denials >= rules.denyThreshold) {
        next = finish(next, "denied", vote.approver, vote.reason, now);
      }
      return { approval: next, changed: true };
    }
  }
}

/**
 * After an edit of params: the approvals given before it (other than the editor's own) no longer count,
 * since they approved other params. They move to `supersededVotes`, and their approvers may vote again.
 * Denials and co-sign acknowledgements stay.
 */
function setAsideApprovals(a: Approval, editorVote: Vote): Approval {
  const stale = a.votes.filter((v) => v !== editorVote && v.decision === "approve");
  if (stale.length === 0) return a;
  return {
    ...a,
    votes: a.votes.filter((v) => !stale.includes(v)),
    supersededVotes: [...(a.supersededVotes ?? []), ...stale],
  };
}

/**
 * Cancels a pending approval, by its requester or (`adminOverride`) by an admin, whose verified
 * credentials (`adminCaller`) are recorded with it.
 * @throws FailedPreconditionError when it is already finished or past its deadline
 */
export function cancelApproval(
  a: Approval,
  by: string,
  reason: string,
  now: number,
  adminOverride = false,
  adminCaller?: AdminCaller,
): Transition {
  checkOpen(a, now);
  const approval: Approval = { ...finish(a, "cancelled", by, reason, now), adminOverride };
  return { approval: adminCaller === undefined ? approval : { ...approval, adminCaller }, changed: true };
}

/**
 * An admin's break-glass decision on a pending approval (the service requires the reason), recorded with
 * the admin's verified credentials (`adminCaller`).
 * @throws FailedPreconditionError when it is already finished or past its deadline
 */
export function resolveApproval(
  a: Approval,
  admin: string,
  decision: "approve" | "deny",
  reason: string,
  now: number,
  adminCaller?: AdminCaller,
): Transition {
  checkOpen(a, now);
  const state = decision === "approve" ? "approved" : "denied";
  const approval: Approval = { ...finish(a, state, admin, reason, now), adminOverride: true };
  return { approval: adminCaller === undefined ? approval : { ...approval, adminCaller }, changed: true };
}

/** Expires a pending approval whose deadline has passed; anything else is unchanged. */
export function expireApproval(a: Approval, now: number): Transition {
  if (!isOverdue(a, now)) return unchanged(a);
  return { approval: finish(a, "expired", "system", "no decision before the deadline", now), changed: true };
}

/** Prefix of the idempotency key of a re-request made with an interaction id. */
export const rerequestKeyPrefix = "rerequest:";

/**
 * The create request that asks again for `previous` on behalf of the person it was made for (the
 * Re-request button): same action, content and origin, linked by `rerequest_of`. It is created as the
 * original requester, so `buildApproval`'s re-request rules (state, policy, cooldown, daily cap) apply.
 * @throws PermissionDeniedError when `requestedBy` is not the approval's `on_behalf_of` person
 */
export function rerequestInput(previous: Approval, requestedBy: string, interactionId: string): CreateInput {
  if (!same(requestedBy, previous.onBehalfOf)) {
    throw new PermissionDeniedError(
      previous.onBehalfOf === ""
        ? `approval ${previous.id} was not made on behalf of a person; its requester must re-request it`
        : `only ${previous.onBehalfOf}, for whom approval ${previous.id} was requested, may re-request it`,
    );
  }
  return {
    action: previous.action,
    title: previous.title,
    justification: previous.justification,
    params: previous.params,
    idempotencyKey: interactionId === "" ? "" : `${rerequestKeyPrefix}${interactionId}`,
    onBehalfOf: previous.onBehalfOf,
    origin: previous.origin,
    overrides: { ...previous.overrides },
    rerequestOf: previous.id,
  };
}
