/**
 * What people are shown of user-supplied text. An approval is only worth what its approvers saw, so
 * every character that would display as nothing, or change how the text around it displays, is shown
 * as an escape instead, and text is only ever cut between whole characters. One implementation for
 * every place that shows an approval to a person: the Slack messages and modals, and the CLI.
 */
import { isParamVisible } from "./redaction.js";
import type { JsonObject, JsonValue, Redaction } from "./types.js";

/**
 * Characters shown as escapes: controls (C0, DEL, C1), format characters (bidirectional embeddings,
 * overrides and isolates, zero-width spaces and joiners, the BOM, tag characters, the soft hyphen),
 * line and paragraph separators, every space but U+0020, private-use, unassigned and surrogate code
 * points, default-ignorable code points (variation selectors, Hangul fillers), and the blank Braille
 * pattern. Kept: U+FE0E and U+FE0F (text or emoji presentation of the character before them) and a
 * zero-width joiner between two emoji (as in 👩‍💻), which change no meaning.
 */
const invisibleClasses = String.raw`\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Zs}\p{Co}\p{Cn}\p{Cs}\p{Default_Ignorable_Code_Point}\u2800`;
const emojiJoiner = String.raw`(?<=\p{Extended_Pictographic}[\uFE0E\uFE0F]?)\u200D(?=\p{Extended_Pictographic})`;
const invisible = new RegExp(`(?![ \\uFE0E\\uFE0F]|${emojiJoiner})[${invisibleClasses}]`, "gu");
const invisibleButNewline = new RegExp(`(?![ \\n\\uFE0E\\uFE0F]|${emojiJoiner})[${invisibleClasses}]`, "gu");

/** `\uXXXX` for each UTF-16 code unit of `char` (so the escape is also valid JSON). */
function escapeChar(char: string): string {
  let out = "";
  for (let i = 0; i < char.length; i++)
    out += `\\u${char.charCodeAt(i).toString(16).toUpperCase().padStart(4, "0")}`;
  return out;
}

/**
 * `text` with every invisible or layout-changing character (see above) shown as `\uXXXX`, e.g. a
 * right-to-left override as `\u202E`. Single-line text shows line breaks as `\u000A` too; with
 * `multiline` they stay line breaks.
 */
export function visibleText(text: string, options: { multiline?: boolean } = {}): string {
  return text.replace(options.multiline === true ? invisibleButNewline : invisible, escapeChar);
}

const graphemes = new Intl.Segmenter(undefined, { granularity: "grapheme" });

/**
 * The longest run of whole characters (grapheme clusters) from the start of `text` whose `measure`
 * is at most `max`; `measure` defaults to the length in UTF-16 code units, the strictest way Slack and
 * terminals count. Never ends in half a character, so never in a lone surrogate.
 */
export function prefixWithin(
  text: string,
  max: number,
  measure: (part: string) => number = (p) => p.length,
): string {
  if (measure(text) <= max) return text;
  let out = "";
  let used = 0;
  for (const { segment } of graphemes.segment(text)) {
    const size = measure(segment);
    if (used + size > max) break;
    out += segment;
    used += size;
  }
  return out;
}

/** `text` cut to at most `max` UTF-16 code units of whole characters, ending with "…" when cut. */
export function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${prefixWithin(text, Math.max(0, max - 1))}…`;
}

/**
 * JSON text of a value as shown to people: JSON's own escapes, plus `\uXXXX` for every invisible
 * character (see {@link visibleText}) and for the backtick, which would end a Slack code span. It is
 * still JSON: `JSON.parse` gives back exactly the value.
 */
export function jsonDisplay(value: JsonValue, indent?: number): string {
  return visibleText(JSON.stringify(value, null, indent), { multiline: true }).replaceAll("`", "\\u0060");
}

/** The params of an approval as approvers may see them under its policy's redaction. */
export interface ParamsDisplay {
  /** The params approvers may see, as a prototype-free object with exactly their own keys. */
  shown: JsonObject;
  /** The keys the policy hides, by name, in params order. */
  hidden: string[];
  /** `shown` as indented {@link jsonDisplay} text; empty when no param is shown. */
  text: string;
}

/**
 * Splits params into what approvers see and the keys the policy hides. Every own key counts as a key,
 * whatever its name (`__proto__` and `constructor` too): the result holds exactly the keys the params
 * hash covers.
 */
export function paramsDisplay(params: JsonObject, redaction: Redaction): ParamsDisplay {
  const shown: JsonObject = Object.create(null) as JsonObject;
  const hidden: string[] = [];
  for (const [key, value] of Object.entries(params)) {
    // A prototype-free object: assigning `__proto__` makes an own key, as for any other name.
    if (isParamVisible(key, redaction)) shown[key] = value;
    else hidden.push(key);
  }
  return { shown, hidden, text: Object.keys(shown).length === 0 ? "" : jsonDisplay(shown, 2) };
}

/**
 * How many characters of params display text (see {@link paramsDisplay}) an approval message shows in
 * full; longer params are shown in part, with the rest in the approval's details, and a policy with
 * `params_must_fit` refuses them at create.
 */
export const messageParamsChars = 2600;
