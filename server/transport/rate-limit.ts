import { ConnectError, type Interceptor } from "@connectrpc/connect";
import type { Redis } from "ioredis";
import {
  BurstyRateLimiter,
  RateLimiterMemory,
  RateLimiterRedis,
  RateLimiterRes,
} from "rate-limiter-flexible";
import { ApprovalService } from "../../gen/countersign/v1/approval_service_pb.js";
import { ResourceExhaustedError } from "../domain/errors.js";
import { callerKey } from "../services/caller.js";
import { toConnectError } from "../services/errors.js";
import { peerKey } from "./peer.js";

/** How many creates a client may make. */
export interface CreateRateLimit {
  /** Sustained creates per second per client. */
  perSecond: number;
  /** Extra creates a client may burst over the sustained rate, per 10 s. */
  burst: number;
}

/** Something that consumes one token for a key, or rejects with a RateLimiterRes when none is left. */
export interface TokenBucket {
  consume(key: string): Promise<unknown>;
}

/**
 * The create rate limiter: a sustained rate plus a burst allowance per client (rate-limiter-flexible's
 * bursty limiter, which behaves like a token bucket). With a Redis client the counters are shared by
 * every replica (a memory limiter insures against Redis errors); without, they live in this process.
 */
export function createTokenBucket(limit: CreateRateLimit, redis?: Redis): TokenBucket {
  const burstWindowSeconds = 10;
  if (redis === undefined) {
    return new BurstyRateLimiter(
      new RateLimiterMemory({ keyPrefix: "create", points: limit.perSecond, duration: 1 }),
      new RateLimiterMemory({ keyPrefix: "create-burst", points: limit.burst, duration: burstWindowSeconds }),
    );
  }
  const shared = (keyPrefix: string, points: number, duration: number) =>
    new RateLimiterRedis({
      storeClient: redis,
      keyPrefix: `countersign:ratelimit:${keyPrefix}`,
      points,
      duration,
      insuranceLimiter: new RateLimiterMemory({ keyPrefix: `${keyPrefix}-insurance`, points, duration }),
    });
  return new BurstyRateLimiter(
    shared("create", limit.perSecond, 1),
    shared("create-burst", limit.burst, burstWindowSeconds),
  );
}

/** Options of `createRateLimitInterceptor`. */
export interface RateLimitInterceptorOptions {
  bucket: TokenBucket;
  /**
   * Addresses of proxies whose `x-forwarded-for` header is trusted. A client behind one is keyed by the
   * address the proxy reports; from anyone else the header is ignored.
   */
  trustedProxies: readonly string[];
  /** Called with the client key for every refused create (security event). */
  onLimited?: (clientKey: string, address: string) => void;
  /** Called when the limiter itself fails; the create is then allowed. */
  onError?: (err: unknown) => void;
}

/** The address a call comes from, honouring `x-forwarded-for` only from trusted proxies. */
export function clientAddress(
  peerAddress: string,
  forwardedFor: string | null,
  trusted: ReadonlySet<string>,
): string {
  if (forwardedFor === null || !trusted.has(peerAddress)) return peerAddress;
  const hops = forwardedFor
    .split(",")
    .map((h) => h.trim())
    .filter((h) => h !== "");
  // The right-most address not added by one of our proxies is the client.
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = hops[i] as string;
    if (!trusted.has(hop)) return hop;
  }
  return hops[0] ?? peerAddress;
}

/**
 * Limits `CreateApproval` per client: by certificate identity when there is one, else by peer address.
 * A refused create gets RESOURCE_EXHAUSTED with a `google.rpc.RetryInfo` delay.
 */
export function createRateLimitInterceptor(options: RateLimitInterceptorOptions): Interceptor {
  const trusted = new Set(options.trustedProxies);
  return (next) => async (req) => {
    if (req.service.typeName !== ApprovalService.typeName || req.method.name !== "CreateApproval")
      return next(req);
    const identity = req.contextValues.get(callerKey)?.identity;
    const key =
      identity !== undefined
        ? `id:${identity}`
        : `ip:${clientAddress(req.contextValues.get(peerKey).address, req.header.get("x-forwarded-for"), trusted)}`;
    try {
      await options.bucket.consume(key);
    } catch (err) {
      if (err instanceof RateLimiterRes) {
        options.onLimited?.(key, req.contextValues.get(peerKey).address);
        // One number everywhere: whole seconds, rounded up, in the message, RetryInfo and Retry-After.
        const retryAfterMs = Math.max(1, Math.ceil(err.msBeforeNext / 1000)) * 1000;
        throw toConnectError(
          new ResourceExhaustedError(
            `too many approval requests from this client; retry in ${retryAfterMs / 1000} s`,
            retryAfterMs,
          ),
        );
      }
      if (err instanceof ConnectError) throw err;
      options.onError?.(err);
    }
    return next(req);
  };
}
