/**
 * Block Kit rendering: pure functions from an approval (the domain type) to Slack message content. The
 * policy's redaction is applied here and nowhere else in the gateway, so no hidden param value ever
 * reaches Slack.
 */
import type { types } from "@slack/bolt";
import {
  jsonDisplay,
  messageParamsChars,
  paramsDisplay,
  prefixWithin,
  truncate,
  visibleText,
} from "../domain/display-text.js";
import { isParamVisible } from "../domain/redaction.js";
import type { Approval, ApprovalState, JsonValue, ParamChange, Vote } from "../domain/types.js";
import {
  code,
  codeBlocks,
  date,
  duration,
  escapeText,
  group,
  link,
  packLines,
  person,
  quoteLines,
} from "./mrkdwn.js";

/** Message content for `chat.postMessage` / `chat.update`. */
export interface SlackMessageContent {
  /** Plain fallback text (notifications, screen readers). */
  text: string;
  blocks: types.KnownBlock[];
}

/** The `action_id` of every button the gateway renders; each button's `value` is the approval id. */
export const slackActions = {
  approve: "countersign_approve",
  deny: "countersign_deny",
  edit: "countersign_edit",
  info: "countersign_info",
  acknowledge: "countersign_acknowledge",
  rerequest: "countersign_rerequest",
} as const;

/** One of {@link slackActions}. */
export type SlackActionId = (typeof slackActions)[keyof typeof slackActions];

/** Slack's limits that the renderer keeps to. */
const limits = { header: 150, section: 3000, context: 2000, button: 75 } as const;
/** Sections in one "More info" message: well within Slack's 50 blocks and its total message size. */
const sectionsPerDetailsPage = 10;
/** Characters of hidden key names listed in the approval message; "More info" lists them all. */
const hiddenNamesChars = 2000;

const stateWords: Record<ApprovalState, { emoji: string; word: string }> = {
  pending: { emoji: "🔐", word: "Pending" },
  approved: { emoji: "✅", word: "Approved" },
  denied: { emoji: "⛔", word: "Denied" },
  expired: { emoji: "⌛", word: "Expired" },
  cancelled: { emoji: "🚫", word: "Cancelled" },
};

function section(text: string): types.SectionBlock {
  return { type: "section", text: { type: "mrkdwn", text: truncate(text, limits.section) } };
}

function context(text: string): types.ContextBlock {
  return { type: "context", elements: [{ type: "mrkdwn", text: truncate(text, limits.context) }] };
}

function button(
  text: string,
  actionId: SlackActionId,
  value: string,
  style?: "primary" | "danger",
): types.Button {
  return {
    type: "button",
    text: { type: "plain_text", text: truncate(text, limits.button), emoji: true },
    action_id: actionId,
    value,
    ...(style === undefined ? {} : { style }),
  };
}

/** A param value as one line of code, at most `max` characters. */
function valueText(value: JsonValue | undefined, max: number): string {
  return value === undefined ? "(absent)" : code(jsonDisplay(value), max);
}

/**
 * A param key as inline code: the name itself when it reads back exactly, else its JSON string (with
 * escapes for quotes, backslashes, backticks and invisible characters).
 */
function keyText(key: string): string {
  const json = jsonDisplay(key);
  return code(key !== "" && json === `"${key}"` ? key : json);
}

/** The co-sign stage that is waiting, if any. */
function pendingStage(a: Approval) {
  return a.stages.find((s) => s.acknowledgedBy.length < s.required);
}

function approvalsSoFar(a: Approval): number {
  return a.votes.filter((v) => v.decision === "approve").length;
}

function denialsSoFar(a: Approval): number {
  return a.votes.filter((v) => v.decision === "deny").length;
}

/** Who the approval is waiting for, as mentions: the pending stage's members, else the approvers. */
export function waitingFor(a: Approval): string[] {
  const voted = new Set(a.votes.map((v) => v.approver.toLowerCase()));
  const excluded = (u: string) =>
    voted.has(u.toLowerCase()) ||
    u.toLowerCase() === a.requester.toLowerCase() ||
    u.toLowerCase() === a.onBehalfOf.toLowerCase();
  const stage = pendingStage(a);
  const members =
    stage === undefined ? a.rules.approvers : a.rules.stages.find((s) => s.name === stage.name)?.members;
  if (members === undefined) return [];
  return [...members.users.filter((u) => !excluded(u)).map(person), ...members.groups.map(group)];
}

/** Where the approval stands, in one line. */
function progress(a: Approval): string {
  const stage = pendingStage(a);
  if (stage !== undefined)
    return `waiting for co-sign stage *${escapeText(stage.name, 100)}*: ${stage.acknowledgedBy.length} of ${stage.required} acknowledgements`;
  const parts = [`${approvalsSoFar(a)} of ${a.rules.requiredApprovals} approvals`];
  if (a.rules.denyThreshold > 1) parts.push(`${denialsSoFar(a)} of ${a.rules.denyThreshold} denials`);
  return `waiting for approval: ${parts.join(", ")}`;
}

function statusLine(a: Approval): string {
  const { emoji, word } = stateWords[a.state];
  if (a.state === "pending") return `${emoji} *${word}*: ${progress(a)}. Expires ${date(a.expireTime)}.`;
  const by = a.state === "expired" ? "" : ` by ${person(a.decidedBy)}`;
  const admin = a.adminOverride ? " (admin override)" : "";
  const reason = a.reason === "" ? "" : `: “${escapeText(a.reason, 1000)}”`;
  return `${emoji} *${word}*${by}${admin} ${date(a.decideTime)}${reason}`;
}

function voteLine(v: Vote): string {
  const reason = v.reason === "" ? "" : `: “${escapeText(v.reason, 300)}”`;
  switch (v.decision) {
    case "acknowledge":
      return `☑️ ${person(v.approver)} acknowledged (${escapeText(v.stage, 100)})${reason}`;
    case "approve":
      return `👍 ${person(v.approver)} approved${reason}`;
    case "deny":
      return `👎 ${person(v.approver)} denied${reason}`;
  }
}

function originLine(a: Approval): string | undefined {
  const o = a.origin;
  const parts: string[] = [];
  if (o.repo !== "") parts.push(`repo ${code(o.repo)}`);
  if (o.branch !== "") parts.push(`branch ${code(o.branch)}`);
  if (o.pullRequest !== "")
    parts.push(
      /^https?:\/\//.test(o.pullRequest) ? link(o.pullRequest, "pull request") : `PR ${code(o.pullRequest)}`,
    );
  if (o.runId !== "") parts.push(`run ${code(o.runId)}`);
  for (const l of o.links) parts.push(link(l.url, l.label === "" ? l.url : l.label));
  return parts.length === 0 ? undefined : `*Origin:* ${parts.join(" · ")}`;
}

/**
 * The params sections of the approval message: the params approvers may see as JSON, in full up to
 * {@link messageParamsChars} characters, else the first part with a plain note that the rest is in
 * "More info"; and the keys the policy hides, by name.
 */
function messageParamsSections(a: Approval): string[] {
  const { text, hidden } = paramsDisplay(a.params, a.rules.redaction);
  const sections: string[] = [];
  if (text === "") sections.push(hidden.length === 0 ? "*Params:* _none._" : "*Params:*");
  else {
    let part = prefixWithin(text, messageParamsChars);
    if (part.length < text.length) {
      const lastLine = part.lastIndexOf("\n");
      if (lastLine > messageParamsChars / 2) part = part.slice(0, lastLine + 1);
    }
    const blocks = codeBlocks(part, limits.section);
    blocks[0] = `*Params:*\n${blocks[0]}`;
    sections.push(...blocks);
    if (part.length < text.length)
      sections.push(
        `:warning: *This message shows only part of the params* (${part.length} of ${text.length} characters). Press *More info* to read all of them before you vote.`,
      );
  }
  if (hidden.length > 0) {
    let names = `_Hidden by policy (${hidden.length}):_`;
    let listed = 0;
    for (const name of hidden.map(keyText)) {
      if (names.length + name.length > hiddenNamesChars) break;
      names += `${listed === 0 ? " " : ", "}${name}`;
      listed++;
    }
    if (listed < hidden.length)
      names += ` and ${hidden.length - listed} more: press *More info* for every name.`;
    sections.push(names);
  }
  return sections;
}

/** The params sections of "More info": every param approvers may see, in full, and every hidden key. */
function detailsParamsSections(a: Approval): string[] {
  const { text, hidden } = paramsDisplay(a.params, a.rules.redaction);
  const sections = text === "" ? [hidden.length === 0 ? "*Params:* _none._" : "*Params:*"] : [];
  if (text !== "") {
    const blocks = codeBlocks(text, limits.section - "*Params:*\n".length);
    blocks[0] = `*Params:*\n${blocks[0]}`;
    sections.push(...blocks);
  }
  if (hidden.length > 0)
    sections.push(
      ...packLines([`_Hidden by policy (${hidden.length}):_`, ...hidden.map(keyText)], limits.section),
    );
  return sections;
}

/** One changed key of an edit, values cut to `max` characters each (hidden values never shown). */
function changeText(a: Approval, c: ParamChange, max: number): string {
  return isParamVisible(c.key, a.rules.redaction)
    ? `${keyText(c.key)} ${valueText(c.before, max)} → ${valueText(c.after, max)}`
    : `${keyText(c.key)} changed (hidden by policy)`;
}

function editLines(a: Approval, max: number): string[] {
  return a.edits.map((e) => {
    const changes = e.changes.map((c) => changeText(a, c, max));
    return `✏️ ${person(e.editor)} edited ${changes.join(", ")} · params SHA-256 now ${code(e.paramsSha256After.slice(0, 12))}`;
  });
}

/**
 * The edits of "More info", in full: who edited and the new hash, then each changed key as a JSON
 * object `{"key", "before", "after"}` (the values of hidden keys left out), so the diff shown is
 * exactly the diff applied.
 */
function detailsEditSections(a: Approval): string[] {
  const sections: string[] = [];
  for (const e of a.edits) {
    sections.push(
      `✏️ ${person(e.editor)} edited ${e.changes.length} key${e.changes.length === 1 ? "" : "s"} ${date(e.time)} · params SHA-256 ${code(e.paramsSha256Before.slice(0, 12))} → ${code(e.paramsSha256After.slice(0, 12))}`,
    );
    const diff = e.changes.map((c) =>
      isParamVisible(c.key, a.rules.redaction) ? c : { key: c.key, hidden_by_policy: true },
    );
    sections.push(...codeBlocks(jsonDisplay(diff as JsonValue[], 2), limits.section));
  }
  return sections;
}

function policySummary(a: Approval): string {
  const r = a.rules;
  const parts = [`policy ${code(a.policyName)}`];
  parts.push(`${r.requiredApprovals} approval${r.requiredApprovals === 1 ? "" : "s"} needed`);
  if (r.denyThreshold > 1) parts.push(`${r.denyThreshold} denials deny`);
  if (r.stages.length > 0)
    parts.push(
      `co-sign first: ${r.stages.map((s) => `${escapeText(s.name, 100)} (${s.required})`).join(" → ")}`,
    );
  parts.push(`times out after ${duration(a.expireTime - a.createTime)}`);
  const approvers = [...r.approvers.users.map(person), ...r.approvers.groups.map(group)];
  if (approvers.length > 0) parts.push(`approvers ${approvers.slice(0, 20).join(", ")}`);
  return parts.join(" · ");
}

function buttons(a: Approval): types.ActionsBlock | undefined {
  const id = a.id;
  if (a.state === "pending") {
    const elements: types.Button[] = [];
    const stage = pendingStage(a);
    if (stage !== undefined)
      elements.push(button(`Acknowledge (${stage.name})`, slackActions.acknowledge, id, "primary"));
    elements.push(button("Approve", slackActions.approve, id, stage === undefined ? "primary" : undefined));
    elements.push(button("Deny", slackActions.deny, id, "danger"));
    if (a.rules.overrides.keys.length > 0) elements.push(button("Approve with edits", slackActions.edit, id));
    elements.push(button("More info", slackActions.info, id));
    return { type: "actions", block_id: "countersign_actions", elements };
  }
  if ((a.state === "denied" || a.state === "expired") && a.rules.rerequest.allowed)
    return {
      type: "actions",
      block_id: "countersign_actions",
      elements: [button("Re-request", slackActions.rerequest, id)],
    };
  return undefined;
}

/**
 * The approval's message: title, action, requester and on-behalf-of, justification, origin, params after
 * redaction (in part, plainly marked, when long) with the names of the hidden ones, the first 12 hex
 * digits of the params hash, the policy summary, progress and outcome, and the buttons a pending approval
 * needs (none once it is finished, but Re-request where the policy allows). Every piece of user text is
 * escaped and shown with its invisible characters visible (see `mrkdwn.ts`).
 */
export function renderApprovalMessage(a: Approval): SlackMessageContent {
  const { emoji, word } = stateWords[a.state];
  const blocks: types.KnownBlock[] = [
    {
      type: "header",
      text: {
        type: "plain_text",
        text: truncate(`${emoji} ${visibleText(a.title)}`, limits.header),
        emoji: true,
      },
    },
  ];
  const forWhom = a.onBehalfOf === "" ? "" : ` for ${person(a.onBehalfOf)}`;
  blocks.push(section(`*Action:* ${code(a.action)} · requested by ${person(a.requester)}${forWhom}`));
  if (a.justification !== "") blocks.push(section(`*Justification:*\n${quoteLines(a.justification, 2900)}`));
  const origin = originLine(a);
  if (origin !== undefined) blocks.push(section(origin));
  blocks.push(...messageParamsSections(a).map(section));
  const edits = editLines(a, 300);
  if (edits.length > 0) blocks.push(...packLines(edits, limits.section).map(section));
  if (a.votes.length > 0)
    blocks.push(...packLines(a.votes.slice(-20).map(voteLine), limits.section).map(section));
  blocks.push(section(statusLine(a)));
  blocks.push(
    context(`ID ${code(a.id)} · params SHA-256 ${code(a.paramsSha256.slice(0, 12))} · ${policySummary(a)}`),
  );
  const actions = buttons(a);
  if (actions !== undefined) blocks.push(actions);
  const text =
    a.state === "pending"
      ? `Approval requested: ${escapeText(a.title)} (${escapeText(a.action)})`
      : `${word}: ${escapeText(a.title)} (${escapeText(a.action)})`;
  return { text: truncate(text, 3000), blocks };
}

/**
 * The "More info" answer, for the clicker only: everything about the approval an approver may see, with
 * every param and every edit in full. Long params take several messages ("part 2 of 3"), in order, so
 * nothing an approval covers is left unread.
 */
export function renderApprovalDetails(a: Approval): SlackMessageContent[] {
  const lines = [
    `*${escapeText(a.title)}* (${code(a.action)})`,
    `ID ${code(a.id)} · lineage ${code(a.lineageId)}${a.rerequestOf === "" ? "" : ` · re-requests ${code(a.rerequestOf)}`}`,
    `Requested by ${person(a.requester)}${a.onBehalfOf === "" ? "" : ` for ${person(a.onBehalfOf)}`} ${date(a.createTime)}`,
    `Params SHA-256 ${code(a.paramsSha256)}`,
    `Policy SHA-256 ${code(a.policySha256.slice(0, 12))} · ${policySummary(a)}`,
  ];
  const sections = [
    ...packLines(lines, limits.section),
    ...detailsParamsSections(a),
    ...detailsEditSections(a),
    ...packLines([...a.votes.map((v) => `${voteLine(v)} ${date(v.time)}`), statusLine(a)], limits.section),
  ];
  const pages: SlackMessageContent[] = [];
  const count = Math.ceil(sections.length / sectionsPerDetailsPage);
  for (let i = 0; i < count; i++) {
    const part = count === 1 ? "" : ` (part ${i + 1} of ${count})`;
    const blocks: types.KnownBlock[] = sections
      .slice(i * sectionsPerDetailsPage, (i + 1) * sectionsPerDetailsPage)
      .map(section);
    if (count > 1) blocks.unshift(context(`More info${part}`));
    pages.push({ text: `Details of ${escapeText(a.title)}${part}`, blocks });
  }
  return pages;
}

/** Reminder `index` (0-based), posted in the message's thread. */
export function renderReminder(a: Approval, index: number): SlackMessageContent {
  const who = waitingFor(a);
  const text = `⏰ Reminder ${index + 1}: this request is ${progress(a)}${who.length > 0 ? `, from ${who.join(", ")}` : ""}. It expires ${date(a.expireTime)}.`;
  return { text, blocks: [section(text)] };
}

/** The escalation, posted in the message's thread. */
export function renderEscalation(a: Approval): SlackMessageContent {
  const users = (a.rules.escalation?.users ?? []).map(person);
  const text = `🚨 Escalation: no decision yet; this request expires ${date(a.expireTime)}.${users.length > 0 ? ` ${users.join(", ")}, please take a look.` : ""}`;
  return { text, blocks: [section(text)] };
}

/** The escalation notice in the fallback channel, with a link to the request's message. */
export function renderEscalationNotice(a: Approval, permalink: string | undefined): SlackMessageContent {
  const users = (a.rules.escalation?.users ?? []).map(person);
  const where = permalink === undefined ? "" : ` ${link(permalink, "Open the request")}`;
  const text = `🚨 Escalation: *${escapeText(a.title)}* (${code(a.action)}) has no decision yet and expires ${date(a.expireTime)}.${users.length > 0 ? ` ${users.join(", ")}` : ""}${where}`;
  return { text, blocks: [section(text)] };
}
