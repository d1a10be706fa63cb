import fc from "fast-check";
import picomatch from "picomatch";
import { describe, expect, it } from "vitest";
import { limits } from "../domain/limits.js";
import type { Policy, PolicySet } from "../domain/types.js";
import {
  analyzeActionGlob,
  compileActionGlob,
  type GlobMatchCounter,
  resolvePolicy,
} from "./policy-match.js";

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
    ["a[z-a]", 'the range "z-a" in "[...]" is reversed at position 6'],
  ])("rejects %j", (glob, error) => {
    expect(analyzeActionGlob(glob)).toEqual({ ok: false, error });
  });

  it("compiles only valid globs", () => {
    expect(compileActionGlob("deploy.*")("deploy.x.y")).toBe(true);
    expect(() => compileActionGlob("deploy.(")).toThrow(/invalid glob/);
  });
});

describe("matching cost against hostile action names", () => {
  const n = limits.actionLength;
  /** The longest glob the policy schema allows. */
  const maxGlobLength = 1024;

  /** Steps of matching `action` against `glob`, and the result. */
  function cost(glob: string, action: string): { steps: number; matched: boolean } {
    const counter: GlobMatchCounter = { steps: 0 };
    const matched = compileActionGlob(glob, counter)(action);
    return { steps: counter.steps, matched };
  }

  // Each of these takes a backtracking regex (what picomatch compiles) exponential or high-polynomial
  // time on a near-miss name; `*a*a*…*b` against 128 a's is about 128^k / k! attempts.
  const hostile: [string, string, string][] = [
    ["many stars", `${"*a".repeat(20)}*b`, "a".repeat(n)],
    [
      "stars at the schema's longest glob",
      `${"*a".repeat((maxGlobLength - 2) / 2)}*b`.slice(0, maxGlobLength),
      "a".repeat(n),
    ],
    ["nested alternatives under stars", "*{a,aa,aaa}*{a,aa}*{a,aa,aaa}*{a,aa}*{a,aa,aaa}*c", "a".repeat(n)],
    ["question marks and stars", `${"?*".repeat(60)}x`, "y".repeat(n)],
    ["classes and stars", `${"*[a-c]".repeat(40)}[^a-z]`, "b".repeat(n)],
    ["dots", "*.*.*.*.*.*.*.*.*.*.*.*.*.*.*.*.x", ".".repeat(n)],
  ];

  it.each(hostile)(
    "%s: linear in the name, bounded by (name + 1) × 4 × (glob + 1) steps",
    (_, glob, action) => {
      expect(action.length).toBe(n);
      const { steps, matched } = cost(glob, action);
      expect(matched).toBe(false);
      expect(steps).toBeGreaterThan(n);
      expect(steps).toBeLessThanOrEqual((n + 1) * 4 * (glob.length + 1));
    },
  );

  it("costs the same for every further character: linear, not polynomial, in the name", () => {
    const glob = `${"*a".repeat(20)}*b`;
    const [s64, s96, s128] = [64, 96, 128].map((length) => cost(glob, "a".repeat(length)).steps) as [
      number,
      number,
      number,
    ];
    expect(s128 - s96).toBe(s96 - s64);
  });

  it("resolves a hostile name against a set of hostile globs", () => {
    const globs = hostile.map(([, glob], i): [string, string] => [`p${i}`, glob]);
    expect(resolvePolicy(set(...globs, ["catch-all", "*"]), "a".repeat(n))?.name).toBe("catch-all");
  });
});

describe("agrees with the previous matcher (picomatch) on ordinary globs", () => {
  const chars = ["a", "b", "c", ".", "-", "_", ":", "1"];
  const char = fc.constantFrom(...chars);
  const literal = fc.array(char, { minLength: 1, maxLength: 3 }).map((c) => c.join(""));
  const cls = fc
    .tuple(fc.boolean(), fc.constantFrom("a", "ab", "a-c", "0-9", "b.", "c_:"))
    .map(([neg, members]) => `[${neg ? "^" : ""}${members}]`);
  const atom = fc.oneof(
    { weight: 4, arbitrary: literal },
    { weight: 2, arbitrary: fc.constant("*") },
    { weight: 1, arbitrary: fc.constant("?") },
    { weight: 1, arbitrary: cls },
  );
  const plain = fc.array(atom, { minLength: 1, maxLength: 4 }).map((a) => a.join(""));
  const alternatives = fc
    .array(plain, { minLength: 2, maxLength: 3 })
    .map((options) => `{${options.join(",")}}`);
  const glob = fc
    .array(fc.oneof({ weight: 4, arbitrary: atom }, { weight: 1, arbitrary: alternatives }), {
      minLength: 1,
      maxLength: 5,
    })
    .map((parts) => parts.join(""))
    .filter((g) => analyzeActionGlob(g).ok && !/\*\*/.test(g) && !g.includes(".."));
  const action = fc.array(char, { maxLength: 12 }).map((c) => c.join(""));
  const picomatchOptions = { windows: false, dot: true, noextglob: true, strictBrackets: true };

  it("matches the same names", () => {
    fc.assert(
      fc.property(glob, fc.array(action, { minLength: 1, maxLength: 10 }), (g, actions) => {
        const ours = compileActionGlob(g);
        const theirs = picomatch.makeRe(g, picomatchOptions);
        // Names built from the glob itself, so that matches are common, not only misses.
        const samples = [...actions, g.replace(/[*?]|\[[^\]]*\]|[{},]/g, "a"), g.replace(/[*?[\]{},^]/g, "")];
        // Where picomatch's path rules differ from the documented glob (action names are never empty and
        // have no paths): it never matches "." and ".." segments, and a `*` right after a "." must match
        // at least one character (`*.*` misses "a." while `a.*` matches it); here `*` is any run.
        const ordinary = (a: string) => a !== "" && !a.endsWith(".") && !a.includes("..");
        for (const name of samples.filter(ordinary))
          expect(ours(name), `${g} ~ ${JSON.stringify(name)}`).toBe(theirs.test(name));
      }),
      { numRuns: 2000, seed: 20261204 },
    );
  });
});
