/**
 * Durations as written in the policy file: one or more number+unit pairs, e.g. `500ms`, `90s`, `10m`,
 * `1h30m`, `2d`. Units: `ms`, `s`, `m`, `h`, `d`.
 */

const unitMs = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
type Unit = keyof typeof unitMs;

/** Largest units first, for formatting. */
const unitsDescending: readonly Unit[] = ["d", "h", "m", "s", "ms"];

/**
 * Regular expression source (anchored) of a duration string; the policy file's JSON Schema uses it too.
 * `ms` is listed before `m` so that `500ms` is five hundred milliseconds, not 500 minutes and an `s`.
 */
export const durationPatternSource = "^(?:[0-9]+(?:ms|s|m|h|d))+$";

const durationPattern = new RegExp(durationPatternSource);
const partPattern = /([0-9]+)(ms|s|m|h|d)/g;

/** What a duration looks like, for error messages. */
export const durationHint = "a duration such as 500ms, 90s, 10m, 1h30m or 2d";

/**
 * Parses a duration string into milliseconds. Pairs add up (`1h30m` is 5 400 000) and may come in any
 * order; `0s` is zero.
 * @throws Error when `text` is not a duration or is too large to count in milliseconds.
 */
export function parseDuration(text: string): number {
  if (!durationPattern.test(text)) {
    throw new Error(`${JSON.stringify(text)} is not ${durationHint}`);
  }
  let total = 0;
  for (const [, amount, unit] of text.matchAll(partPattern)) {
    total += Number(amount) * unitMs[unit as Unit];
  }
  if (!Number.isSafeInteger(total)) throw new Error(`${JSON.stringify(text)} is too long a duration`);
  return total;
}

/**
 * Formats milliseconds as the shortest duration string, largest unit first: 90 000 → `1m30s`,
 * 500 → `500ms`, 0 → `0s`. `parseDuration(formatDuration(ms)) === ms`.
 * @throws RangeError unless `ms` is a non-negative safe integer.
 */
export function formatDuration(ms: number): string {
  if (!Number.isSafeInteger(ms) || ms < 0) {
    throw new RangeError(
      `cannot format ${ms} as a duration: need a non-negative whole number of milliseconds`,
    );
  }
  if (ms === 0) return "0s";
  let rest = ms;
  let text = "";
  for (const unit of unitsDescending) {
    const amount = Math.floor(rest / unitMs[unit]);
    if (amount > 0) {
      text += `${amount}${unit}`;
      rest -= amount * unitMs[unit];
    }
  }
  return text;
}
