import { type Client, Code, ConnectError } from "@connectrpc/connect";
import { backoffDelay, type ReconnectPolicy, sleep } from "./backoff.js";
import {
  AbortedError,
  CountersignError,
  DeadlineExceededError,
  ResourceExhaustedError,
  toCountersignError,
  UnavailableError,
} from "./errors.js";
import { type Approval, State } from "./gen/countersign/v1/approval_pb.js";
import type { ApprovalService } from "./gen/countersign/v1/approval_service_pb.js";

/** Options of a single call. */
export interface CallOptions {
  /** Aborts the call; it then throws `AbortedError`. */
  signal?: AbortSignal;
  /** Deadline of the call in milliseconds. @default the client's `timeoutMs` */
  timeoutMs?: number;
  /** Extra headers for this call. */
  headers?: Record<string, string>;
}

/** Told before each retry of a wait, e.g. to show "reconnecting…". */
export interface ReconnectEvent {
  /** Failed attempts in a row so far (1 for the first). */
  attempt: number;
  /** How long the SDK waits before the next attempt. */
  delayMs: number;
  /** Why the last attempt failed. */
  error: CountersignError;
}

/** Options of `ApprovalHandle.updates`. */
export interface WatchOptions {
  /** Stops watching; the iteration then throws `AbortedError`. The approval is left as it is. */
  signal?: AbortSignal;
  /**
   * Gives up after this many milliseconds with `DeadlineExceededError`, leaving the approval as it is.
   * @default no limit (the approval's own expiry ends the wait)
   */
  timeoutMs?: number;
  /** Called before each reconnection. */
  onReconnect?: (event: ReconnectEvent) => void;
}

/** Options of `ApprovalHandle.waitForDecision`. */
export interface WaitOptions extends WatchOptions {
  /** Called with every new snapshot (the current state first, then after each vote), not for heartbeats. */
  onUpdate?: (approval: Approval) => void;
}

/** Options of `ApprovalHandle.cancel`. */
export interface CancelOptions extends CallOptions {
  /** Why it is cancelled (shown to approvers and recorded). */
  reason?: string;
}

/** A reference to one approval, to wait for its decision, read or cancel it. */
export interface ApprovalHandle {
  /** The approval's id. */
  readonly id: string;
  /**
   * Every new snapshot of the approval — the current state first, then one after each change — ending
   * after the final state. Reconnects with backoff when the server is unavailable or the stream breaks;
   * watching again starts from the current state, so a decision made meanwhile is never missed. Snapshots
   * already seen (same version) are not repeated.
   * @throws UnavailableError after `reconnect.maxAttempts` failed attempts in a row, or when nothing came
   * from the server for `reconnect.giveUpAfterMs`
   * @throws AbortedError when `signal` aborts; DeadlineExceededError after `timeoutMs`
   * @throws any other RpcError (NotFoundError, PermissionDeniedError, ...) at once
   */
  updates(options?: WatchOptions): AsyncIterable<Approval>;
  /**
   * Waits until the approval is final and resolves to it, whatever the outcome (APPROVED, DENIED,
   * EXPIRED or CANCELLED: check `state`, or use `requireApproval`). Rejects on any error; an error never
   * resolves.
   * @throws as `updates`
   */
  waitForDecision(options?: WaitOptions): Promise<Approval>;
  /** The current snapshot. */
  get(options?: CallOptions): Promise<Approval>;
  /**
   * Cancels the approval (requesters cancel their own).
   * @throws FailedPreconditionError when it is already final
   */
  cancel(options?: CancelOptions): Promise<Approval>;
}

/** True for the states an approval never leaves: APPROVED, DENIED, EXPIRED, CANCELLED. */
export function isFinalState(state: State): boolean {
  return (
    state === State.APPROVED || state === State.DENIED || state === State.EXPIRED || state === State.CANCELLED
  );
}

/** Whether a failed watch should be tried again: only when no answer came from the server. */
function isRetryable(error: CountersignError): boolean {
  return error instanceof UnavailableError || error instanceof ResourceExhaustedError;
}

/** An AbortController that follows the caller's signal and a timeout, and says which one fired. */
function waitScope(signal: AbortSignal | undefined, timeoutMs: number | undefined) {
  const controller = new AbortController();
  let cause: "aborted" | "timeout" | undefined;
  const onAbort = () => {
    cause ??= "aborted";
    controller.abort(signal?.reason);
  };
  if (signal?.aborted) onAbort();
  else signal?.addEventListener("abort", onAbort, { once: true });
  const timer =
    timeoutMs === undefined || timeoutMs <= 0
      ? undefined
      : setTimeout(() => {
          cause ??= "timeout";
          controller.abort();
        }, timeoutMs);
  return {
    signal: controller.signal,
    /** The error for the end of the wait, when the caller or the timeout ended it. */
    ended(id: string): CountersignError | undefined {
      if (cause === "timeout")
        return new DeadlineExceededError(
          new ConnectError(
            `gave up waiting for approval ${id} after ${timeoutMs} ms; it is left as it is`,
            Code.DeadlineExceeded,
          ),
        );
      if (cause === "aborted")
        return new AbortedError(
          new ConnectError(
            `stopped waiting for approval ${id} (aborted); it is left as it is`,
            Code.Canceled,
            undefined,
            undefined,
            signal?.reason,
          ),
        );
      return undefined;
    },
    dispose() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      // Ends a watch stream the consumer stopped reading.
      controller.abort();
    },
  };
}

/** What a handle needs from its client. */
export interface HandleContext {
  approvals: Client<typeof ApprovalService>;
  reconnect: ReconnectPolicy;
}

function required(approval: Approval | undefined, id: string): Approval {
  if (approval === undefined || approval.id !== id)
    throw new CountersignError(`the server answered without approval ${id} (protocol violation)`);
  return approval;
}

async function* watch(context: HandleContext, id: string, options: WatchOptions): AsyncGenerator<Approval> {
  const scope = waitScope(options.signal, options.timeoutMs);
  const policy = context.reconnect;
  let lastVersion = -1n;
  let failures = 0;
  let lastAnswer = Date.now();
  try {
    for (;;) {
      let error: CountersignError;
      try {
        for await (const response of context.approvals.watchApproval(
          { id },
          { signal: scope.signal, timeoutMs: 0 },
        )) {
          failures = 0;
          lastAnswer = Date.now();
          const approval = required(response.approval, id);
          if (approval.version > lastVersion) {
            lastVersion = approval.version;
            yield approval;
          }
          if (isFinalState(approval.state)) return;
        }
        error = new UnavailableError(
          new ConnectError(`the watch of approval ${id} ended before a decision`, Code.Unavailable),
        );
      } catch (err) {
        const ended = scope.ended(id);
        if (ended !== undefined) throw ended;
        error = toCountersignError(err);
        if (!isRetryable(error)) throw error;
      }
      failures++;
      const silentFor = Date.now() - lastAnswer;
      if (failures >= policy.maxAttempts || silentFor >= policy.giveUpAfterMs) throw error;
      const backoff = backoffDelay(failures, policy);
      // The last retry comes when the time without an answer runs out, not after it.
      const delayMs = Math.min(
        error instanceof ResourceExhaustedError ? Math.max(backoff, error.retryDelayMs ?? 0) : backoff,
        policy.giveUpAfterMs - silentFor,
      );
      options.onReconnect?.({ attempt: failures, delayMs, error });
      try {
        await sleep(delayMs, scope.signal);
      } catch {
        throw scope.ended(id) ?? error;
      }
    }
  } finally {
    scope.dispose();
  }
}

/** A handle for approval `id`. */
export function createApprovalHandle(context: HandleContext, id: string): ApprovalHandle {
  return {
    id,
    updates: (options = {}) => watch(context, id, options),
    async waitForDecision(options = {}) {
      let last: Approval | undefined;
      for await (const approval of watch(context, id, options)) {
        last = approval;
        options.onUpdate?.(approval);
      }
      if (last === undefined || !isFinalState(last.state))
        throw new CountersignError(`the watch of approval ${id} ended without a final state`);
      return last;
    },
    async get(options = {}) {
      const response = await context.approvals.getApproval({ id }, options);
      return required(response.approval, id);
    },
    async cancel(options = {}) {
      const { reason, ...call } = options;
      const response = await context.approvals.cancelApproval({ id, reason: reason ?? "" }, call);
      return required(response.approval, id);
    },
  };
}
