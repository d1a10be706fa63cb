import { Code, ConnectError, type Interceptor, type StreamResponse } from "@connectrpc/connect";
import { callerKey } from "../services/caller.js";
import { peerKey } from "./peer.js";

/** Options of `createStreamLimitInterceptor`. */
export interface StreamLimitOptions {
  /** Most streams one identity (or, without one, one address) may have open at once. */
  perIdentity: number;
  /** Most streams open at once on this server, both transports together. */
  total: number;
  /** Called for every refused stream (metrics, logs). */
  onLimited?: (client: string, scope: "identity" | "total") => void;
}

/** Releases `release` once, when `stream` ends however it ends, or when the call's signal aborts. */
async function* releasing<T>(stream: AsyncIterable<T>, release: () => void): AsyncGenerator<T> {
  try {
    yield* stream;
  } finally {
    release();
  }
}

/**
 * Caps the server-streaming calls (watch streams) open at once, per identity and in total, on both
 * transports: a stream over a cap is refused with RESOURCE_EXHAUSTED before it holds anything. A stream
 * counts from the call until it ends, is cancelled, or its connection goes away.
 */
export function createStreamLimitInterceptor(options: StreamLimitOptions): Interceptor {
  const open = new Map<string, number>();
  let total = 0;
  return (next) => async (req) => {
    if (!req.stream) return next(req);
    const identity = req.contextValues.get(callerKey)?.identity;
    const client = identity ?? `address ${req.contextValues.get(peerKey).address}`;
    const mine = open.get(client) ?? 0;
    if (mine >= options.perIdentity) {
      options.onLimited?.(client, "identity");
      throw new ConnectError(
        `${identity === undefined ? client : `identity "${identity}"`} has ${mine} streams open; the limit is ${options.perIdentity} per client (--max-streams-per-identity): end some before opening more`,
        Code.ResourceExhausted,
      );
    }
    if (total >= options.total) {
      options.onLimited?.(client, "total");
      throw new ConnectError(
        `the server has ${total} streams open, its limit (--max-streams); retry later or on another replica`,
        Code.ResourceExhausted,
      );
    }
    open.set(client, mine + 1);
    total++;
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      req.signal.removeEventListener("abort", release);
      total--;
      const left = (open.get(client) ?? 1) - 1;
      if (left === 0) open.delete(client);
      else open.set(client, left);
    };
    // A client that goes away before the first message is pulled never runs the stream's `finally`.
    req.signal.addEventListener("abort", release, { once: true });
    try {
      const res = await next(req);
      if (!res.stream) {
        release();
        return res;
      }
      return { ...res, message: releasing(res.message, release) } as StreamResponse;
    } catch (err) {
      release();
      throw err;
    }
  };
}
