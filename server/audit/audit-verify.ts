import { createReadStream } from "node:fs";
import { createInterface } from "node:readline";
import { type AuditLine, claimedChain, genesisHash, hashMatches, parseAuditLine } from "./audit-record.js";

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
  /** Undefined when the chain is intact. */
  break?: ChainBreak;
}

/** The result of verifying audit logs. */
export interface VerifyReport {
  /** Every chain, in order of first appearance. */
  chains: ChainReport[];
  /** Lines that are not audit lines (other logs), ignored. */
  otherLines: number;
  /** True when at least one chain was found and none is broken. */
  ok: boolean;
}

interface ChainState {
  report: ChainReport;
  expectedSeq: number;
  prevHash: string;
}

/**
 * Verifies hash-chained audit lines fed in log order, possibly mixed with other log lines and with
 * several chains (processes) interleaved. For each chain it reports the number of lines and the first bad
 * seq: a changed line (its hash does not match its content), a removed one (a seq is missing), lines out
 * of order, a duplicated line, or a line whose `prev_hash` does not match the line before it (one of the
 * two was rewritten with a recomputed hash).
 */
export function createAuditVerifier() {
  const chains = new Map<string, ChainState>();
  let otherLines = 0;

  const stateOf = (chain: string): ChainState => {
    let state = chains.get(chain);
    if (state === undefined) {
      state = {
        report: { chain, lines: 0, lastSeq: 0, closed: false },
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
    if (!hashMatches(line)) {
      fail(state, expected, `seq ${expected} was changed: its content does not match its hash`, at);
      return;
    }
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
      const state = stateOf(line.chain);
      state.report.lines++;
      state.report.lastSeq = Math.max(state.report.lastSeq, line.seq);
      state.report.closed = line.type === "audit_stopped";
      if (state.report.break === undefined) check(state, line, at);
    },
    /** The result so far. */
    report(): VerifyReport {
      const reports = [...chains.values()].map((s) => ({ ...s.report }));
      return { chains: reports, otherLines, ok: reports.length > 0 && reports.every((r) => !r.break) };
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
export async function verifyAuditFiles(files: readonly string[]): Promise<VerifyReport> {
  const verifier = createAuditVerifier();
  await readLines(files, (text, at) => verifier.add(text, at));
  return verifier.report();
}
