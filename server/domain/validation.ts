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
