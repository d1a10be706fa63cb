/**
 * Which policy governs an action: glob match on the action name, most specific wins (SPEC C3).
 */
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

/** One element of a parsed glob. */
type GlobNode =
  | { kind: "char"; code: number }
  | { kind: "any" }
  | { kind: "star" }
  | { kind: "class"; negated: boolean; ranges: [number, number][] }
  | { kind: "alternatives"; options: GlobNode[][] };

/**
 * Parses a `match` glob into its elements. In `[...]`, `x-y` between two members is a range (as in
 * POSIX brackets); a `-` first or last is itself.
 * @throws GlobSyntaxError naming the position of the first problem
 */
function parseGlob(glob: string): GlobNode[] {
  if (glob === "") throw new GlobSyntaxError("must not be empty");
  let pos = 0;
  const fail = (what: string): never => {
    throw new GlobSyntaxError(`${what} at position ${pos + 1}`);
  };

  const sequence = (inBraces: boolean): GlobNode[] => {
    const nodes: GlobNode[] = [];
    while (pos < glob.length) {
      const c = glob[pos] as string;
      if (c === "*") {
        // Consecutive stars match what one does.
        if (nodes.at(-1)?.kind !== "star") nodes.push({ kind: "star" });
        pos++;
      } else if (c === "?") {
        nodes.push({ kind: "any" });
        pos++;
      } else if (c === "[") {
        nodes.push(bracket());
      } else if (c === "{") {
        nodes.push(braces());
      } else if (c === "," || c === "}") {
        if (!inBraces) fail(`unexpected "${c}"`);
        return nodes;
      } else if (actionChar.test(c)) {
        nodes.push({ kind: "char", code: c.charCodeAt(0) });
        pos++;
      } else {
        fail(`${JSON.stringify(c)} is not allowed`);
      }
    }
    return nodes;
  };

  const braces = (): GlobNode => {
    pos++;
    const options: GlobNode[][] = [];
    for (;;) {
      options.push(sequence(true));
      if (pos >= glob.length) fail('unclosed "{"');
      const c = glob[pos];
      pos++;
      if (c === "}") break;
    }
    if (options.length < 2) {
      pos--;
      fail('"{...}" needs at least two alternatives separated by ","');
    }
    return { kind: "alternatives", options };
  };

  const bracket = (): GlobNode => {
    pos++;
    const negated = glob[pos] === "^";
    if (negated) pos++;
    const members: string[] = [];
    while (pos < glob.length && glob[pos] !== "]") {
      if (!actionChar.test(glob[pos] as string))
        fail(`${JSON.stringify(glob[pos])} is not allowed in "[...]"`);
      members.push(glob[pos] as string);
      pos++;
    }
    if (pos >= glob.length) fail('unclosed "["');
    if (members.length === 0) fail('empty "[]"');
    const ranges: [number, number][] = [];
    for (let i = 0; i < members.length; i++) {
      const lo = (members[i] as string).charCodeAt(0);
      if (members[i + 1] === "-" && i + 2 < members.length) {
        const hi = (members[i + 2] as string).charCodeAt(0);
        if (hi < lo) fail(`the range "${members[i]}-${members[i + 2]}" in "[...]" is reversed`);
        ranges.push([lo, hi]);
        i += 2;
      } else ranges.push([lo, lo]);
    }
    pos++;
    return { kind: "class", negated, ranges };
  };

  return sequence(false);
}

/** Characters that must appear literally in any name the nodes match (the shortest alternative counts). */
function literalCharsOf(nodes: readonly GlobNode[]): number {
  let count = 0;
  for (const node of nodes) {
    if (node.kind === "char") count++;
    else if (node.kind === "alternatives") count += Math.min(...node.options.map(literalCharsOf));
  }
  return count;
}

/**
 * Analyses a `match` glob: whether it is valid, exact, and how specific it is.
 */
export function analyzeActionGlob(glob: string): ActionGlob {
  try {
    const nodes = parseGlob(glob);
    return {
      ok: true,
      exact: nodes.every((n) => n.kind === "char"),
      literalChars: literalCharsOf(nodes),
    };
  } catch (error) {
    if (error instanceof GlobSyntaxError) return { ok: false, error: error.message };
    throw error;
  }
}

/**
 * A state of the glob's automaton: consume one character that passes `test`, loop on any character
 * (`*`), branch without consuming (`{a,b}`), or accept.
 */
type GlobState =
  | { kind: "char"; test: (code: number) => boolean; next: number }
  | { kind: "star"; next: number }
  | { kind: "split"; next: number[] }
  | { kind: "accept" };

/** Builds the automaton of `nodes` followed by state `next`; returns its entry state. */
function buildStates(nodes: readonly GlobNode[], next: number, states: GlobState[]): number {
  let entry = next;
  for (let i = nodes.length - 1; i >= 0; i--) {
    const node = nodes[i] as GlobNode;
    let state: GlobState;
    switch (node.kind) {
      case "char": {
        const code = node.code;
        state = { kind: "char", test: (c) => c === code, next: entry };
        break;
      }
      case "any":
        state = { kind: "char", test: () => true, next: entry };
        break;
      case "class": {
        const { negated, ranges } = node;
        state = {
          kind: "char",
          test: (c) => ranges.some(([lo, hi]) => c >= lo && c <= hi) !== negated,
          next: entry,
        };
        break;
      }
      case "star":
        state = { kind: "star", next: entry };
        break;
      case "alternatives": {
        const after = entry;
        state = { kind: "split", next: node.options.map((o) => buildStates(o, after, states)) };
        break;
      }
    }
    states.push(state);
    entry = states.length - 1;
  }
  return entry;
}

/** Counts the work of matching: one step per automaton state visited. */
export interface GlobMatchCounter {
  steps: number;
}

/**
 * Compiles a `match` glob to a predicate over action names. Matching runs the glob's automaton over the
 * name once, keeping the set of states it may be in (no backtracking): at most (name length + 1) ×
 * (states) steps, linear in the name whatever the glob, so a hostile action name cannot make it slow.
 * `counter`, when given, adds the steps of every call.
 * @throws Error when the glob is invalid (see `analyzeActionGlob`).
 */
export function compileActionGlob(glob: string, counter?: GlobMatchCounter): (action: string) => boolean {
  let nodes: GlobNode[];
  try {
    nodes = parseGlob(glob);
  } catch (error) {
    if (error instanceof GlobSyntaxError)
      throw new Error(`invalid glob ${JSON.stringify(glob)}: ${error.message}`);
    throw error;
  }
  if (nodes.every((n) => n.kind === "char")) return (action) => action === glob;
  const states: GlobState[] = [{ kind: "accept" }];
  const start = buildStates(nodes, 0, states);
  const mark = new Uint32Array(states.length);
  let generation = 0;

  return (action) => {
    let steps = 0;
    /** Adds state `i` and what it reaches without consuming to `set` (once per generation). */
    const add = (set: number[], i: number): void => {
      steps++;
      if (mark[i] === generation) return;
      mark[i] = generation;
      const state = states[i] as GlobState;
      if (state.kind === "split") for (const n of state.next) add(set, n);
      else {
        set.push(i);
        if (state.kind === "star") add(set, state.next);
      }
    };
    generation++;
    let current: number[] = [];
    add(current, start);
    for (let k = 0; k < action.length && current.length > 0; k++) {
      const code = action.charCodeAt(k);
      const next: number[] = [];
      generation++;
      for (const i of current) {
        steps++;
        const state = states[i] as GlobState;
        if (state.kind === "star") add(next, i);
        else if (state.kind === "char" && state.test(code)) add(next, state.next);
      }
      current = next;
    }
    if (counter !== undefined) counter.steps += steps;
    return current.some((i) => (states[i] as GlobState).kind === "accept");
  };
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
