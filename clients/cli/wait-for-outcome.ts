import {
  type Approval,
  type ApprovalHandle,
  DeadlineExceededError,
  isFinalState,
  RpcError,
  UnavailableError,
} from "@countersign/sdk";
import { formatDuration } from "../../server/policy/duration.js";
import { approvalJson, exitCodeFor, type OutputFormat, summaryLine } from "./approval-output.js";
import { describeError, exitCodes } from "./client-connection.js";

/** Options of `waitForOutcome`. */
export interface WaitForOutcomeOptions {
  output: OutputFormat;
  /** The server's URL, named when the wait gives up on it. */
  url: string;
  /** Give up after this long (the approval is left pending, or cancelled with `cancelOnInterrupt`). */
  timeoutMs?: number;
  /** Cancel the approval when the wait is interrupted (SIGINT, SIGTERM) or gives up. */
  cancelOnInterrupt: boolean;
  /** Print every change to stdout (`watch`), not only the outcome (`request --wait`). */
  everyUpdate: boolean;
}

/**
 * The progress line on stderr: rewritten in place (with a ticking countdown) on a terminal, one line per
 * change otherwise, so CI logs show each vote once.
 */
function createProgress(stream: NodeJS.WriteStream) {
  const tty = stream.isTTY === true;
  let last: Approval | undefined;
  let lastText = "";
  let ticker: NodeJS.Timeout | undefined;
  const draw = () => {
    if (last === undefined) return;
    const text = `waiting: ${summaryLine(last)}`;
    if (tty) stream.write(`\r\x1b[2K${text}`);
    else if (text.replace(/expires in \S+/, "") !== lastText.replace(/expires in \S+/, ""))
      stream.write(`${text}\n`);
    lastText = text;
  };
  return {
    update(approval: Approval) {
      last = approval;
      draw();
      if (tty && ticker === undefined) ticker = setInterval(draw, 1000);
    },
    note(text: string) {
      stream.write(tty ? `\r\x1b[2K${text}\n` : `${text}\n`);
      if (tty) draw();
    },
    done() {
      clearInterval(ticker);
      if (tty && last !== undefined) stream.write("\r\x1b[2K");
    },
  };
}

/**
 * Waits for an approval's decision with a progress line, and returns the exit status of its outcome (0
 * approved, 10 denied, 11 expired, 12 cancelled). SIGINT / SIGTERM stop the wait with status 130, and a
 * timeout with status 1; either leaves the approval pending unless `cancelOnInterrupt`.
 * @throws RpcError and other SDK errors of the wait (status 1 for the caller)
 */
export async function waitForOutcome(
  handle: ApprovalHandle,
  options: WaitForOutcomeOptions,
): Promise<number> {
  const abort = new AbortController();
  let interrupted: NodeJS.Signals | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    interrupted = signal;
    abort.abort();
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  const progress = createProgress(process.stderr);
  const print = (approval: Approval) =>
    process.stdout.write(`${options.output === "json" ? approvalJson(approval) : summaryLine(approval)}\n`);
  try {
    const final = await handle.waitForDecision({
      signal: abort.signal,
      ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }),
      onUpdate: (approval) => {
        if (isFinalState(approval.state)) return;
        if (options.everyUpdate) print(approval);
        progress.update(approval);
      },
      onReconnect: (event) => {
        const why = event.error instanceof RpcError ? event.error.rawMessage : event.error.message;
        progress.note(`connection lost (${why}); reconnecting in ${formatDuration(event.delayMs)}`);
      },
    });
    progress.done();
    print(final);
    return exitCodeFor(final.state);
  } catch (err) {
    progress.done();
    if (interrupted === undefined && err instanceof UnavailableError) {
      // The reconnects ran out (--give-up-after without an answer): say where, and what went wrong last.
      process.stderr.write(
        `countersign: gave up waiting: no answer from ${options.url}; last error: ${describeError(err)}\n`,
      );
      return exitCodes.error;
    }
    const gaveUp = err instanceof DeadlineExceededError && options.timeoutMs !== undefined;
    if (interrupted === undefined && !gaveUp) throw err;
    const why =
      interrupted === undefined
        ? `timed out after ${formatDuration(options.timeoutMs ?? 0)}`
        : `interrupted (${interrupted})`;
    if (options.cancelOnInterrupt) {
      const cancelled = await handle.cancel({ reason: `the requester's wait was ${why}`, timeoutMs: 10_000 });
      process.stderr.write(`countersign: wait ${why}; cancelled approval ${handle.id}\n`);
      print(cancelled);
    } else {
      process.stderr.write(
        `countersign: wait ${why}; approval ${handle.id} is left pending (see it with: countersign watch ${handle.id})\n`,
      );
    }
    return interrupted === undefined ? exitCodes.error : exitCodes.interrupted;
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}
