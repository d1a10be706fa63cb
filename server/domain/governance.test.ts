import { describe, expect, it } from "vitest";
import { type FieldViolation, ValidationError } from "./errors.js";
import { applyParamsEdit } from "./governance.js";
import { canonicalSha256 } from "./hashing.js";
import type { JsonObject, OverrideRules } from "./types.js";

const t0 = Date.UTC(2026, 0, 1);

const schema: JsonObject = {
  type: "object",
  required: ["service", "version"],
  properties: {
    service: { type: "string" },
    version: { type: "string", pattern: "^\\d+\\.\\d+\\.\\d+$" },
    replicas: { type: "integer", minimum: 1, maximum: 10 },
    regions: { type: "array", items: { type: "string" } },
  },
};

function rules(fields: Partial<OverrideRules> = {}): OverrideRules {
  return {
    keys: ["version", "replicas", "regions", "notes"],
    maxKeys: 2,
    maxDiffBytes: 64,
    schema,
    requestKeys: [],
    ...fields,
  };
}

const current: JsonObject = { service: "api", version: "1.2.3", replicas: 3, regions: ["eu"] };

function violationsOf(fn: () => unknown): FieldViolation[] {
  try {
    fn();
  } catch (err) {
    if (err instanceof ValidationError) return err.violations;
    throw err;
  }
  throw new Error("expected a ValidationError");
}

const edit = (edited: JsonObject, r: OverrideRules = rules()) =>
  applyParamsEdit(current, edited, r, "U-ALICE", t0);

describe("applyParamsEdit", () => {
  it("records an accepted edit with before/after values and both hashes", () => {
    const edited = { ...current, version: "1.2.4", replicas: 4 };
    const result = edit(edited);
    expect(result?.params).toEqual(edited);
    expect(result?.edit).toEqual({
      editor: "U-ALICE",
      time: t0,
      changes: [
        { key: "version", before: "1.2.3", after: "1.2.4" },
        { key: "replicas", before: 3, after: 4 },
      ],
      paramsSha256Before: canonicalSha256(current),
      paramsSha256After: canonicalSha256(edited),
    });
    expect(result?.edit.paramsSha256After).not.toBe(result?.edit.paramsSha256Before);
  });

  it("records an added key without a before and a removed key without an after", () => {
    const { replicas: _replicas, ...rest } = current;
    const result = edit({ ...rest, notes: "canary first" });
    expect(result?.edit.changes).toEqual([
      { key: "replicas", before: 3 },
      { key: "notes", after: "canary first" },
    ]);
  });

  it("returns undefined for an edit that changes nothing, whatever its key order", () => {
    expect(edit({ regions: ["eu"], replicas: 3, version: "1.2.3", service: "api" })).toBeUndefined();
  });

  it("refuses every edit when the policy allows none", () => {
    expect(violationsOf(() => edit({ ...current, version: "1.2.4" }, rules({ keys: [] })))).toEqual([
      { field: "edited_params", description: expect.stringContaining("does not allow edits") },
    ]);
  });

  it("names each key that may not be edited", () => {
    const violations = violationsOf(() => edit({ ...current, service: "db", version: "1.2.4" }));
    expect(violations).toEqual([
      { field: "edited_params.service", description: expect.stringContaining("may not") },
    ]);
  });

  it("limits the number of changed keys", () => {
    const violations = violationsOf(() => edit({ ...current, version: "1.2.4", replicas: 4, notes: "x" }));
    expect(violations).toEqual([
      { field: "edited_params", description: expect.stringMatching(/changes 3 keys/) },
    ]);
  });

  it("limits the bytes of the changed values", () => {
    const notes = "n".repeat(63); // 65 bytes of canonical JSON with its quotes
    const violations = violationsOf(() => edit({ ...current, notes }));
    expect(violations).toEqual([{ field: "edited_params", description: expect.stringMatching(/65 bytes/) }]);
    expect(edit({ ...current, notes: "n".repeat(62) })?.params.notes).toBe("n".repeat(62));
  });

  it("reports JSON Schema violations with per-field paths", () => {
    const violations = violationsOf(() => edit({ ...current, version: "latest", regions: ["eu", 5] }));
    expect(violations.map((v) => v.field).sort()).toEqual([
      "edited_params.regions[1]",
      "edited_params.version",
    ]);
  });

  it("names a missing required property", () => {
    const { version: _version, ...withoutVersion } = current;
    expect(violationsOf(() => edit(withoutVersion))).toEqual([
      { field: "edited_params.version", description: expect.stringContaining("required") },
    ]);
  });

  it("reports governance and schema problems together", () => {
    const violations = violationsOf(() => edit({ ...current, service: "db", replicas: 0, version: "x" }));
    expect(violations.map((v) => v.field).sort()).toEqual([
      "edited_params",
      "edited_params.replicas",
      "edited_params.service",
      "edited_params.version",
    ]);
  });

  it("gives a field the policy's own error message (errorMessage), and checks formats", () => {
    const withMessages = rules({
      schema: {
        type: "object",
        properties: {
          version: { type: "string", pattern: "^v[0-9]+$", errorMessage: "must look like v42" },
          notes: { type: "string", format: "email" },
        },
      },
    });
    expect(violationsOf(() => edit({ ...current, version: "latest" }, withMessages))).toEqual([
      { field: "edited_params.version", description: "must look like v42" },
    ]);
    expect(
      violationsOf(() => edit({ ...current, version: "v1", notes: "not an address" }, withMessages)),
    ).toEqual([{ field: "edited_params.notes", description: 'must match format "email"' }]);
  });

  it("accepts an edit without a schema to check", () => {
    const { schema: _schema, ...noSchema } = rules();
    expect(edit({ ...current, version: "anything" }, noSchema)?.params.version).toBe("anything");
  });
});
