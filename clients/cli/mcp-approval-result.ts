import { timestampMs } from "@bufbuild/protobuf/wkt";
import { type Approval, Decision, State } from "@countersign/sdk";
import { z } from "zod";
import { progressSummary, stateName, summaryLine } from "./approval-output.js";

const stateValues = ["pending", "approved", "denied", "expired", "cancelled"] as const;

/** The output schema of every approval tool: the approval, in the words an agent acts on. */
export const approvalResultSchema = z.object({
  id: z.string().describe("the approval id (for wait_for_approval, get_approval, cancel_approval)"),
  action: z.string().describe("the action, as requested"),
  title: z.string().describe("the one-line summary shown to approvers"),
  state: z.enum(stateValues).describe("where the approval stands; only `approved` lets you proceed"),
  approved: z.boolean().describe("true only when state is `approved`: the one case in which you may proceed"),
  decided_by: z
    .string()
    .describe(
      "who made the final decision (the approver or denier, the admin, the requester who cancelled, or `system` for an expiry); empty while pending",
    ),
  reason: z.string().describe("the reason given with the final decision, verbatim; may be empty"),
  admin_override: z.boolean().describe("true when an admin decided instead of the approvers"),
  params: z
    .record(z.string(), z.unknown())
    .describe("the parameters as they stand, approvers' edits applied: proceed with exactly these"),
  params_sha256: z.string().describe("SHA-256 of the canonical JSON (RFC 8785) of params"),
  edited_keys: z.array(z.string()).describe("top-level keys of params an approver changed"),
  votes: z
    .array(
      z.object({
        approver: z.string(),
        decision: z.enum(["approve", "deny", "acknowledge"]),
        reason: z.string(),
        stage: z.string().describe("the co-sign stage of an acknowledgement; empty otherwise"),
      }),
    )
    .describe("every vote so far, in order"),
  approvals: z.number().int().describe("approve votes so far"),
  required_approvals: z.number().int().describe("approve votes needed"),
  denials: z.number().int().describe("deny votes so far"),
  deny_threshold: z.number().int().describe("deny votes that deny it"),
  policy: z.string().describe("the policy that governs the approval"),
  requester: z.string().describe("who asked (the identity of this server's client certificate)"),
  on_behalf_of: z.string().describe("the person it was asked for; may be empty"),
  created_at: z.string().describe("ISO 8601"),
  expires_at: z.string().describe("ISO 8601; when a pending approval expires"),
  decided_at: z.string().describe("ISO 8601; empty while pending"),
  created: z
    .boolean()
    .optional()
    .describe("request_approval only: false when the idempotency key matched an approval made before"),
});

/** The structured content of an approval tool's result. */
export type ApprovalResult = z.infer<typeof approvalResultSchema>;

const iso = (ts: Approval["createTime"]) => (ts === undefined ? "" : new Date(timestampMs(ts)).toISOString());

function decisionName(decision: Decision): "approve" | "deny" | "acknowledge" {
  switch (decision) {
    case Decision.APPROVE:
      return "approve";
    case Decision.DENY:
      return "deny";
    case Decision.ACKNOWLEDGE:
    case Decision.UNSPECIFIED:
      return "acknowledge";
    default:
      return "acknowledge";
  }
}

/** The structured content for an approval. */
export function approvalResult(approval: Approval, created?: boolean): ApprovalResult {
  const name = stateName(approval.state);
  const state = (stateValues as readonly string[]).includes(name)
    ? (name as ApprovalResult["state"])
    : "pending";
  return {
    id: approval.id,
    action: approval.action,
    title: approval.title,
    state,
    approved: approval.state === State.APPROVED,
    decided_by: approval.decidedBy,
    reason: approval.reason,
    admin_override: approval.adminOverride,
    params: approval.params ?? {},
    params_sha256: approval.paramsSha256,
    edited_keys: [...new Set(approval.edits.flatMap((edit) => edit.changes.map((change) => change.key)))],
    votes: approval.votes.map((vote) => ({
      approver: vote.approver,
      decision: decisionName(vote.decision),
      reason: vote.reason,
      stage: vote.stage,
    })),
    approvals: approval.votes.filter((v) => v.decision === Decision.APPROVE).length,
    required_approvals: approval.requiredApprovals,
    denials: approval.votes.filter((v) => v.decision === Decision.DENY).length,
    deny_threshold: approval.denyThreshold,
    policy: approval.policyName,
    requester: approval.requester,
    on_behalf_of: approval.onBehalfOf,
    created_at: iso(approval.createTime),
    expires_at: iso(approval.expireTime),
    decided_at: iso(approval.decideTime),
    ...(created === undefined ? {} : { created }),
  };
}

/** Text the server did not write (reasons, names) is quoted, so it reads as data, not as instructions. */
const quoted = (text: string) => JSON.stringify(text);

/** `by "alice"` and `: "reason"` parts of a final decision; empty when the server has none. */
function byAndWhy(approval: Approval): string {
  const by = approval.decidedBy === "" ? "" : ` by ${quoted(approval.decidedBy)}`;
  const override = approval.adminOverride ? " (admin override)" : "";
  const why = approval.reason === "" ? " (no reason given)" : ` with the reason ${quoted(approval.reason)}`;
  return `${by}${override}${why}`;
}

/** The votes so far, e.g. `"alice" approve "ok"; "bob" deny`. */
export function votesText(approval: Approval): string {
  if (approval.votes.length === 0) return "no votes yet";
  return approval.votes
    .map((vote) => {
      const stage = vote.stage === "" ? "" : ` (${vote.stage})`;
      const why = vote.reason === "" ? "" : ` ${quoted(vote.reason)}`;
      return `${quoted(vote.approver)} ${decisionName(vote.decision)}${stage}${why}`;
    })
    .join("; ");
}

/**
 * Where a pending approval stands, for progress notifications: what it still needs and who has voted.
 * E.g. `approval 01J… (deploy.production) pending: 1/2 approvals, expires in 29m; votes: "alice" approve`.
 */
export function progressText(approval: Approval, now: number = Date.now()): string {
  return `${summaryLine(approval, now)}; votes: ${votesText(approval)}`;
}

/**
 * The plain-text summary of a tool result: first whether the agent may proceed, then the facts. Only the
 * server's fields are used; nothing is paraphrased.
 */
export function approvalText(approval: Approval, now: number = Date.now()): string {
  const head = `approval ${approval.id} (${approval.action})`;
  const params = `${JSON.stringify(approval.params ?? {})} (params_sha256 ${approval.paramsSha256})`;
  switch (approval.state) {
    case State.APPROVED: {
      const edited = approvalResult(approval).edited_keys;
      const edits =
        edited.length === 0
          ? ""
          : `\nAn approver changed ${edited.map(quoted).join(", ")} before approving: use these params, not the ones you asked with.`;
      return `APPROVED: ${head} was approved${byAndWhy(approval)}.\nYou may proceed with exactly these params: ${params}${edits}`;
    }
    case State.DENIED:
      return `DENIED: ${head} was denied${byAndWhy(approval)}.\nDo not proceed.`;
    case State.EXPIRED:
      return `EXPIRED: ${head} expired: nobody decided before its deadline.\nDo not proceed.`;
    case State.CANCELLED:
      return `CANCELLED: ${head} was cancelled${byAndWhy(approval)}.\nDo not proceed.`;
    case State.PENDING:
    case State.UNSPECIFIED:
      return (
        `PENDING, NOT APPROVED: ${head} is still waiting for a decision (${progressSummary(approval, now)}; votes: ${votesText(approval)}).\n` +
        `Do not proceed yet. To keep waiting, call wait_for_approval with id ${quoted(approval.id)}.`
      );
    default:
      return `${head} is in state ${stateName(approval.state)}.\nDo not proceed.`;
  }
}
