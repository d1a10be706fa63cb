import { toJsonString } from "@bufbuild/protobuf";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { type Approval, ApprovalSchema, Decision, State } from "@countersign/sdk";
import { type Command, Option } from "commander";
import { jsonDisplay, visibleText } from "../../server/domain/display-text.js";
import { formatDuration } from "../../server/policy/duration.js";
import { exitCodes } from "./client-connection.js";

/** How a command prints approvals. */
export type OutputFormat = "text" | "json";

/** Adds `--output text|json`. */
export function addOutputOption(command: Command): Command {
  return command.addOption(
    new Option("--output <format>", "text for people, json for programs (one JSON object per line)")
      .choices(["text", "json"])
      .default("text"),
  );
}

/** `approved` for State.APPROVED. */
export function stateName(state: State): string {
  return (State[state] ?? `state ${state}`).toLowerCase();
}

/**
 * The approval as one line of protobuf JSON (the same form the Connect API and `buf curl` use), with
 * every control or invisible character in its strings written as a JSON `\uXXXX` escape, so that
 * printing it can neither drive the terminal nor hide anything.
 */
export function approvalJson(approval: Approval): string {
  return visibleText(toJsonString(ApprovalSchema, approval));
}

/** The exit status of a `--wait` or `watch` that ended in this state. */
export function exitCodeFor(state: State): number {
  switch (state) {
    case State.APPROVED:
      return exitCodes.approved;
    case State.DENIED:
      return exitCodes.denied;
    case State.EXPIRED:
      return exitCodes.expired;
    case State.CANCELLED:
      return exitCodes.cancelled;
    case State.PENDING:
    case State.UNSPECIFIED:
      return exitCodes.error;
    default:
      return exitCodes.error;
  }
}

const remaining = (ms: number) => formatDuration(Math.max(0, Math.round(ms / 1000) * 1000));

/**
 * Where a pending approval stands: votes so far and what it waits for, e.g. `1/2 approvals, expires in
 * 29m`.
 */
export function progressSummary(approval: Approval, now: number = Date.now()): string {
  const parts: string[] = [];
  const stage = approval.stages.find((s) => !s.complete);
  if (stage !== undefined)
    parts.push(
      `waiting for ${visibleText(stage.name)} (${stage.acknowledgedBy.length}/${stage.required} acknowledgements)`,
    );
  const approvals = approval.votes.filter((v) => v.decision === Decision.APPROVE).length;
  parts.push(`${approvals}/${approval.requiredApprovals} approvals`);
  const denials = approval.votes.filter((v) => v.decision === Decision.DENY).length;
  if (denials > 0) parts.push(`${denials}/${approval.denyThreshold} denials`);
  if (approval.expireTime !== undefined)
    parts.push(`expires in ${remaining(timestampMs(approval.expireTime) - now)}`);
  return parts.join(", ");
}

/**
 * One line about an approval: where it stands while pending, who decided and why once final.
 * E.g. `approval 01J… (deploy.production) approved by alice: looks good`. Text that came from people is
 * shown with its control and invisible characters as escapes (see `visibleText`), line breaks too, so
 * it can neither drive the terminal nor fake a line.
 */
export function summaryLine(approval: Approval, now: number = Date.now()): string {
  const head = `approval ${visibleText(approval.id)} (${visibleText(approval.action)}) ${stateName(approval.state)}`;
  if (approval.state === State.PENDING) return `${head}: ${progressSummary(approval, now)}`;
  const by = approval.decidedBy === "" ? "" : ` by ${visibleText(approval.decidedBy)}`;
  const override = approval.adminOverride ? " (admin override)" : "";
  const why = approval.reason === "" ? "" : `: ${visibleText(approval.reason)}`;
  return `${head}${by}${override}${why}`;
}

function time(ts: Approval["createTime"]): string {
  return ts === undefined ? "-" : new Date(timestampMs(ts)).toISOString();
}

/**
 * Every field of an approval a person wants to see, one per line; text that came from people is shown
 * as in {@link summaryLine}, and the params as JSON with the same escapes (every key, exactly).
 */
export function detailLines(approval: Approval, now: number = Date.now()): string[] {
  const lines = [
    `id:            ${visibleText(approval.id)}`,
    `action:        ${visibleText(approval.action)}`,
    `title:         ${visibleText(approval.title)}`,
    `state:         ${stateName(approval.state)}`,
    `requester:     ${visibleText(approval.requester)}`,
  ];
  if (approval.onBehalfOf !== "") lines.push(`on behalf of:  ${visibleText(approval.onBehalfOf)}`);
  if (approval.justification !== "") lines.push(`justification: ${visibleText(approval.justification)}`);
  lines.push(
    `policy:        ${visibleText(approval.policyName)} (needs ${approval.requiredApprovals} approval${approval.requiredApprovals === 1 ? "" : "s"})`,
  );
  if (approval.params !== undefined && Object.keys(approval.params).length > 0)
    lines.push(`params:        ${jsonDisplay(approval.params)} (sha256 ${approval.paramsSha256})`);
  lines.push(`created:       ${time(approval.createTime)}`);
  if (approval.state === State.PENDING) {
    lines.push(
      `expires:       ${time(approval.expireTime)}`,
      `progress:      ${progressSummary(approval, now)}`,
    );
  } else {
    lines.push(`decided:       ${time(approval.decideTime)} by ${visibleText(approval.decidedBy) || "-"}`);
    if (approval.reason !== "") lines.push(`reason:        ${visibleText(approval.reason)}`);
  }
  for (const vote of approval.votes) {
    const decision = (Decision[vote.decision] ?? String(vote.decision)).toLowerCase();
    const why = vote.reason === "" ? "" : `: ${visibleText(vote.reason)}`;
    lines.push(
      `vote:          ${visibleText(vote.approver)} ${decision}${vote.stage === "" ? "" : ` (${visibleText(vote.stage)})`}${why}`,
    );
  }
  return lines;
}
