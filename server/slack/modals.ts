/**
 * The modals of "Deny" and "Approve with edits": pure functions that build the views, read what was
 * submitted, and place the service's field errors next to the input they are about.
 */
import type { types } from "@slack/bolt";
import { jsonDisplay, truncate, visibleText } from "../domain/display-text.js";
import type { FieldViolation } from "../domain/errors.js";
import { isParamVisible } from "../domain/redaction.js";
import { type Approval, type JsonObject, type JsonValue, ownValue } from "../domain/types.js";
import { code, escapeText } from "./mrkdwn.js";

/** The `callback_id` of each modal. */
export const slackViews = {
  deny: "countersign_deny",
  edit: "countersign_edit",
} as const;

/** What a modal remembers about the click that opened it (its `private_metadata`). */
export interface ModalContext {
  approvalId: string;
  /** Channel of the message that was clicked (for ephemeral answers). */
  channel: string;
}

/** The values of a submitted view as Slack sends them: block id → action id → element state. */
export type ViewStateValues = Record<string, Record<string, { value?: string | null | undefined }>>;

/** Block id of the reason input in both modals. */
const reasonBlock = "reason";
/** Block id of the input of allowed key `index` (keys are arbitrary strings; block ids are not). */
const paramBlock = (index: number) => `param_${index}`;
const valueAction = "value";

/** Plain text, invisible characters shown as escapes, at most `max` characters. */
function plain(text: string, max: number): types.PlainTextElement {
  return { type: "plain_text", text: truncate(visibleText(text), max), emoji: true };
}

function summary(a: Approval, extra: string): types.SectionBlock {
  return {
    type: "section",
    text: { type: "mrkdwn", text: truncate(`*${escapeText(a.title)}* (${code(a.action)})\n${extra}`, 3000) },
  };
}

function reasonInput(required: boolean, label: string): types.InputBlock {
  return {
    type: "input",
    block_id: reasonBlock,
    optional: !required,
    label: plain(label, 2000),
    element: {
      type: "plain_text_input",
      action_id: valueAction,
      multiline: true,
      max_length: 1000,
    },
  };
}

/** Reads a modal's `private_metadata`; undefined when it is not one of ours. */
export function parseModalContext(privateMetadata: string): ModalContext | undefined {
  try {
    const parsed = JSON.parse(privateMetadata) as { a?: unknown; c?: unknown };
    if (typeof parsed.a !== "string" || typeof parsed.c !== "string") return undefined;
    return { approvalId: parsed.a, channel: parsed.c };
  } catch {
    return undefined;
  }
}

function metadata(ctx: ModalContext): string {
  return JSON.stringify({ a: ctx.approvalId, c: ctx.channel });
}

/** The Deny modal: asks for the reason, required when the policy says so. */
export function denyModal(a: Approval, ctx: ModalContext): types.ModalView {
  return {
    type: "modal",
    callback_id: slackViews.deny,
    private_metadata: metadata(ctx),
    title: plain("Deny request", 24),
    submit: plain("Deny", 24),
    close: plain("Cancel", 24),
    blocks: [
      summary(
        a,
        a.rules.denyReasonRequired ? "The policy requires a reason to deny." : "Say why, if you like.",
      ),
      reasonInput(a.rules.denyReasonRequired, "Reason"),
    ],
  };
}

/**
 * How a key's text is shown and read back: as text, or as a JSON value. A string with characters that
 * display as nothing (see `visibleText`) is shown as JSON, so its escapes are visible and read back
 * exactly.
 */
function kindOf(a: Approval, key: string): "text" | "json" {
  const current = ownValue(a.params, key);
  if (typeof current === "string") return visibleText(current) === current ? "text" : "json";
  if (current !== undefined) return "json";
  const properties = a.rules.overrides.schema?.properties;
  const property =
    typeof properties === "object" && properties !== null && !Array.isArray(properties)
      ? ownValue(properties, key)
      : undefined;
  const type =
    typeof property === "object" && property !== null && !Array.isArray(property) ? property.type : undefined;
  return type === "string" ? "text" : "json";
}

/** The "Approve with edits" modal: one input per key the policy lets approvers edit, prefilled. */
export function editModal(a: Approval, ctx: ModalContext): types.ModalView {
  const o = a.rules.overrides;
  const blocks: types.KnownBlock[] = [
    summary(
      a,
      `Change the values you need, then approve. At most ${o.maxKeys} changed key${o.maxKeys === 1 ? "" : "s"} and ${o.maxDiffBytes} bytes of new values. An empty field keeps its value.`,
    ),
  ];
  o.keys.forEach((key, i) => {
    const current = ownValue(a.params, key);
    const kind = kindOf(a, key);
    const visible = isParamVisible(key, a.rules.redaction);
    const text =
      current === undefined ? undefined : kind === "text" ? (current as string) : jsonDisplay(current);
    const prefill = visible && text !== undefined && text.length <= 3000 ? text : undefined;
    const hint = !visible
      ? "Hidden by policy: leave empty to keep the current value."
      : kind === "text"
        ? "Text."
        : 'A JSON value, e.g. 42, true, "text" or [1, 2].';
    blocks.push({
      type: "input",
      block_id: paramBlock(i),
      optional: true,
      label: plain(key, 2000),
      hint: plain(hint, 2000),
      element: {
        type: "plain_text_input",
        action_id: valueAction,
        multiline: kind === "json" && typeof current === "object" && current !== null,
        ...(prefill === undefined ? {} : { initial_value: prefill }),
      },
    });
  });
  blocks.push(reasonInput(false, "Reason"));
  return {
    type: "modal",
    callback_id: slackViews.edit,
    private_metadata: metadata(ctx),
    title: plain("Approve with edits", 24),
    submit: plain("Approve", 24),
    close: plain("Cancel", 24),
    blocks,
  };
}

/** A modal that only says something (the outcome of a submission that took long, or a refusal). */
export function noticeModal(title: string, text: string): types.ModalView {
  return {
    type: "modal",
    title: plain(title, 24),
    close: plain("Close", 24),
    blocks: [{ type: "section", text: { type: "mrkdwn", text: truncate(escapeText(text), 3000) } }],
  };
}

function inputValue(values: ViewStateValues, block: string): string | undefined {
  const raw = values[block]?.[valueAction]?.value;
  return raw === null || raw === undefined ? undefined : raw;
}

/** The reason typed into either modal ("" when empty). */
export function readReason(values: ViewStateValues): string {
  return (inputValue(values, reasonBlock) ?? "").trim();
}

/**
 * The params an "Approve with edits" submission asks for: the current params with every non-empty field
 * applied (text as is, JSON parsed). Fields that are not valid JSON come back as errors by block id.
 */
export function readEditSubmission(
  a: Approval,
  values: ViewStateValues,
): { ok: true; editedParams: JsonObject } | { ok: false; errors: Record<string, string> } {
  // Prototype-free, so that every key, `__proto__` included, is an own key of the submitted params.
  const editedParams = Object.assign(Object.create(null) as JsonObject, a.params);
  const errors: Record<string, string> = {};
  a.rules.overrides.keys.forEach((key, i) => {
    const raw = inputValue(values, paramBlock(i));
    if (raw === undefined || raw.trim() === "") return;
    if (kindOf(a, key) === "text") {
      editedParams[key] = raw;
      return;
    }
    try {
      editedParams[key] = JSON.parse(raw) as JsonValue;
    } catch {
      errors[paramBlock(i)] = 'is not a JSON value (e.g. 42, true, "text" or [1, 2])';
    }
  });
  return Object.keys(errors).length > 0 ? { ok: false, errors } : { ok: true, editedParams };
}

/**
 * The service's field violations as modal errors, each next to its input: `reason` by the reason,
 * `edited_params.<key>…` by that key's input, anything else (e.g. a limit on the whole edit) by the first
 * input with the field named.
 */
export function modalErrors(
  a: Approval,
  view: "deny" | "edit",
  violations: readonly FieldViolation[],
): Record<string, string> {
  const keys = view === "edit" ? a.rules.overrides.keys : [];
  const firstBlock = keys.length > 0 ? paramBlock(0) : reasonBlock;
  const errors: Record<string, string[]> = {};
  const add = (block: string, message: string) => {
    errors[block] ??= [];
    errors[block].push(message);
  };
  for (const v of violations) {
    if (v.field === "reason") {
      add(reasonBlock, v.description);
      continue;
    }
    const path = v.field.startsWith("edited_params.") ? v.field.slice("edited_params.".length) : undefined;
    const index =
      path === undefined
        ? -1
        : keys.findIndex((k) => path === k || path.startsWith(`${k}.`) || path.startsWith(`${k}[`));
    const exact = index >= 0 && path === keys[index];
    if (index >= 0) add(paramBlock(index), exact ? v.description : `${v.field}: ${v.description}`);
    else add(firstBlock, `${v.field}: ${v.description}`);
  }
  return Object.fromEntries(
    Object.entries(errors).map(([block, list]) => [block, truncate(list.join("; "), 1000)]),
  );
}
