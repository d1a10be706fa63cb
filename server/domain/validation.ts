import { type FieldViolation, ValidationError } from "./errors.js";
import { limits } from "./limits.js";
import type { JsonObject, JsonValue } from "./types.js";

/** Collects field violations and throws them all at once. */
export class Violations {
  readonly list: FieldViolation[] = [];

  add(field: string, description: string): void {
    this.list.push({ field, description });
  }

  /** Checks a string's length (in characters) and, when `required`, that it is not blank. */
  text(field: string, value: string, max: number, required = false): void {
    if (required && value.trim() === "") this.add(field, "is required");
    else if (value.length > max) this.add(field, `is ${value.length} characters; the limit is ${max}`);
  }

  /** Throws a ValidationError when anything was added. */
  throwIfAny(): void {
    if (this.list.length > 0) throw new ValidationError(this.list);
  }
}

const actionPattern = /^[A-Za-z0-9][A-Za-z0-9._:-]*$/;

/** Checks an action name. */
export function checkAction(v: Violations, field: string, action: string): void {
  if (action === "") v.add(field, "is required");
  else if (action.length > limits.actionLength)
    v.add(field, `is ${action.length} characters; the limit is ${limits.actionLength}`);
  else if (!actionPattern.test(action))
    v.add(field, "must start with a letter or digit and contain only letters, digits and . _ - :");
}

const slackMention = /^<@([UW][A-Z0-9]+)(?:\|[^<>]*)?>$/i;
const personPattern = /^[A-Za-z0-9._:/+@-]+$/;
const emailPattern = /^[^@\s]+@[^@\s]+$/;

/** True when `identity` is an e-mail address rather than a Slack id, a user name or a client identity. */
export function isEmail(identity: string): boolean {
  return emailPattern.test(identity);
}

/**
 * The canonical form of a person named by a caller (e.g. `on_behalf_of`), so that one person has one
 * spelling and rules that compare people (no self-approval) cannot be sidestepped: a Slack mention
 * `<@U123>` or `<@U123|name>` becomes `U123`, an e-mail address is lower-cased, surrounding blanks go.
 * Anything else with spaces, `<`, `>` or control characters is a violation of `field`. Empty stays empty.
 */
export function normalizePerson(v: Violations, field: string, value: string): string {
  const trimmed = value.trim();
  if (trimmed === "") return "";
  const mention = slackMention.exec(trimmed);
  if (mention !== null) return (mention[1] as string).toUpperCase();
  if (!personPattern.test(trimmed) || (trimmed.includes("@") && !isEmail(trimmed))) {
    v.add(
      field,
      "must be a Slack user ID (U123, or a mention <@U123>), an e-mail address or a user name, without spaces or < >",
    );
    return trimmed;
  }
  return trimmed.includes("@") ? trimmed.toLowerCase() : trimmed;
}

/** Checks an approval id. */
export function checkId(v: Violations, field: string, id: string): void {
  if (id === "") v.add(field, "is required");
  else if (id.length > limits.idLength || !/^[A-Za-z0-9_-]+$/.test(id))
    v.add(field, "is not a valid approval id");
}

/** Checks an absolute http(s) URL. */
export function checkUrl(v: Violations, field: string, url: string): void {
  if (url.length > limits.urlLength) {
    v.add(field, `is ${url.length} characters; the limit is ${limits.urlLength}`);
    return;
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    v.add(field, "is not an absolute URL");
    return;
  }
  if (parsed.protocol !== "https:" && parsed.protocol !== "http:")
    v.add(field, "must be an http or https URL");
}

/**
 * Checks the shape limits of params: depth, keys per object, list lengths, string lengths. The total size
 * is checked by the caller on the canonical JSON it computes anyway.
 */
export function checkParams(v: Violations, field: string, params: JsonObject): void {
  const walk = (value: JsonValue, path: string, depth: number): boolean => {
    // Depth counts objects and lists: a scalar inside the deepest allowed object is within the limit.
    if (depth > limits.paramsDepth && value !== null && typeof value === "object") {
      v.add(path, `nests deeper than ${limits.paramsDepth} levels`);
      return false;
    }
    if (typeof value === "string") {
      if (value.length > limits.paramsStringLength)
        v.add(path, `is ${value.length} characters; the limit is ${limits.paramsStringLength}`);
    } else if (typeof value === "number") {
      if (!Number.isFinite(value)) v.add(path, "must be a finite number");
    } else if (Array.isArray(value)) {
      if (value.length > limits.paramsListLength) {
        v.add(path, `has ${value.length} elements; the limit is ${limits.paramsListLength}`);
        return true;
      }
      for (let i = 0; i < value.length; i++) {
        if (!walk(value[i] as JsonValue, `${path}[${i}]`, depth + 1)) return false;
      }
    } else if (value !== null && typeof value === "object") {
      const keys = Object.keys(value);
      if (keys.length > limits.paramsKeys) {
        v.add(path, `has ${keys.length} keys; the limit is ${limits.paramsKeys}`);
        return true;
      }
      for (const key of keys) {
        if (key.length > limits.paramsKeyLength)
          v.add(
            `${path}.${key.slice(0, 32)}…`,
            `is a key of ${key.length} characters; the limit is ${limits.paramsKeyLength}`,
          );
        else if (!walk(value[key] as JsonValue, `${path}.${key}`, depth + 1)) return false;
      }
    }
    return true;
  };
  walk(params, field, 1);
}
