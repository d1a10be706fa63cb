import { describe, expect, it } from "vitest";
import { formatDuration, parseDuration } from "./duration.js";

describe("parseDuration", () => {
  it.each([
    ["500ms", 500],
    ["90s", 90_000],
    ["10m", 600_000],
    ["1h30m", 5_400_000],
    ["2d", 172_800_000],
    ["1d2h3m4s5ms", 93_784_005],
    ["0s", 0],
    ["30m1h", 5_400_000],
  ])("parses %s", (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it.each(["", "10", "m", "1.5h", "-5m", "10 m", " 10m", "10M", "1w", "1h30", "ms"])("rejects %j", (text) => {
    expect(() => parseDuration(text)).toThrow(/is not a duration such as/);
  });

  it("rejects a duration too large to count in milliseconds", () => {
    expect(() => parseDuration("999999999999999999d")).toThrow(/too long/);
  });
});

describe("formatDuration", () => {
  it.each([
    [90_000, "1m30s"],
    [500, "500ms"],
    [0, "0s"],
    [600_000, "10m"],
    [5_400_000, "1h30m"],
    [7 * 86_400_000, "7d"],
    [93_784_005, "1d2h3m4s5ms"],
  ])("formats %d as %s", (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
  });

  it("round-trips with parseDuration", () => {
    for (const ms of [1, 999, 1_000, 59_999, 60_000, 3_599_999, 86_400_001, 123_456_789]) {
      expect(parseDuration(formatDuration(ms))).toBe(ms);
    }
  });

  it.each([-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY])("rejects %d", (ms) => {
    expect(() => formatDuration(ms)).toThrow(RangeError);
  });
});
