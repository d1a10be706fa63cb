/**
 * Pieces of Slack `mrkdwn` text. Everything that comes from a request (titles, params, names, reasons)
 * goes through `escapeText`, so it can never mention `@channel`, fake a link or break the layout, and
 * every invisible or layout-changing character in it is shown as an escape (`\u202E`), so nothing
 * displays differently from what is approved.
 */
import { prefixWithin, visibleText } from "../domain/display-text.js";

function escapeMarkup(text: string): string {
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;");
}

function escapeWithin(text: string, max: number | undefined, render: (part: string) => string): string {
  const whole = render(text);
  if (max === undefined || whole.length <= max) return whole;
  return `${render(prefixWithin(text, Math.max(0, max - 1), (part) => render(part).length))}…`;
}

/**
 * One line of user text as mrkdwn: Slack's three control characters escaped, invisible characters and
 * line breaks shown as escapes. With `max`, the result is at most `max` characters, cut between whole
 * characters (never inside an escape) and ending with "…" when cut.
 */
export function escapeText(text: string, max?: number): string {
  return escapeWithin(text, max, (part) => escapeMarkup(visibleText(part)));
}

/** Multi-line user text as a block quote (`>` before each line), at most `max` characters. */
export function quoteLines(text: string, max: number): string {
  return `>${escapeWithin(text, max - 1, (part) => escapeLines(part).replaceAll("\n", "\n>"))}`;
}

/** As {@link escapeText}, but line breaks stay line breaks (a justification). */
export function escapeLines(text: string, max?: number): string {
  return escapeWithin(text, max, (part) => escapeMarkup(visibleText(part, { multiline: true })));
}

const slackUserId = /^[UW][A-Z0-9]+$/;
const slackGroupId = /^S[A-Z0-9]+$/;
const slackChannelId = /^[CGD][A-Z0-9]+$/;

/** True for a Slack user id (U… or W…). */
export function isSlackUserId(id: string): boolean {
  return slackUserId.test(id);
}

/** A person: a mention for a Slack user id, else the escaped name (an e-mail, a client identity). */
export function person(id: string): string {
  if (id === "") return "nobody";
  return slackUserId.test(id) ? `<@${id}>` : code(id, 300);
}

/** A Slack user group: a mention for a group id, else the escaped name. */
export function group(id: string): string {
  return slackGroupId.test(id) ? `<!subteam^${id}>` : code(id, 300);
}

/** A channel: a link for a channel id, else the escaped name. */
export function channel(id: string): string {
  return slackChannelId.test(id) ? `<#${id}>` : escapeText(id, 300);
}

/** A backtick, which would end inline code or a code block, shown as an escape. */
function withoutBackticks(text: string): string {
  return text.replaceAll("`", "\\u0060");
}

/** Inline code: escaped (see {@link escapeText}), backticks shown as `\u0060`; at most `max` characters of text. */
export function code(text: string, max?: number): string {
  return `\`${escapeWithin(text, max, (part) => withoutBackticks(escapeText(part)))}\``;
}

/**
 * A code block of lines that are already display text (e.g. {@link jsonDisplay} output): only Slack's
 * control characters are escaped, and backticks shown as `\u0060`.
 */
export function codeBlock(text: string): string {
  return `\`\`\`${withoutBackticks(escapeMarkup(text))}\`\`\``;
}

/**
 * Display text (e.g. {@link jsonDisplay} output) as code blocks of at most `max` characters each, cut
 * after a line break where possible and else between whole characters; joined, their texts are exactly
 * `text`.
 */
export function codeBlocks(text: string, max: number): string[] {
  const room = max - 6;
  const size = (part: string) => withoutBackticks(escapeMarkup(part)).length;
  const pieces: string[] = [];
  let current = "";
  let used = 0;
  for (const line of text.split(/(?<=\n)/)) {
    const lineSize = size(line);
    if (used + lineSize <= room) {
      current += line;
      used += lineSize;
      continue;
    }
    if (current !== "") pieces.push(current);
    current = line;
    used = lineSize;
    while (used > room) {
      const head = prefixWithin(current, room, size);
      pieces.push(head);
      current = current.slice(head.length);
      used = size(current);
    }
  }
  if (current !== "") pieces.push(current);
  return pieces.map(codeBlock);
}

/** Lines of mrkdwn packed into texts of at most `max` characters each; a longer line is cut. */
export function packLines(lines: readonly string[], max: number): string[] {
  const texts: string[] = [];
  let current: string | undefined;
  for (const raw of lines) {
    const line = raw.length <= max ? raw : `${prefixWithin(raw, max - 1)}…`;
    if (current !== undefined && current.length + 1 + line.length <= max) current += `\n${line}`;
    else {
      if (current !== undefined) texts.push(current);
      current = line;
    }
  }
  if (current !== undefined) texts.push(current);
  return texts;
}

/**
 * A link with a label; the URL is made safe for Slack's `<url|label>` syntax, with every character
 * outside printable ASCII percent-encoded (as a URL parser writes it), so it hides nothing either.
 */
export function link(url: string, label: string): string {
  let href = url;
  try {
    href = new URL(url).href;
  } catch {
    // Not a URL (never accepted at create): shown as text below, with the same escapes.
  }
  const safeUrl = href
    .replace(/[^\x21-\x7E]/gu, (c) => (/\p{Cs}/u.test(c) ? "%EF%BF%BD" : encodeURIComponent(c)))
    .replaceAll("|", "%7C")
    .replaceAll("<", "%3C")
    .replaceAll(">", "%3E");
  return `<${safeUrl}|${escapeText(label.replaceAll("|", "/"), 300)}>`;
}

/** A time that every reader sees in their own time zone; the fallback is ISO 8601 UTC. */
export function date(epochMs: number): string {
  const iso = new Date(epochMs).toISOString().replace(/\.\d{3}Z$/, "Z");
  return `<!date^${Math.floor(epochMs / 1000)}^{date_short_pretty} {time}|${iso}>`;
}

/** A duration in words, e.g. "30m", "2h", "1d 2h". */
export function duration(ms: number): string {
  const parts: string[] = [];
  let rest = Math.max(0, Math.round(ms / 1000));
  for (const [unit, size] of [
    ["d", 86_400],
    ["h", 3_600],
    ["m", 60],
    ["s", 1],
  ] as const) {
    if (rest >= size) {
      parts.push(`${Math.floor(rest / size)}${unit}`);
      rest %= size;
    }
  }
  return parts.slice(0, 2).join(" ") || "0s";
}
