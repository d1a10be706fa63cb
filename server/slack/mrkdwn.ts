/**
 * Pieces of Slack `mrkdwn` text. Everything that comes from a request (titles, params, reasons) goes
 * through `escapeText`, so it can never mention `@channel`, fake a link or break the layout.
 */

/** Escapes the three characters Slack treats as control characters in mrkdwn. */
export function escapeText(text: string): string {
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;");
}

/** Shortens `text` to at most `max` characters, ending with an ellipsis when cut. */
export function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, Math.max(0, max - 1))}…`;
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
  return slackUserId.test(id) ? `<@${id}>` : `\`${escapeText(id.replaceAll("`", "'"))}\``;
}

/** A Slack user group: a mention for a group id, else the escaped name. */
export function group(id: string): string {
  return slackGroupId.test(id) ? `<!subteam^${id}>` : `\`${escapeText(id.replaceAll("`", "'"))}\``;
}

/** A channel: a link for a channel id, else the escaped name. */
export function channel(id: string): string {
  return slackChannelId.test(id) ? `<#${id}>` : escapeText(id);
}

/** Inline code: escaped, without backticks that would end it. */
export function code(text: string): string {
  return `\`${escapeText(text.replaceAll("`", "'"))}\``;
}

/** A code block: escaped, without a triple backtick that would end it. */
export function codeBlock(text: string): string {
  return `\`\`\`${escapeText(text.replaceAll("```", "`\u200b``"))}\`\`\``;
}

/** A link with a label; the URL is made safe for Slack's `<url|label>` syntax. */
export function link(url: string, label: string): string {
  const safeUrl = url
    .replaceAll("|", "%7C")
    .replaceAll("<", "%3C")
    .replaceAll(">", "%3E")
    .replaceAll(" ", "%20");
  return `<${safeUrl}|${escapeText(label.replaceAll("|", "/"))}>`;
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
