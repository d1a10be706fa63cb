import type { Redis } from "ioredis";
import type { Clock } from "../domain/clock.js";
import { toStoreError } from "./redis-connection.js";

/** One comparison of a local clock with Redis's. */
export interface ClockSkew {
  /** Local time minus Redis time, in milliseconds: positive when the local clock is ahead. */
  skewMs: number;
  /** The round trip of the `TIME` command, in milliseconds; the skew is uncertain by half of it. */
  roundTripMs: number;
}

/**
 * Compares `local` with Redis's clock (`TIME`), the one clock every replica shares. Redis read its clock
 * somewhere in the round trip, so it is compared with the local time at the round trip's midpoint.
 * @throws UnavailableError when Redis does not answer
 */
export async function measureClockSkew(redis: Redis, local: Clock): Promise<ClockSkew> {
  const sent = local.now();
  const started = performance.now();
  let time: (number | string)[];
  try {
    time = await redis.time();
  } catch (err) {
    throw toStoreError(err);
  }
  const roundTripMs = performance.now() - started;
  const [seconds, micros] = time.map(Number);
  const redisMs = (seconds ?? Number.NaN) * 1000 + (micros ?? Number.NaN) / 1000;
  return { skewMs: sent + roundTripMs / 2 - redisMs, roundTripMs };
}

/** A clock that keeps to Redis's time, corrected by each measurement of the host clock's skew. */
export interface RedisTimeClock extends Clock {
  /** Takes a new measurement of the host clock against Redis's. */
  observe(measured: ClockSkew): void;
}

/** Measurements with a longer round trip are too uncertain to correct the clock by. */
const maxCorrectionRoundTripMs = 1_000;
/** Smaller changes of the measured skew are noise; ignoring them keeps the clock from jittering back. */
const correctionStepMs = 25;

/**
 * Redis's time, read as the host clock minus its last measured skew, so that every replica stamps
 * and enforces deadlines by the same clock (within half a round trip) whatever its host clock says.
 * `now()` stays synchronous and costs no round trip; until the first measurement it is the host clock.
 */
export function createRedisTimeClock(host: Clock): RedisTimeClock {
  let skewMs = 0;
  return {
    now: () => host.now() - skewMs,
    observe(measured) {
      if (measured.roundTripMs > maxCorrectionRoundTripMs) return;
      if (Math.abs(measured.skewMs - skewMs) >= correctionStepMs) skewMs = Math.round(measured.skewMs);
    },
  };
}
