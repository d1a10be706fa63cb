import { createReadStream } from "node:fs";
import { createInterface } from "node:readline";
import {
  type AuditCheckpoint,
  type AuditKey,
  type AuditLine,
  checkpointMatches,
  claimedChain,
  genesisHash,
  hashMatches,
  parseAuditLine,
  parseCheckpointLine,
} from "./audit-record.js";

/** Where a line was read. */
export interface LineLocation {
  file: string;
  /** 1-based line number within the file. */
  line: number;
}

/** The first break found in a chain. */
export interface ChainBreak {
  /** The first bad sequence number: the line changed, missing, out of order or duplicated. */
  seq: number;
  problem: string;
  /** The line at which the break was noticed. */
  at: LineLocation;
}

/** What verification found about one chain. */
export interface ChainReport {
  chain: string;
  /** Audit lines of this chain that were read. */
  lines: number;
  /** Highest seq seen. */
  lastSeq: number;
  /** The chain ends with `audit_stopped` (its process stopped cleanly, so no line was cut off the end). */
  closed: boolean;
  /** Ids of the keys that sealed its lines; empty when it is unkeyed. */
  keyIds: string[];
  /** The latest valid checkpoint of the chain, when one was given, and whether the lines reach it. */
  checkpoint?: { seq: number; time: string; reached: boolean };
  /** Undefined when the chain is intact. */
  break?: ChainBreak;
}

/** What `verifyAuditFiles` checks the lines against. */
export interface VerifyOptions {
  /**
   * The audit keys (current and earlier ones). With keys, every line and checkpoint must be sealed by
   * one of them; without, keyed lines cannot be checked and fail, unkeyed ones are checked as SHA-256.
   */
  keys?: readonly AuditKey[];
  /** Checkpoints kept outside the files (from the store or the server log): catch a cut tail. */
  checkpoints?: readonly AuditCheckpoint[];
}

/** The result of verifying audit logs. */
export interface VerifyReport {
  /** Every chain, in order of first appearance. */
  chains: ChainReport[];
  /** Lines that are not audit lines (other logs), ignored. */
  otherLines: number;
  /** Checkpoints that do not verify, or name a chain whose lines are missing. */
  problems: string[];
  /** Valid checkpoints compared with the lines (0: a cut tail or a deleted newest file cannot be seen). */
  checkpoints: number;
  /** True when at least one chain was found, none is broken and there is no problem. */
  ok: boolean;
}

interface ChainState {
  report: ChainReport;
  expectedSeq: number;
  prevHash: string;
}

/** The key a line or checkpoint names, or why it cannot be checked. */
function keyFor(
  keyId: string | undefined,
  keys: ReadonlyMap<string, AuditKey>,
): { key: AuditKey | undefined } | { problem: string } {
  if (keyId === undefined)
    return keys.size > 0
      ? { problem: "is unkeyed, but audit keys were given: a keyed log has no unkeyed line (forged?)" }
      : { key: undefined };
  const key = keys.get(keyId);
  if (key === undefined)
    return {
      problem:
        keys.size === 0
          ? `is sealed with audit key ${keyId}: give its key (--key-file) to verify it`
          : `is sealed with audit key ${keyId}, which is not among the keys given (forged with another key?)`,
    };
  return { key };
}

/**
 * Verifies hash-chained audit lines fed in log order, possibly mixed with other log lines and with
 * several chains (processes) interleaved. For each chain it reports the number of lines and the first bad
 * seq: a changed line (its hash does not match its content), a removed one (a seq is missing), lines out
 * of order, a duplicated line, or a line whose `prev_hash` does not match the line before it (one of the
 * two was rewritten with a recomputed hash).
 */
export function createAuditVerifier(options: VerifyOptions = {}) {
  const chains = new Map<string, ChainState>();
  const keys = new Map((options.keys ?? []).map((k) => [k.id, k]));
  let otherLines = 0;
  let firstTime: string | undefined;
  const problems: string[] = [];
  /** The latest valid checkpoint of each chain. */
  const checkpoints = new Map<string, AuditCheckpoint>();
  for (const cp of options.checkpoints ?? []) {
    const found = keyFor(cp.key_id, keys);
    const what = `the checkpoint of chain ${cp.chain} at seq ${cp.seq} (${cp.time})`;
    if ("problem" in found) problems.push(`${what} ${found.problem}`);
    else if (!checkpointMatches(cp, found.key)) problems.push(`${what} was changed: its sig does not match`);
    else if (cp.seq > (checkpoints.get(cp.chain)?.seq ?? 0)) checkpoints.set(cp.chain, cp);
  }

  const stateOf = (chain: string): ChainState => {
    let state = chains.get(chain);
    if (state === undefined) {
      state = {
        report: { chain, lines: 0, lastSeq: 0, closed: false, keyIds: [] },
        expectedSeq: 1,
        prevHash: genesisHash,
      };
      chains.set(chain, state);
    }
    return state;
  };

  const fail = (state: ChainState, seq: number, problem: string, at: LineLocation): void => {
    state.report.break = { seq, problem, at };
  };

  function check(state: ChainState, line: AuditLine, at: LineLocation): void {
    const expected = state.expectedSeq;
    if (line.seq !== expected) {
      if (line.seq === expected - 1 && line.hash === state.prevHash) {
        fail(state, line.seq, `seq ${line.seq} appears twice (a duplicated line)`, at);
      } else if (line.seq < expected) {
        fail(
          state,
          line.seq,
          `seq ${line.seq} appears again after seq ${expected - 1} (lines out of order)`,
          at,
        );
      } else if (expected === 1) {
        fail(state, 1, `the chain starts at seq ${line.seq}: seq 1 to ${line.seq - 1} are missing`, at);
      } else {
        fail(state, expected, `seq ${expected} is missing (removed, or moved): found seq ${line.seq}`, at);
      }
      return;
    }
    const found = keyFor(line.key_id, keys);
    if ("problem" in found) {
      fail(state, expected, `seq ${expected} ${found.problem}`, at);
      return;
    }
    if (!hashMatches(line, found.key)) {
      fail(state, expected, `seq ${expected} was changed: its content does not match its hash`, at);
      return;
    }
    if (found.key !== undefined && !state.report.keyIds.includes(found.key.id))
      state.report.keyIds.push(found.key.id);
    if (line.prev_hash !== state.prevHash) {
      const seq = Math.max(1, expected - 1);
      fail(
        state,
        seq,
        expected === 1
          ? "seq 1 does not start from the genesis hash"
          : `prev_hash of seq ${expected} does not match the hash of seq ${expected - 1}: one of them was rewritten`,
        at,
      );
      return;
    }
    const cp = checkpoints.get(line.chain);
    if (cp !== undefined && cp.seq === expected && cp.hash !== line.hash) {
      fail(
        state,
        expected,
        `seq ${expected} does not match the checkpoint of ${cp.time}: the chain was rewritten`,
        at,
      );
      return;
    }
    state.expectedSeq = expected + 1;
    state.prevHash = line.hash;
  }

  return {
    /** Feeds one log line. */
    add(text: string, at: LineLocation): void {
      const line = parseAuditLine(text);
      if (line === undefined) {
        const chain = claimedChain(text);
        if (chain === undefined) {
          otherLines++;
          return;
        }
        const state = stateOf(chain);
        state.report.lines++;
        if (state.report.break === undefined)
          fail(
            state,
            state.expectedSeq,
            `seq ${state.expectedSeq} is not valid JSON (the line was changed)`,
            at,
          );
        return;
      }
      if (firstTime === undefined || line.time < firstTime) firstTime = line.time;
      const state = stateOf(line.chain);
      state.report.lines++;
      state.report.lastSeq = Math.max(state.report.lastSeq, line.seq);
      state.report.closed = line.type === "audit_stopped";
      if (state.report.break === undefined) check(state, line, at);
    },
    /** The result so far. */
    report(): VerifyReport {
      const all = [...problems];
      const reports = [...chains.values()].map((s) => {
        const report = { ...s.report };
        const cp = checkpoints.get(report.chain);
        if (cp !== undefined) {
          const reached = s.expectedSeq - 1 >= cp.seq;
          report.checkpoint = { seq: cp.seq, time: cp.time, reached };
          if (!reached && report.break === undefined)
            report.break = {
              seq: s.expectedSeq,
              problem:
                `the log ends at seq ${s.expectedSeq - 1}, but the checkpoint of ${cp.time} recorded seq ${cp.seq}: ` +
                "lines were cut from the end, or the newest file is missing",
              at: { file: "(end)", line: 0 },
            };
        }
        return report;
      });
      // A checkpointed chain with no line at all, checkpointed within the period the files cover (or the
      // newest checkpoint): its lines were removed, or the newest file deleted. Older ones were rotated away.
      const newest = [...checkpoints.values()].reduce<AuditCheckpoint | undefined>(
        (a, b) => (a === undefined || b.time > a.time ? b : a),
        undefined,
      );
      for (const cp of checkpoints.values()) {
        if (chains.has(cp.chain)) continue;
        if (cp === newest || (firstTime !== undefined && cp.time >= firstTime))
          all.push(
            `chain ${cp.chain} has no line in the files, but its checkpoint of ${cp.time} recorded seq ${cp.seq}: ` +
              "its lines were removed, or the newest file is missing (or they are in another replica's files)",
          );
      }
      return {
        chains: reports,
        otherLines,
        problems: all,
        checkpoints: checkpoints.size,
        ok: reports.length > 0 && reports.every((r) => !r.break) && all.length === 0,
      };
    },
  };
}

/** Calls `onLine` with every line of the files, in order. */
export async function readLines(
  files: readonly string[],
  onLine: (text: string, at: LineLocation) => void,
): Promise<void> {
  for (const file of files) {
    const lines = createInterface({ input: createReadStream(file), crlfDelay: Number.POSITIVE_INFINITY });
    let n = 0;
    for await (const text of lines) {
      n++;
      if (text !== "") onLine(text, { file, line: n });
    }
  }
}

/**
 * Verifies the audit chains in log files read one after the other (e.g. rotated files, oldest first).
 * @throws the file system error of a file that cannot be read
 */
export async function verifyAuditFiles(
  files: readonly string[],
  options: VerifyOptions = {},
): Promise<VerifyReport> {
  const verifier = createAuditVerifier(options);
  await readLines(files, (text, at) => verifier.add(text, at));
  return verifier.report();
}

/**
 * The checkpoints in log files (the server's log, or files of checkpoint lines), in order.
 * @throws the file system error of a file that cannot be read
 */
export async function readCheckpoints(files: readonly string[]): Promise<AuditCheckpoint[]> {
  const found: AuditCheckpoint[] = [];
  await readLines(files, (text) => {
    const cp = parseCheckpointLine(text);
    if (cp !== undefined) found.push(cp);
  });
  return found;
}
