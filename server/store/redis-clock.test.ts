import { describe, expect, it } from "vitest";
import { createManualClock } from "../domain/clock.js";
import { createRedisTimeClock } from "./redis-clock.js";

describe("createRedisTimeClock", () => {
  it("is the host clock until measured, then the host clock minus the measured skew", () => {
    const host = createManualClock(1_000_000);
    const clock = createRedisTimeClock(host);
    expect(clock.now()).toBe(1_000_000);
    clock.observe({ skewMs: 5_000, roundTripMs: 2 });
    expect(clock.now()).toBe(995_000);
    host.advance(250);
    expect(clock.now()).toBe(995_250);
    clock.observe({ skewMs: -3_000, roundTripMs: 2 });
    expect(clock.now()).toBe(1_003_250);
  });

  it("ignores measurement noise and measurements too uncertain to correct by", () => {
    const clock = createRedisTimeClock(createManualClock(1_000_000));
    clock.observe({ skewMs: 5_000, roundTripMs: 2 });
    clock.observe({ skewMs: 5_010, roundTripMs: 2 });
    expect(clock.now()).toBe(995_000);
    clock.observe({ skewMs: 60_000, roundTripMs: 1_500 });
    expect(clock.now()).toBe(995_000);
  });
});
