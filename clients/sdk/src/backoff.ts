/** How the SDK retries after the server could not be reached or a connection broke. */
export interface ReconnectOptions {
  /** Delay before the first retry, in milliseconds. @default 250 */
  initialDelayMs?: number;
  /** The largest delay between two retries, in milliseconds. @default 10000 */
  maxDelayMs?: number;
  /** Each delay is this many times the previous one, up to `maxDelayMs`. @default 2 */
  multiplier?: number;
  /**
   * Failed attempts in a row after which a wait gives up and throws the last error (an attempt that
   * receives anything resets the count). @default Infinity: a wait ends by its `timeoutMs` or `signal`.
   */
  maxAttempts?: number;
  /**
   * How long a wait keeps retrying without any answer from the server (counted from the last message it
   * received, or from its start) before it gives up and throws the last error, in milliseconds.
   * @default Infinity: a wait ends by its `timeoutMs` or `signal`.
   */
  giveUpAfterMs?: number;
}

/** ReconnectOptions with every default filled in. */
export type ReconnectPolicy = Required<ReconnectOptions>;

/** The defaults of ReconnectOptions. */
export const defaultReconnect: ReconnectPolicy = {
  initialDelayMs: 250,
  maxDelayMs: 10_000,
  multiplier: 2,
  maxAttempts: Number.POSITIVE_INFINITY,
  giveUpAfterMs: Number.POSITIVE_INFINITY,
};

/**
 * Fills in and checks ReconnectOptions.
 * @throws TypeError for a negative or non-numeric setting
 */
export function reconnectPolicy(options: ReconnectOptions | undefined): ReconnectPolicy {
  const policy = { ...defaultReconnect, ...options };
  for (const [key, value] of Object.entries(policy)) {
    if (typeof value !== "number" || Number.isNaN(value) || value < 0)
      throw new TypeError(`reconnect.${key} must be a number ≥ 0, got ${String(value)}`);
  }
  if (policy.multiplier < 1) throw new TypeError("reconnect.multiplier must be at least 1");
  return policy;
}

/**
 * The delay before retry number `attempt` (1 for the first): exponential up to `maxDelayMs`, with "equal
 * jitter" — a random point in the upper half — so that clients cut off together do not come back in step.
 */
export function backoffDelay(
  attempt: number,
  policy: ReconnectPolicy,
  random: () => number = Math.random,
): number {
  const ceiling = Math.min(
    policy.maxDelayMs,
    policy.initialDelayMs * policy.multiplier ** Math.max(0, attempt - 1),
  );
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}

/** Waits `ms`, or rejects with the signal's reason as soon as it is aborted. The timer is always cleared. */
export function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
