/**
 * Every Slack Web API call of the gateway goes through one `SlackCaller`: it limits concurrency (clicks
 * first), pauses a method for as long as Slack's `Retry-After` says after a 429, classifies every failure
 * by whether the call may have taken effect, and reports each call. It never retries by itself: the
 * outbound queue decides what is safe to retry, because a blind retry of `chat.postMessage` can post twice.
 */
import { setMaxListeners } from "node:events";
import type { webApi } from "@slack/bolt";
import type { SlackCallOutcome, SlackGatewayEventListener } from "./gateway-events.js";

/** A Slack Web API answer (`ok: true`), as the client returns it. */
export type SlackResult = Record<string, unknown> & { ok?: boolean };

/** A failed call, classified. */
export class SlackCallError extends Error {
  override name = "SlackCallError";
  constructor(
    readonly method: string,
    readonly outcome: Exclude<SlackCallOutcome, "ok">,
    /** Slack's error code, or the network error code. */
    readonly code: string,
    /** HTTP status; 0 when there was no response. */
    readonly status: number,
    /** For `rate_limited`: how long Slack asked to wait. */
    readonly retryAfterMs: number,
    options?: { cause?: unknown },
  ) {
    super(`Slack ${method} failed (${outcome}: ${code})`, options);
  }

  /** True when the call certainly did not take effect, so it may be repeated without checking first. */
  get certainlyNotApplied(): boolean {
    return this.outcome !== "ambiguous";
  }
}

/** Slack errors an operator can fix without losing the work (invite the bot, fix the token or scopes). */
const blockedErrors = new Set([
  "not_in_channel",
  "channel_not_found",
  "is_archived",
  "invalid_auth",
  "not_authed",
  "token_revoked",
  "token_expired",
  "account_inactive",
  "missing_scope",
  "no_permission",
  "team_access_not_granted",
  "access_denied",
  "ekm_access_denied",
]);
/** Slack errors after which the call may have taken effect. */
const ambiguousErrors = new Set(["internal_error", "fatal_error"]);
/** Slack errors that say the call was not processed at all. */
const unavailableErrors = new Set(["service_unavailable", "request_timeout", "ratelimited"]);
/** Network errors raised before anything was sent. */
const notSentErrors = new Set(["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH", "ENETUNREACH"]);

/** How a Web API client error is classified: outcome, code, HTTP status and `Retry-After`. */
export function classifySlackError(err: unknown): {
  outcome: Exclude<SlackCallOutcome, "ok">;
  code: string;
  status: number;
  retryAfterMs: number;
} {
  const e = err as {
    code?: string;
    retryAfter?: webApi.WebAPIRateLimitedError["retryAfter"];
    data?: Partial<webApi.WebAPIPlatformError["data"]>;
    statusCode?: webApi.WebAPIHTTPError["statusCode"];
    original?: webApi.WebAPIRequestError["original"];
  };
  switch (e.code ?? "") {
    case "slack_webapi_rate_limited_error":
      return {
        outcome: "rate_limited",
        code: "ratelimited",
        status: 429,
        retryAfterMs: (e.retryAfter ?? 1) * 1000,
      };
    case "slack_webapi_platform_error": {
      const code = String(e.data?.error ?? "unknown_error");
      const outcome = blockedErrors.has(code)
        ? "blocked"
        : ambiguousErrors.has(code)
          ? "ambiguous"
          : unavailableErrors.has(code)
            ? "unavailable"
            : "rejected";
      return { outcome, code, status: 200, retryAfterMs: 0 };
    }
    case "slack_webapi_http_error": {
      const status = e.statusCode ?? 0;
      // A 5xx may come after the call took effect; a 4xx (other than 429) means it was refused.
      return {
        outcome: status >= 500 ? "ambiguous" : "rejected",
        code: `http_${status}`,
        status,
        retryAfterMs: 0,
      };
    }
    case "slack_webapi_request_error": {
      const code = String((e.original as NodeJS.ErrnoException | undefined)?.code ?? "request_error");
      return {
        outcome: notSentErrors.has(code) ? "unavailable" : "ambiguous",
        code,
        status: 0,
        retryAfterMs: 0,
      };
    }
    default: {
      // The client raises a plain error for a 429 whose Retry-After it cannot read.
      const message = err instanceof Error ? err.message : String(err);
      if (/Retry header/i.test(message))
        return { outcome: "rate_limited", code: "ratelimited", status: 429, retryAfterMs: 1000 };
      return { outcome: "ambiguous", code: "unknown_error", status: 0, retryAfterMs: 0 };
    }
  }
}

/** Options of one call. */
export interface SlackCallOptions {
  /** Interactive calls (a modal to open for a click) go before background work. @default "background" */
  priority?: "interactive" | "background";
  /** Which attempt of its piece of work this is (reported). @default 1 */
  attempt?: number;
  /** Give up (as `unavailable`) rather than start after this epoch ms, e.g. a trigger id's expiry. */
  deadline?: number;
}

/** Calls Slack, one call at a time per free slot. */
export interface SlackCaller {
  /**
   * Calls a Web API method once.
   * @throws SlackCallError, classified
   */
  call(method: string, args: Record<string, unknown>, options?: SlackCallOptions): Promise<SlackResult>;
  /** Fails every waiting and future call; calls in flight finish. */
  close(): void;
}

/** Options of `createSlackCaller`. */
export interface SlackCallerOptions {
  /** A client with its own retries off (`retryConfig: { retries: 0 }`, `rejectRateLimitedCalls: true`). */
  client: Pick<webApi.WebClient, "apiCall">;
  /** Calls in flight at once. @default 4 */
  concurrency?: number;
  onEvent: SlackGatewayEventListener;
}

/** Creates the gateway's one way to call Slack. */
export function createSlackCaller(options: SlackCallerOptions): SlackCaller {
  const { client, onEvent } = options;
  const concurrency = options.concurrency ?? 4;
  const pausedUntil = new Map<string, number>();
  const waiting = { interactive: [] as (() => void)[], background: [] as (() => void)[] };
  const closed = new AbortController();
  // Every call waiting for a slot or a Retry-After listens for the close: hundreds while Slack is slow.
  setMaxListeners(0, closed.signal);
  let active = 0;

  const closedError = (method: string) => new SlackCallError(method, "unavailable", "gateway_closed", 0, 0);

  function sleep(ms: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        clearTimeout(timer);
        reject(closed.signal.reason);
      };
      const timer = setTimeout(() => {
        closed.signal.removeEventListener("abort", onAbort);
        resolve();
      }, ms);
      closed.signal.addEventListener("abort", onAbort, { once: true });
    });
  }

  /** Waits while Slack has asked us to leave `method` alone. */
  async function gate(method: string, deadline: number | undefined): Promise<void> {
    for (;;) {
      const wait = (pausedUntil.get(method) ?? 0) - Date.now();
      if (wait <= 0) return;
      if (deadline !== undefined && Date.now() + wait > deadline)
        throw new SlackCallError(method, "rate_limited", "ratelimited", 429, wait);
      await sleep(wait).catch(() => {
        throw closedError(method);
      });
    }
  }

  async function slot(priority: "interactive" | "background", method: string): Promise<void> {
    if (closed.signal.aborted) throw closedError(method);
    if (active < concurrency) {
      active++;
      return;
    }
    await new Promise<void>((resolve, reject) => {
      const onAbort = () => reject(closedError(method));
      closed.signal.addEventListener("abort", onAbort, { once: true });
      waiting[priority].push(() => {
        closed.signal.removeEventListener("abort", onAbort);
        resolve();
      });
    });
  }

  function release(): void {
    const next = waiting.interactive.shift() ?? waiting.background.shift();
    if (next === undefined) active--;
    else next(); // the slot passes to the next caller
  }

  return {
    async call(method, args, callOptions = {}) {
      const attempt = callOptions.attempt ?? 1;
      await gate(method, callOptions.deadline);
      await slot(callOptions.priority ?? "background", method);
      try {
        await gate(method, callOptions.deadline);
        if (callOptions.deadline !== undefined && Date.now() > callOptions.deadline)
          throw new SlackCallError(method, "unavailable", "deadline_exceeded", 0, 0);
        const started = performance.now();
        try {
          const result = (await client.apiCall(method, args)) as SlackResult;
          onEvent({
            type: "api_call",
            method,
            outcome: "ok",
            status: 200,
            error: "",
            attempt,
            durationMs: performance.now() - started,
          });
          return result;
        } catch (err) {
          const c = classifySlackError(err);
          if (c.outcome === "rate_limited") {
            pausedUntil.set(method, Math.max(pausedUntil.get(method) ?? 0, Date.now() + c.retryAfterMs));
            onEvent({ type: "rate_limited", method, retryAfterMs: c.retryAfterMs });
          }
          onEvent({
            type: "api_call",
            method,
            outcome: c.outcome,
            status: c.status,
            error: c.code,
            attempt,
            durationMs: performance.now() - started,
          });
          throw new SlackCallError(method, c.outcome, c.code, c.status, c.retryAfterMs, { cause: err });
        }
      } finally {
        release();
      }
    },
    close() {
      closed.abort(new Error("the Slack gateway is closed"));
      for (const list of [waiting.interactive, waiting.background]) list.length = 0;
    },
  };
}
