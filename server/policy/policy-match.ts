/**
 * Which policy governs an action: glob match on the action name, most specific wins (SPEC C3).
 */
import picomatch from "picomatch";
import type { Policy, PolicySet } from "../domain/types.js";

/**
 * What a `match` glob may contain: the characters of action names, and the wildcards `*` (any run of
 * characters, dots included), `?` (one character), `[...]` / `[^...]` (one character of a class) and
 * `{a,b}` (alternatives).
 */
export const actionGlobHint = "letters, digits, . _ : - and the wildcards * ? [...] {a,b}";

/** A `match` glob, analysed. */
export type ActionGlob =
  | {
      ok: true;
      /** No wildcard: the glob matches exactly one action name, itself. */
      exact: boolean;
      /**
       * Characters that must appear literally (wildcards and classes excluded; for `{a,b}` the shortest
       * alternative counts). More is more specific.
       */
      literalChars: number;
    }
  | { ok: false; error: string };

const actionChar = /^[A-Za-z0-9._:-]$/;

class GlobSyntaxError extends Error {}

/**
 * Analyses a `match` glob: whether it is valid, exact, and how specific it is.
 */
export function analyzeActionGlob(glob: string): ActionGlob {
  if (glob === "") return { ok: false, error: "must not be empty" };
  let pos = 0;
  let wildcard = false;
  const fail = (what: string): never => {
    throw new GlobSyntaxError(`${what} at position ${pos + 1}`);
  };

  const sequence = (inBraces: boolean): number => {
    let literal = 0;
    while (pos < glob.length) {
      const c = glob[pos] as string;
      if (c === "*" || c === "?") {
        wildcard = true;
        pos++;
      } else if (c === "[") {
        wildcard = true;
        bracket();
      } else if (c === "{") {
        wildcard = true;
        literal += braces();
      } else if (c === "," || c === "}") {
        if (!inBraces) fail(`unexpected "${c}"`);
        return literal;
      } else if (actionChar.test(c)) {
        literal++;
        pos++;
      } else {
        fail(`${JSON.stringify(c)} is not allowed`);
      }
    }
    return literal;
  };

  const braces = (): number => {
    pos++;
    let shortest = Number.POSITIVE_INFINITY;
    let alternatives = 0;
    for (;;) {
      shortest = Math.min(shortest, sequence(true));
      alternatives++;
      if (pos >= glob.length) fail('unclosed "{"');
      const c = glob[pos];
      pos++;
      if (c === "}") break;
    }
    if (alternatives < 2) {
      pos--;
      fail('"{...}" needs at least two alternatives separated by ","');
    }
    return shortest;
  };

  const bracket = (): void => {
    pos++;
    if (glob[pos] === "^") pos++;
    let members = 0;
    while (pos < glob.length && glob[pos] !== "]") {
      if (!actionChar.test(glob[pos] as string))
        fail(`${JSON.stringify(glob[pos])} is not allowed in "[...]"`);
      pos++;
      members++;
    }
    if (pos >= glob.length) fail('unclosed "["');
    if (members === 0) fail('empty "[]"');
    pos++;
  };

  try {
    const literalChars = sequence(false);
    return { ok: true, exact: !wildcard, literalChars };
  } catch (error) {
    if (error instanceof GlobSyntaxError) return { ok: false, error: error.message };
    throw error;
  }
}

/**
 * picomatch settings for action names: POSIX semantics on every platform, `*` matches names that start
 * with a dot too, no extglobs. Action names contain no `/`, so `*` matches across dots.
 */
const picomatchOptions: picomatch.PicomatchOptions = {
  windows: false,
  dot: true,
  noextglob: true,
  strictBrackets: true,
};

/**
 * Compiles a `match` glob to a predicate over action names.
 * @throws Error when the glob is invalid (see `analyzeActionGlob`).
 */
export function compileActionGlob(glob: string): (action: string) => boolean {
  const analysis = analyzeActionGlob(glob);
  if (!analysis.ok) throw new Error(`invalid glob ${JSON.stringify(glob)}: ${analysis.error}`);
  if (analysis.exact) return (action) => action === glob;
  const re = picomatch.makeRe(glob, picomatchOptions);
  return (action) => re.test(action);
}

interface GlobEntry {
  policy: Policy;
  test: (action: string) => boolean;
}

/** A policy set's matchers: exact names in a map, globs in the order they win. */
interface CompiledPolicySet {
  exact: Map<string, Policy>;
  globs: GlobEntry[];
}

const compiledSets = new WeakMap<PolicySet, CompiledPolicySet>();

function compile(set: PolicySet): CompiledPolicySet {
  const exact = new Map<string, Policy>();
  const ranked: (GlobEntry & { literalChars: number; index: number })[] = [];
  set.policies.forEach((policy, index) => {
    const analysis = analyzeActionGlob(policy.match);
    // The loader rejects invalid globs; a hand-built set with one simply never matches it.
    if (!analysis.ok) return;
    if (analysis.exact) {
      if (!exact.has(policy.match)) exact.set(policy.match, policy);
      return;
    }
    ranked.push({
      policy,
      test: compileActionGlob(policy.match),
      literalChars: analysis.literalChars,
      index,
    });
  });
  ranked.sort((a, b) => b.literalChars - a.literalChars || a.index - b.index);
  return { exact, globs: ranked.map(({ policy, test }) => ({ policy, test })) };
}

/**
 * The policy that governs `action`, or `undefined` when none matches (then `defaults.unknown_action`
 * applies). Most specific wins: an exact match beats any glob; among globs, the one with more literal
 * characters wins; a tie goes to the policy earlier in the file. Matchers are compiled once per set.
 */
export function resolvePolicy(set: PolicySet, action: string): Policy | undefined {
  let compiled = compiledSets.get(set);
  if (compiled === undefined) {
    compiled = compile(set);
    compiledSets.set(set, compiled);
  }
  const exact = compiled.exact.get(action);
  if (exact !== undefined) return exact;
  for (const entry of compiled.globs) {
    if (entry.test(action)) return entry.policy;
  }
  return undefined;
}
