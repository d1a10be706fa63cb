import { describe, expect, it } from "vitest";
import type { Policy, PolicySet } from "../domain/types.js";
import { analyzeActionGlob, compileActionGlob, resolvePolicy } from "./policy-match.js";

function policy(name: string, match: string): Policy {
  return {
    name,
    match,
    description: "",
    channel: "C0",
    dm: false,
    approvers: { users: ["U1"], groups: [] },
    superApprovers: [],
    requiredApprovals: 1,
    denyThreshold: 1,
    denyReasonRequired: false,
    stages: [],
    timeoutMs: 600_000,
    remindersMs: [],
    redaction: { mode: "none", keys: [] },
    overrides: { keys: [], maxKeys: 0, maxDiffBytes: 4096, requestKeys: [] },
    rerequest: { allowed: false, cooldownMs: 0, maxPerDay: 5 },
  };
}

function set(...matches: [name: string, match: string][]): PolicySet {
  return {
    sha256: "0".repeat(64),
    defaults: { channel: "C0", timeoutMs: 600_000, unknownAction: "deny", superApprovers: [] },
    policies: matches.map(([name, match]) => policy(name, match)),
  };
}

const nameOf = (s: PolicySet, action: string): string | undefined => resolvePolicy(s, action)?.name;

describe("resolvePolicy", () => {
  it("treats dots as ordinary characters: * matches across them", () => {
    const s = set(["deploy", "deploy.*"], ["eu", "*.eu"]);
    expect(nameOf(s, "deploy.production.eu")).toBe("deploy");
    expect(nameOf(s, "db.migrate.eu")).toBe("eu");
    expect(nameOf(s, "deploy")).toBeUndefined();
  });

  it("matches the SPEC example glob", () => {
    const s = set(["production-deploy", "deploy.production*"]);
    expect(nameOf(s, "deploy.production")).toBe("production-deploy");
    expect(nameOf(s, "deploy.production.eu")).toBe("production-deploy");
    expect(nameOf(s, "deploy.staging")).toBeUndefined();
  });

  it("returns undefined when nothing matches", () => {
    expect(resolvePolicy(set(), "deploy.production")).toBeUndefined();
    expect(nameOf(set(["x", "deploy.production"]), "deploy.productio")).toBeUndefined();
  });

  it("prefers an exact name over any glob, wherever it is in the file", () => {
    const s = set(["glob", "deploy.production*"], ["all", "*"], ["exact", "deploy.production"]);
    expect(nameOf(s, "deploy.production")).toBe("exact");
    expect(nameOf(s, "deploy.production.eu")).toBe("glob");
    expect(nameOf(s, "anything")).toBe("all");
  });

  it("prefers the glob with more literal characters, whatever the order", () => {
    const broad: [string, string] = ["broad", "deploy.*"];
    const narrow: [string, string] = ["narrow", "deploy.production.*"];
    expect(nameOf(set(broad, narrow), "deploy.production.eu")).toBe("narrow");
    expect(nameOf(set(narrow, broad), "deploy.production.eu")).toBe("narrow");
    expect(nameOf(set(broad, narrow), "deploy.staging")).toBe("broad");
  });

  it("does not count wildcards, classes or extra braces alternatives as literal characters", () => {
    // "deploy.?????" has 7 literal characters, "d*.eu" has 4; "deploy.{eu,useast}" counts the shorter: 9.
    const s = set(["short", "d*.eu"], ["marks", "deploy.?????"], ["braces", "deploy.{eu,useast}"]);
    expect(nameOf(s, "deploy.my.eu")).toBe("marks");
    expect(nameOf(s, "deploy.eu")).toBe("braces");
    expect(nameOf(s, "dev.eu")).toBe("short");
  });

  it("breaks ties in favour of the policy earlier in the file", () => {
    const a: [string, string] = ["a", "dep*"];
    const b: [string, string] = ["b", "*.eu"];
    expect(nameOf(set(a, b), "dep.eu")).toBe("a");
    expect(nameOf(set(b, a), "dep.eu")).toBe("b");
  });

  it("supports ?, classes, negated classes and alternatives", () => {
    const s = set(
      ["q", "a?c"],
      ["cls", "db.[mr]igrate"],
      ["neg", "x[^0-9]"],
      ["alt", "secrets.{rotate,revoke}"],
    );
    expect(nameOf(s, "a.c")).toBe("q");
    expect(nameOf(s, "abc")).toBe("q");
    expect(nameOf(s, "ac")).toBeUndefined();
    expect(nameOf(s, "db.migrate")).toBe("cls");
    expect(nameOf(s, "db.rigrate")).toBe("cls");
    expect(nameOf(s, "xa")).toBe("neg");
    expect(nameOf(s, "x1")).toBeUndefined();
    expect(nameOf(s, "secrets.revoke")).toBe("alt");
    expect(nameOf(s, "secrets.rotate.x")).toBeUndefined();
  });

  it("is case-sensitive", () => {
    expect(nameOf(set(["p", "deploy.*"]), "Deploy.x")).toBeUndefined();
  });

  it("returns the same policy objects on every call with the same set", () => {
    const s = set(["a", "deploy.*"], ["b", "db.*"]);
    const first = resolvePolicy(s, "db.x");
    expect(resolvePolicy(s, "db.x")).toBe(first);
    expect(first).toBe(s.policies[1]);
  });

  it("skips an invalid glob in a hand-built set instead of throwing", () => {
    expect(nameOf(set(["bad", "deploy.("], ["good", "deploy.*"]), "deploy.(")).toBe("good");
  });
});

describe("analyzeActionGlob", () => {
  it.each([
    ["deploy.production", true, 17],
    ["deploy.production*", false, 17],
    ["*", false, 0],
    ["db.[mr]igrate", false, 9],
    ["a{b,cd}e", false, 3],
    ["a{b,c{d,ef}}", false, 2],
  ])("analyses %s", (glob, exact, literalChars) => {
    expect(analyzeActionGlob(glob)).toEqual({ ok: true, exact, literalChars });
  });

  it.each([
    ["", "must not be empty"],
    ["deploy.(x", '"(" is not allowed at position 8'],
    ["!deploy.*", '"!" is not allowed at position 1'],
    ["a/b", '"/" is not allowed at position 2'],
    ["a b", '" " is not allowed at position 2'],
    ["a[", 'unclosed "[" at position 3'],
    ["a[]", 'empty "[]" at position 3'],
    ["a[*]", '"*" is not allowed in "[...]" at position 3'],
    ["{a,b", 'unclosed "{" at position 5'],
    ["a}", 'unexpected "}" at position 2'],
    ["a,b", 'unexpected "," at position 2'],
    ["{a}", '"{...}" needs at least two alternatives separated by "," at position 3'],
  ])("rejects %j", (glob, error) => {
    expect(analyzeActionGlob(glob)).toEqual({ ok: false, error });
  });

  it("compiles only valid globs", () => {
    expect(compileActionGlob("deploy.*")("deploy.x.y")).toBe(true);
    expect(() => compileActionGlob("deploy.(")).toThrow(/invalid glob/);
  });
});
