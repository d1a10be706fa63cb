import { Ajv, type ValidateFunction } from "ajv";
import ajvErrors from "ajv-errors";
import addFormats from "ajv-formats";
import { ValidationError } from "./errors.js";
import { canonicalJson, canonicalSha256 } from "./hashing.js";
import {
  type JsonObject,
  type JsonValue,
  type OverrideRules,
  ownValue,
  type ParamChange,
  type ParamsEdit,
} from "./types.js";

/**
 * Strict about the schema's own words, so that a misspelt keyword (`minLenght`) is an error at load time
 * rather than a check that silently never runs; lenient about type annotations, which are a matter of
 * style. `errorMessage` (ajv-errors) gives a field its own message; `format` is checked (ajv-formats).
 */
const ajv = new Ajv({
  allErrors: true,
  strict: true,
  strictTypes: false,
  strictTuples: false,
  strictRequired: false,
  allowUnionTypes: true,
});
addFormats.default(ajv);
ajvErrors.default(ajv);
const compiled = new Map<string, ValidateFunction>();

/**
 * Compiles (once per distinct schema) the JSON Schema of an action's params, with the standard formats.
 * The policy loader calls it too, so a schema that cannot be used is reported at load time.
 * @throws Error when the schema is invalid
 */
export function compileParamsSchema(schema: JsonObject): ValidateFunction {
  const key = canonicalJson(schema);
  let validate = compiled.get(key);
  if (!validate) {
    validate = ajv.compile(schema);
    compiled.set(key, validate);
  }
  return validate;
}

/** Path of an ajv error as a field path under `edited_params`. */
function errorPath(instancePath: string, missing?: string): string {
  const parts = instancePath
    .split("/")
    .slice(1)
    .map((p) => p.replaceAll("~1", "/").replaceAll("~0", "~"));
  if (missing !== undefined) parts.push(missing);
  return parts.reduce((path, p) => (/^\d+$/.test(p) ? `${path}[${p}]` : `${path}.${p}`), "edited_params");
}

/**
 * Applies an approver's edit of params under the policy's override governance (SPEC C4): only allowed
 * keys, at most `maxKeys` changed keys, at most `maxDiffBytes` of changed values, and the resulting params
 * valid against the action's JSON Schema. Returns the new params and the edit record, or `undefined`
 * when the edit changes nothing.
 * @throws ValidationError with one violation per problem, each naming the field.
 */
export function applyParamsEdit(
  current: JsonObject,
  edited: JsonObject,
  rules: OverrideRules,
  editor: string,
  now: number,
): { params: JsonObject; edit: ParamsEdit } | undefined {
  if (rules.keys.length === 0) {
    throw ValidationError.of("edited_params", "this action's policy does not allow edits");
  }
  const changes: ParamChange[] = [];
  for (const key of new Set([...Object.keys(current), ...Object.keys(edited)])) {
    const before = ownValue(current, key);
    const after = ownValue(edited, key);
    const same =
      before !== undefined && after !== undefined
        ? canonicalJson(before) === canonicalJson(after)
        : before === after;
    if (same) continue;
    const change: ParamChange = { key };
    if (before !== undefined) change.before = before;
    if (after !== undefined) change.after = after;
    changes.push(change);
  }
  if (changes.length === 0) return undefined;

  const problems: { field: string; description: string }[] = [];
  for (const change of changes) {
    if (!rules.keys.includes(change.key))
      problems.push({
        field: `edited_params.${change.key}`,
        description: `may not be edited (allowed: ${rules.keys.join(", ")})`,
      });
  }
  if (changes.length > rules.maxKeys)
    problems.push({
      field: "edited_params",
      description: `changes ${changes.length} keys; the policy allows at most ${rules.maxKeys}`,
    });
  const diffBytes = changes.reduce(
    (sum, c) => sum + (c.after === undefined ? 0 : Buffer.byteLength(canonicalJson(c.after as JsonValue))),
    0,
  );
  if (diffBytes > rules.maxDiffBytes)
    problems.push({
      field: "edited_params",
      description: `changed values are ${diffBytes} bytes; the policy allows at most ${rules.maxDiffBytes}`,
    });
  if (rules.schema) {
    const validate = compileParamsSchema(rules.schema);
    if (!validate(edited)) {
      for (const e of validate.errors ?? []) {
        const missing = e.keyword === "required" ? String(e.params.missingProperty) : undefined;
        problems.push({ field: errorPath(e.instancePath, missing), description: e.message ?? "is invalid" });
      }
    }
  }
  if (problems.length > 0) throw new ValidationError(problems);

  return {
    params: edited,
    edit: {
      editor,
      time: now,
      changes,
      paramsSha256Before: canonicalSha256(current),
      paramsSha256After: canonicalSha256(edited),
    },
  };
}
