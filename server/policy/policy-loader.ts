/**
 * Loads a policy file (YAML or JSON), validates it against its schema and the rules the schema cannot
 * express, and compiles it into the domain `PolicySet` (SPEC C3). Bad input never throws here: every
 * problem is reported, with its path, at once.
 */
import { open } from "node:fs/promises";
import { Ajv, type ErrorObject, type ValidateFunction } from "ajv";
import { CST, isMap, isScalar, isSeq, Lexer, LineCounter, type Node, parseDocument } from "yaml";
import { compileParamsSchema } from "../domain/governance.js";
import { canonicalSha256 } from "../domain/hashing.js";
import { maxTimeoutMs, minTimeoutMs } from "../domain/lifecycle.js";
import type { JsonObject, JsonValue, Policy, PolicySet } from "../domain/types.js";
import { durationHint, formatDuration, parseDuration } from "./duration.js";
import { actionGlobHint, analyzeActionGlob } from "./policy-match.js";
import {
  type PolicyFileDefaults,
  type PolicyFileDocument,
  type PolicyFilePolicy,
  policyFileSchema,
} from "./policy-schema.js";

/** Timeout of a policy when neither it nor `defaults` sets one. */
export const defaultTimeoutMs = 10 * 60_000;
/** `overrides.max_diff_bytes` when the policy does not set it. */
export const defaultMaxDiffBytes = 4096;
/** `rerequest.max_per_day` when the policy does not set it. */
export const defaultRerequestsPerDay = 5;

/**
 * What a policy document may hold before it is parsed, so that no document (a "billion laughs", deep
 * nesting, a huge file) can make loading slow: refused at once, with the limit named. A real policy file
 * is far below each.
 */
export const policyDocumentLimits = {
  /** Bytes of the file (UTF-8). */
  bytes: 256 * 1024,
  /** Nesting of mappings and lists. */
  depth: 64,
  /** Values (scalars, mappings, lists, aliases). */
  nodes: 50_000,
  /** Nodes reached through aliases when the document is expanded. */
  aliasExpansions: 100,
} as const;

/** One problem with a policy file. */
export interface PolicyProblem {
  /**
   * Where: a key path such as `policies[0].required_approvals` or `defaults.timeout`; `(line 3, column 5)`
   * for a YAML syntax error; `(root)` for the document as a whole; `(file)` when it cannot be read.
   */
  path: string;
  message: string;
}

/** A policy file failed to load; `problems` lists every problem found. */
export class PolicyLoadError extends Error {
  override name = "PolicyLoadError";
  /**
   * @param problems every problem, in document order.
   * @param source the file the problems are in, when there is one.
   */
  constructor(
    readonly problems: PolicyProblem[],
    readonly source?: string,
  ) {
    super(problems.map((p) => `${p.path}: ${p.message}`).join("\n"));
  }
}

/** The outcome of parsing a policy document. */
export type PolicyDocumentResult =
  | {
      ok: true;
      policySet: PolicySet;
      /** The document's JSON form, as parsed. */
      document: JsonObject;
      /** SHA-256 of the canonical JSON of `document`; equals `policySet.sha256`. */
      sha256: string;
    }
  | { ok: false; problems: PolicyProblem[] };

/** The outcome of loading a policy file: a document result plus the path it came from. */
export type PolicyFileResult = PolicyDocumentResult & { source: string };

// ---------------------------------------------------------------------------------------------------------
// Paths

type Segment = string | number;

/** Renders key segments as `policies[0].approvers.users[1]`; the empty path is `(root)`. */
function renderPath(segments: readonly Segment[]): string {
  let path = "";
  for (const segment of segments) {
    if (typeof segment === "number") path += `[${segment}]`;
    else if (/^[A-Za-z_$][A-Za-z0-9_$-]*$/.test(segment)) path += path === "" ? segment : `.${segment}`;
    else path += `[${JSON.stringify(segment)}]`;
  }
  return path === "" ? "(root)" : path;
}

/** Splits an ajv instancePath (JSON Pointer) into segments; all-digit segments are list indexes. */
function pointerSegments(pointer: string): Segment[] {
  if (pointer === "") return [];
  return pointer
    .split("/")
    .slice(1)
    .map((raw) => {
      const key = raw.replaceAll("~1", "/").replaceAll("~0", "~");
      return /^(0|[1-9][0-9]*)$/.test(key) ? Number(key) : key;
    });
}

/** Collects problems; keeps the first of identical ones. */
class Problems {
  readonly list: PolicyProblem[] = [];
  private readonly seen = new Set<string>();

  add(path: string, message: string): void {
    const key = `${path}\u0000${message}`;
    if (this.seen.has(key)) return;
    this.seen.add(key);
    this.list.push({ path, message });
  }

  /** Problems in document order: positions first, then `version`, `defaults`, then policy by policy. */
  sorted(): PolicyProblem[] {
    const rank = (path: string): [number, number] => {
      if (path.startsWith("(")) return [0, 0];
      const policy = /^policies(?:\[(\d+)\])?/.exec(path);
      if (policy) return [3, policy[1] === undefined ? -1 : Number(policy[1])];
      if (path.startsWith("defaults")) return [2, 0];
      return [1, 0];
    };
    return this.list
      .map((problem, order) => ({ problem, order, rank: rank(problem.path) }))
      .sort((a, b) => a.rank[0] - b.rank[0] || a.rank[1] - b.rank[1] || a.order - b.order)
      .map((entry) => entry.problem);
  }
}

// ---------------------------------------------------------------------------------------------------------
// YAML

/** The `(line L, column C)` of an offset of `text`. */
function positionOf(text: string, offset: number): string {
  let line = 1;
  let start = 0;
  for (let i = text.indexOf("\n"); i >= 0 && i < offset; i = text.indexOf("\n", i + 1)) {
    line++;
    start = i + 1;
  }
  return `(line ${line}, column ${offset - start + 1})`;
}

/**
 * Measures a YAML document in one linear pass over its tokens, before anything is built from it:
 * nesting (flow brackets, block indentation and `- ` items) and the number of values. Reports the first
 * limit exceeded; true when the document is within them.
 */
function withinLimits(text: string, problems: Problems): boolean {
  const { depth: maxDepth, nodes: maxNodes } = policyDocumentLimits;
  let offset = 0;
  let nodes = 0;
  let flow = 0;
  const indents: number[] = [];
  let lineStart = true;
  let lineIndent = 0;
  let lineItems = 0;
  let skipNext = false;
  for (const token of new Lexer().lex(text)) {
    const at = offset;
    // The lexer's control tokens (document start, scalar marker, flow end) are not in the source.
    if (token !== "\u0002" && token !== "\u001f" && token !== "\u0018") offset += token.length;
    if (skipNext) {
      // The source of a scalar: its text, never structure.
      skipNext = false;
      continue;
    }
    const type = CST.tokenType(token);
    if (type === "newline") {
      lineStart = true;
      lineIndent = 0;
      lineItems = 0;
      continue;
    }
    if (type === "space") {
      if (lineStart) lineIndent = token.length;
      continue;
    }
    if (type === "comment") continue;
    if (type === "doc-start") {
      indents.length = 0;
      continue;
    }
    if (lineStart && flow === 0) {
      lineStart = false;
      while (indents.length > 0 && (indents.at(-1) as number) > lineIndent) indents.pop();
      if (indents.length === 0 || (indents.at(-1) as number) < lineIndent) indents.push(lineIndent);
    }
    lineStart = false;
    if (type === "scalar") {
      skipNext = true;
      nodes++;
    } else if (type === "double-quoted-scalar" || type === "single-quoted-scalar" || type === "alias") {
      nodes++;
    } else if (type === "flow-map-start" || type === "flow-seq-start") {
      flow++;
      nodes++;
    } else if (type === "flow-map-end" || type === "flow-seq-end") {
      flow = Math.max(0, flow - 1);
    } else if (type === "seq-item-ind" || type === "explicit-key-ind") {
      lineItems++;
      nodes++;
    }
    if (indents.length + lineItems + flow > maxDepth) {
      problems.add(positionOf(text, at), `nested deeper than ${maxDepth} levels: refused`);
      return false;
    }
    if (nodes > maxNodes) {
      problems.add(positionOf(text, at), `more than ${maxNodes} values: refused`);
      return false;
    }
  }
  return true;
}

/**
 * Reports keys that appear twice in a mapping, in linear time (the yaml library's own check compares
 * every pair of keys). Nesting is already bounded by {@link withinLimits}.
 */
function checkUniqueKeys(node: unknown, at: (offset: number) => string, problems: Problems): void {
  if (isMap(node)) {
    const seen = new Set<string>();
    for (const pair of node.items) {
      const key = pair.key as Node | null;
      if (isScalar(key)) {
        const id = `${typeof key.value}:${String(key.value)}`;
        if (seen.has(id)) problems.add(at(key.range?.[0] ?? 0), "Map keys must be unique");
        seen.add(id);
      }
      checkUniqueKeys(pair.value, at, problems);
    }
  } else if (isSeq(node)) {
    for (const item of node.items) checkUniqueKeys(item, at, problems);
  }
}

/** Parses YAML (a superset of JSON) into a plain value, reporting syntax errors with their position. */
function parseYaml(text: string, problems: Problems): unknown {
  const bytes = Buffer.byteLength(text);
  if (bytes > policyDocumentLimits.bytes) {
    problems.add("(root)", tooLarge(bytes));
    return undefined;
  }
  if (!withinLimits(text, problems)) return undefined;
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: false, strict: true });
  const at = (offset: number): string => {
    const { line, col } = lineCounter.linePos(offset);
    return `(line ${line}, column ${col})`;
  };
  for (const error of [...doc.errors, ...doc.warnings]) problems.add(at(error.pos[0]), error.message);
  if (doc.errors.length > 0) return undefined;
  checkUniqueKeys(doc.contents, at, problems);
  if (problems.list.length > 0) return undefined;
  try {
    return doc.toJS({ maxAliasCount: policyDocumentLimits.aliasExpansions });
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    problems.add(
      "(root)",
      /alias count/i.test(message)
        ? `aliases expand into more than ${policyDocumentLimits.aliasExpansions} nodes (a "billion laughs" document): refused`
        : message,
    );
    return undefined;
  }
}

/** The problem of a document over the size limit. */
function tooLarge(bytes: number): string {
  return `the policy file is ${bytes} bytes, more than the ${policyDocumentLimits.bytes} allowed: refused`;
}

/** Reports values YAML allows but JSON does not (`.inf`, `.nan`, binary, ...). */
function checkJson(value: unknown, segments: Segment[], problems: Problems): void {
  if (value === null || typeof value === "string" || typeof value === "boolean") return;
  if (typeof value === "number") {
    if (!Number.isFinite(value)) problems.add(renderPath(segments), "must be a finite number");
    return;
  }
  if (Array.isArray(value)) {
    value.forEach((item, i) => {
      checkJson(item, [...segments, i], problems);
    });
    return;
  }
  if (typeof value === "object" && Object.getPrototypeOf(value) === Object.prototype) {
    for (const [key, item] of Object.entries(value)) checkJson(item, [...segments, key], problems);
    return;
  }
  problems.add(renderPath(segments), "is not a JSON value");
}

// ---------------------------------------------------------------------------------------------------------
// Schema

let fileValidator: ValidateFunction | undefined;

function validateFile(data: unknown): ErrorObject[] {
  fileValidator ??= new Ajv({ allErrors: true, strict: true, strictTypes: true, verbose: true }).compile(
    policyFileSchema,
  );
  return fileValidator(data) ? [] : (fileValidator.errors ?? []);
}

const typeNames: Record<string, string> = {
  string: "a string",
  integer: "a whole number",
  number: "a number",
  boolean: "true or false",
  array: "a list",
  object: "a mapping",
  null: "null",
};

/** Translates one ajv error into a problem with a key path and a message in the file's terms. */
function schemaProblem(e: ErrorObject): PolicyProblem {
  const segments = pointerSegments(e.instancePath);
  const path = renderPath(segments);
  const params = e.params as Record<string, unknown>;
  if (e.schemaPath.startsWith("#/definitions/duration/")) return { path, message: `must be ${durationHint}` };
  switch (e.keyword) {
    case "additionalProperties":
      return { path: renderPath([...segments, String(params.additionalProperty)]), message: "unknown key" };
    case "required":
      return { path: renderPath([...segments, String(params.missingProperty)]), message: "is required" };
    case "type":
      return { path, message: `must be ${typeNames[String(params.type)] ?? String(params.type)}` };
    case "enum":
      return {
        path,
        message: `must be one of: ${(params.allowedValues as unknown[]).map((v) => String(v)).join(", ")}`,
      };
    case "const":
      return { path, message: `must be ${JSON.stringify(params.allowedValue)}` };
    case "pattern":
      if (e.schemaPath.startsWith("#/definitions/policyName/"))
        return {
          path,
          message:
            "must be 1 to 64 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit",
        };
      return { path, message: e.message ?? "is invalid" };
    case "minLength":
      return {
        path,
        message: params.limit === 1 ? "must not be empty" : `must have at least ${params.limit} characters`,
      };
    case "maxLength":
      return { path, message: `must have at most ${params.limit} characters` };
    case "uniqueItems": {
      const [first, second] = [Number(params.j), Number(params.i)].sort((a, b) => a - b) as [number, number];
      const item = Array.isArray(e.data) ? (e.data[second] as unknown) : undefined;
      return {
        path: renderPath([...segments, second]),
        message: `${JSON.stringify(item)} is listed twice (also at [${first}])`,
      };
    }
    case "minimum":
      return { path, message: `must be at least ${params.limit}` };
    default:
      return { path, message: e.message ?? "is invalid" };
  }
}

// ---------------------------------------------------------------------------------------------------------
// Rules the schema cannot express

/** Distinct user ids; ids are compared case-insensitively, as the lifecycle does. */
function distinctCount(ids: readonly string[]): number {
  return new Set(ids.map((id) => id.toLowerCase())).size;
}

function plural(n: number, one: string, many: string): string {
  return `${n} ${n === 1 ? one : many}`;
}

interface CheckContext {
  problems: Problems;
  /** `defaults` when it is schema-valid (possibly empty); `undefined` when it has schema errors. */
  defaults: PolicyFileDefaults | undefined;
}

/** Parses a schema-valid duration, reporting the rare one that is too large. */
function duration(ctx: CheckContext, path: string, text: string): number | undefined {
  try {
    return parseDuration(text);
  } catch (error) {
    ctx.problems.add(path, (error as Error).message);
    return undefined;
  }
}

function checkTimeout(ctx: CheckContext, path: string, text: string): number | undefined {
  const ms = duration(ctx, path, text);
  if (ms !== undefined && (ms < minTimeoutMs || ms > maxTimeoutMs)) {
    ctx.problems.add(
      path,
      `must be between ${formatDuration(minTimeoutMs)} and ${formatDuration(maxTimeoutMs)} (is ${text})`,
    );
  }
  return ms;
}

function checkDefaults(ctx: CheckContext): void {
  const defaults = ctx.defaults;
  if (defaults === undefined) return;
  if (defaults.timeout !== undefined) checkTimeout(ctx, "defaults.timeout", defaults.timeout);
  if (defaults.unknown_action === "require_super_approver" && (defaults.super_approvers ?? []).length === 0) {
    ctx.problems.add(
      "defaults.super_approvers",
      "must list at least one person when unknown_action is require_super_approver",
    );
  }
}

/** Checks that `required` people can be found among `users` when there are no groups to draw from. */
function checkCount(
  ctx: CheckContext,
  path: string,
  required: number | undefined,
  people: { users: readonly string[]; groups: readonly string[] },
  listName: string,
): void {
  const n = required ?? 1;
  if (people.groups.length > 0 || people.users.length === 0) return;
  const available = distinctCount(people.users);
  if (n > available) {
    ctx.problems.add(
      path,
      `is ${n} but ${listName} lists only ${plural(available, "person", "people")} and no groups`,
    );
  }
}

function checkPolicy(ctx: CheckContext, p: PolicyFilePolicy, base: string): void {
  const { problems, defaults } = ctx;

  // Who decides.
  const approvers = { users: p.approvers?.users ?? [], groups: p.approvers?.groups ?? [] };
  const hasApprovers = approvers.users.length + approvers.groups.length > 0;
  if (!hasApprovers && (p.super_approvers ?? []).length === 0 && defaults !== undefined) {
    if ((defaults.super_approvers ?? []).length === 0)
      problems.add(
        `${base}.approvers`,
        "no one can decide: list approvers.users or approvers.groups, or super_approvers here or in defaults",
      );
  }
  // Only super-approvers decide a policy without approvers; its counts are then moot.
  if (hasApprovers) {
    checkCount(ctx, `${base}.required_approvals`, p.required_approvals, approvers, "approvers.users");
    checkCount(ctx, `${base}.deny_threshold`, p.deny_threshold, approvers, "approvers.users");
  }

  // Where the request is posted.
  if (p.dm === true && p.channel !== undefined) {
    problems.add(`${base}.dm`, "dm: true and channel are exclusive; keep one");
  } else if (
    p.dm !== true &&
    p.channel === undefined &&
    defaults !== undefined &&
    defaults.channel === undefined
  ) {
    problems.add(`${base}.channel`, "no channel: set channel, or dm: true, or defaults.channel");
  }

  // Timing.
  let timeoutMs: number | undefined;
  if (p.timeout !== undefined) timeoutMs = checkTimeout(ctx, `${base}.timeout`, p.timeout);
  else if (defaults !== undefined)
    timeoutMs =
      defaults.timeout === undefined ? defaultTimeoutMs : parseDurationOrUndefined(defaults.timeout);
  const withinTimeout = (path: string, ms: number): void => {
    if (ms <= 0) problems.add(path, "must be greater than 0");
    else if (timeoutMs !== undefined && ms >= timeoutMs)
      problems.add(path, `must be shorter than the timeout (${formatDuration(timeoutMs)})`);
  };
  let previous: { ms: number; text: string } | undefined;
  (p.reminders ?? []).forEach((text, i) => {
    const path = `${base}.reminders[${i}]`;
    const ms = duration(ctx, path, text);
    if (ms === undefined) return;
    withinTimeout(path, ms);
    if (previous !== undefined && ms <= previous.ms)
      problems.add(path, `must be later than the reminder before it (${previous.text})`);
    previous = { ms, text };
  });
  if (p.escalation !== undefined) {
    const ms = duration(ctx, `${base}.escalation.after`, p.escalation.after);
    if (ms !== undefined) withinTimeout(`${base}.escalation.after`, ms);
    if (p.escalation.channel === undefined && (p.escalation.users ?? []).length === 0)
      problems.add(`${base}.escalation`, "needs a channel or users to escalate to");
  }

  // Co-sign stages.
  const stageNames = new Map<string, number>();
  (p.stages ?? []).forEach((stage, i) => {
    const path = `${base}.stages[${i}]`;
    const first = stageNames.get(stage.name);
    if (first !== undefined)
      problems.add(`${path}.name`, `repeats the name of stages[${first}] ("${stage.name}")`);
    else stageNames.set(stage.name, i);
    const members = { users: stage.users ?? [], groups: stage.groups ?? [] };
    if (members.users.length + members.groups.length === 0)
      problems.add(path, "has no members: list users or groups");
    else checkCount(ctx, `${path}.required`, stage.required, members, "users");
  });

  // Redaction.
  if (p.redaction !== undefined) {
    const { mode } = p.redaction;
    const keys = p.redaction.keys ?? [];
    if ((mode === "all" || mode === "none") && keys.length > 0)
      problems.add(`${base}.redaction.keys`, `must be empty when mode is ${mode}`);
    if ((mode === "allowlist" || mode === "denylist") && keys.length === 0)
      problems.add(`${base}.redaction.keys`, `must list at least one key when mode is ${mode}`);
  }

  // Overrides.
  if (p.overrides !== undefined) checkOverrides(ctx, p.overrides, `${base}.overrides`);

  // A cooldown is never negative (the duration syntax has no sign); this reports one too large to count.
  if (p.rerequest?.cooldown !== undefined) duration(ctx, `${base}.rerequest.cooldown`, p.rerequest.cooldown);
}

function parseDurationOrUndefined(text: string): number | undefined {
  try {
    return parseDuration(text);
  } catch {
    return undefined;
  }
}

/**
 * Compiles an overrides schema exactly as `applyParamsEdit` will, so that a schema that cannot be used
 * is reported at load time, not on the first edit.
 */
function compileOverridesSchema(schema: JsonObject): string | undefined {
  try {
    compileParamsSchema(schema);
    return undefined;
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  }
}

/** Maps of names to subschemas: their keys are names, not keywords. */
const schemaMaps = new Set(["properties", "patternProperties", "definitions", "$defs", "dependentSchemas"]);

/** The path (`.properties.version.minLenght`) of the first place `keyword` is used as a keyword. */
function keywordPath(schema: JsonValue, keyword: string, path = ""): string | undefined {
  if (Array.isArray(schema)) {
    for (let i = 0; i < schema.length; i++) {
      const found = keywordPath(schema[i] as JsonValue, keyword, `${path}[${i}]`);
      if (found !== undefined) return found;
    }
    return undefined;
  }
  if (schema === null || typeof schema !== "object") return undefined;
  if (Object.hasOwn(schema, keyword)) return `${path}.${keyword}`;
  for (const [key, value] of Object.entries(schema)) {
    if (schemaMaps.has(key) && value !== null && typeof value === "object" && !Array.isArray(value)) {
      for (const [name, sub] of Object.entries(value)) {
        const found = keywordPath(sub, keyword, `${path}.${key}.${name}`);
        if (found !== undefined) return found;
      }
    } else if (key !== "enum" && key !== "const" && key !== "default" && key !== "examples") {
      const found = keywordPath(value, keyword, `${path}.${key}`);
      if (found !== undefined) return found;
    }
  }
  return undefined;
}

function checkOverrides(
  ctx: CheckContext,
  o: NonNullable<PolicyFilePolicy["overrides"]>,
  base: string,
): void {
  const { problems } = ctx;
  const keys = o.keys ?? [];
  if (o.max_keys !== undefined && o.max_keys > keys.length)
    problems.add(
      `${base}.max_keys`,
      `is ${o.max_keys} but keys lists only ${plural(keys.length, "key", "keys")}`,
    );
  if (o.schema === undefined) return;
  const schema = o.schema as JsonObject;
  if (schema.$id !== undefined) {
    problems.add(`${base}.schema.$id`, "must not be set: each action's schema is compiled on its own");
    return;
  }
  const error = compileOverridesSchema(schema);
  if (error !== undefined) {
    const unknown = /unknown keyword: "([^"]+)"/.exec(error)?.[1];
    const at = unknown === undefined ? undefined : keywordPath(schema, unknown);
    if (at !== undefined)
      problems.add(
        `${base}.schema${at}`,
        "is not a JSON Schema keyword (a misspelling?); it would be ignored",
      );
    else problems.add(`${base}.schema`, `is not a valid JSON Schema: ${error}`);
    return;
  }
  // With `properties` listed, a key must be one of them (or match one of `patternProperties`).
  const properties = schema.properties;
  if (!isPlainObject(properties)) return;
  const patterns = isPlainObject(schema.patternProperties)
    ? Object.keys(schema.patternProperties).map((pattern) => new RegExp(pattern, "u"))
    : [];
  keys.forEach((key, i) => {
    if (!Object.hasOwn(properties, key) && !patterns.some((re) => re.test(key)))
      problems.add(`${base}.keys[${i}]`, `"${key}" is not a property of overrides.schema`);
  });
}

/**
 * Checks across policies: valid globs, unique names, no two identical globs. Runs on every name and match
 * that is itself schema-valid, even in a policy with other problems.
 */
function checkNamesAndMatches(
  problems: Problems,
  names: readonly [number, string][],
  matches: readonly [number, string][],
): void {
  const seenNames = new Map<string, number>();
  for (const [i, name] of names) {
    const first = seenNames.get(name);
    if (first !== undefined) problems.add(`policies[${i}].name`, `repeats the name of policies[${first}]`);
    else seenNames.set(name, i);
  }
  const seenMatches = new Map<string, number>();
  for (const [i, match] of matches) {
    const glob = analyzeActionGlob(match);
    if (!glob.ok)
      problems.add(`policies[${i}].match`, `is not a valid glob: ${glob.error}; use ${actionGlobHint}`);
    const first = seenMatches.get(match);
    if (first !== undefined)
      problems.add(
        `policies[${i}].match`,
        `is the same as policies[${first}].match; only one of the two policies would ever be used`,
      );
    else seenMatches.set(match, i);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Compilation

/** Union of id lists, first spelling kept, compared case-insensitively. */
function union(...lists: readonly (readonly string[])[]): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const id of lists.flat()) {
    const key = id.toLowerCase();
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(id);
  }
  return out;
}

/** Compiles a valid document; applies every default. */
function compileDocument(doc: PolicyFileDocument, sha256: string): PolicySet {
  const d = doc.defaults ?? {};
  const defaultsTimeoutMs = d.timeout === undefined ? defaultTimeoutMs : parseDuration(d.timeout);
  const defaultSuperApprovers = d.super_approvers ?? [];
  const policies = doc.policies.map((p): Policy => {
    const overrideKeys = [...(p.overrides?.keys ?? [])];
    const policy: Policy = {
      name: p.name,
      match: p.match,
      description: p.description ?? "",
      channel: p.dm === true ? "" : (p.channel ?? d.channel ?? ""),
      dm: p.dm ?? false,
      approvers: { users: [...(p.approvers?.users ?? [])], groups: [...(p.approvers?.groups ?? [])] },
      superApprovers: union(p.super_approvers ?? [], defaultSuperApprovers),
      requiredApprovals: p.required_approvals ?? 1,
      denyThreshold: p.deny_threshold ?? 1,
      denyReasonRequired: p.deny_reason_required ?? false,
      stages: (p.stages ?? []).map((s) => ({
        name: s.name,
        members: { users: [...(s.users ?? [])], groups: [...(s.groups ?? [])] },
        required: s.required ?? 1,
      })),
      timeoutMs: p.timeout === undefined ? defaultsTimeoutMs : parseDuration(p.timeout),
      remindersMs: (p.reminders ?? []).map(parseDuration),
      redaction: { mode: p.redaction?.mode ?? "none", keys: [...(p.redaction?.keys ?? [])] },
      paramsMustFit: p.params_must_fit ?? false,
      onBehalfOfRequired: p.on_behalf_of_required ?? false,
      overrides: {
        keys: overrideKeys,
        maxKeys: p.overrides?.max_keys ?? overrideKeys.length,
        maxDiffBytes: p.overrides?.max_diff_bytes ?? defaultMaxDiffBytes,
        requestKeys: [...(p.overrides?.request_keys ?? [])],
        ...(p.overrides?.edits_keep_approvals === true ? { editsKeepApprovals: true } : {}),
      },
      rerequest: {
        allowed: p.rerequest?.allowed ?? false,
        cooldownMs: p.rerequest?.cooldown === undefined ? 0 : parseDuration(p.rerequest.cooldown),
        maxPerDay: p.rerequest?.max_per_day ?? defaultRerequestsPerDay,
      },
    };
    if (p.overrides?.schema !== undefined)
      policy.overrides.schema = structuredClone(p.overrides.schema as JsonObject);
    if (p.escalation !== undefined) {
      policy.escalation = {
        afterMs: parseDuration(p.escalation.after),
        channel: p.escalation.channel ?? "",
        users: [...(p.escalation.users ?? [])],
      };
    }
    return policy;
  });
  return {
    sha256,
    defaults: {
      channel: d.channel ?? "",
      timeoutMs: defaultsTimeoutMs,
      unknownAction: d.unknown_action ?? "deny",
      superApprovers: [...defaultSuperApprovers],
    },
    policies,
  };
}

// ---------------------------------------------------------------------------------------------------------
// Entry points

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

/**
 * Parses, validates and compiles a policy document (YAML or JSON text). Reports every schema problem and
 * every rule violation together, each with its path. Never throws for bad input.
 */
export function parsePolicyDocument(text: string): PolicyDocumentResult {
  const problems = new Problems();
  const data = parseYaml(text, problems);
  if (problems.list.length > 0) return { ok: false, problems: problems.sorted() };
  if (data === null || data === undefined) {
    problems.add("(root)", "the policy file is empty; it needs at least `version: 1` and `policies`");
    return { ok: false, problems: problems.sorted() };
  }
  checkJson(data, [], problems);

  const errors = validateFile(data);
  for (const error of errors) {
    const problem = schemaProblem(error);
    problems.add(problem.path, problem.message);
  }
  if (isPlainObject(data)) {
    // A part with schema errors is not checked further, except for unknown keys: they leave the known
    // keys' types intact, and a typo is the most common mistake, so its other problems are reported too.
    const invalidAt = (pointer: string): boolean =>
      errors.some(
        (e) =>
          e.keyword !== "additionalProperties" &&
          (e.instancePath === pointer || e.instancePath.startsWith(`${pointer}/`)),
      );
    const defaultsValue = data.defaults ?? {};
    const ctx: CheckContext = {
      problems,
      defaults:
        invalidAt("/defaults") || !isPlainObject(defaultsValue)
          ? undefined
          : (defaultsValue as PolicyFileDefaults),
    };
    checkDefaults(ctx);
    const names: [number, string][] = [];
    const matches: [number, string][] = [];
    if (Array.isArray(data.policies)) {
      data.policies.forEach((p: unknown, i) => {
        if (!isPlainObject(p)) return;
        if (!invalidAt(`/policies/${i}`))
          checkPolicy(ctx, p as unknown as PolicyFilePolicy, `policies[${i}]`);
        if (typeof p.name === "string" && !invalidAt(`/policies/${i}/name`)) names.push([i, p.name]);
        if (typeof p.match === "string" && !invalidAt(`/policies/${i}/match`)) matches.push([i, p.match]);
      });
    }
    checkNamesAndMatches(problems, names, matches);
  }
  if (problems.list.length > 0) return { ok: false, problems: problems.sorted() };

  const document = data as JsonObject;
  const sha256 = canonicalSha256(document);
  return { ok: true, policySet: compileDocument(data as PolicyFileDocument, sha256), document, sha256 };
}

/** The text of a policy file, or why it cannot be used. */
export type PolicyTextResult = { ok: true; text: string } | { ok: false; problems: PolicyProblem[] };

/**
 * Reads a policy file's text, refusing a file larger than the document limit without reading it all. A
 * file that cannot be read is reported as a problem at `(file)`. Never throws for bad input.
 */
export async function readPolicyText(path: string): Promise<PolicyTextResult> {
  try {
    // Read at most one byte more than allowed: a huge file is refused without reading it all.
    const handle = await open(path, "r");
    try {
      const limit = policyDocumentLimits.bytes;
      const size = (await handle.stat()).size;
      if (size > limit) return { ok: false, problems: [{ path: "(file)", message: tooLarge(size) }] };
      const buffer = Buffer.alloc(limit + 1);
      const { bytesRead } = await handle.read(buffer, 0, limit + 1, 0);
      if (bytesRead > limit)
        return { ok: false, problems: [{ path: "(file)", message: tooLarge(bytesRead) }] };
      return { ok: true, text: buffer.toString("utf8", 0, bytesRead) };
    } finally {
      await handle.close();
    }
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const reason =
      code === "ENOENT" ? "no such file" : code === "EACCES" ? "permission denied" : String(error);
    return { ok: false, problems: [{ path: "(file)", message: `cannot read ${path}: ${reason}` }] };
  }
}

/**
 * Reads and parses a policy file. A file that cannot be read is reported as a problem at `(file)`.
 * Never throws for bad input.
 */
export async function loadPolicyFile(path: string): Promise<PolicyFileResult> {
  const read = await readPolicyText(path);
  if (!read.ok) return { ok: false, problems: read.problems, source: path };
  return { ...parsePolicyDocument(read.text), source: path };
}

/**
 * Parses a policy document and returns its compiled set.
 * @throws PolicyLoadError listing every problem.
 */
export function compilePolicies(text: string): PolicySet {
  const result = parsePolicyDocument(text);
  if (!result.ok) throw new PolicyLoadError(result.problems);
  return result.policySet;
}
