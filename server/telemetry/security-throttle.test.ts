import { describe, expect, it } from "vitest";
import { createManualClock } from "../domain/clock.js";
import type { SecuritySummary } from "./security-events.js";
import { createSecurityThrottle } from "./security-throttle.js";

const hour = 3_600_000;

function throttle(maxPeers?: number) {
  const clock = createManualClock();
  const summaries: SecuritySummary[] = [];
  const t = createSecurityThrottle({
    clock,
    intervalMs: hour,
    ...(maxPeers === undefined ? {} : { maxPeers }),
    onSummary: (s) => summaries.push(s),
  });
  return { clock, summaries, t };
}

describe("security throttle", () => {
  it("writes the first event of a type and peer in full and summarises the rest once per interval", () => {
    const { clock, summaries, t } = throttle();
    const peer = { address: "10.0.0.9" };
    const start = clock.now();
    const admitted = Array.from({ length: 500 }, () => t.admit("unauthorized", peer));
    expect(admitted.filter(Boolean)).toHaveLength(1);
    expect(admitted[0]).toBe(true);
    clock.advance(60_000);
    t.flush();
    expect(summaries).toEqual([{ type: "unauthorized", peer, suppressed: 499, sinceMs: start }]);

    // The flood goes on: the next interval is summarised, not written in full.
    for (let i = 0; i < 7; i++) expect(t.admit("unauthorized", peer)).toBe(false);
    clock.advance(60_000);
    t.flush();
    expect(summaries.at(-1)).toEqual({ type: "unauthorized", peer, suppressed: 7, sinceMs: start + 60_000 });

    // A quiet interval forgets the peer: its next event is written in full again.
    t.flush();
    expect(summaries).toHaveLength(2);
    t.flush();
    expect(t.admit("unauthorized", peer)).toBe(true);
    t.close();
  });

  it("keeps types, addresses and identities apart", () => {
    const { summaries, t } = throttle();
    expect(t.admit("unauthorized", { address: "10.0.0.1" })).toBe(true);
    expect(t.admit("unauthorized", { address: "10.0.0.2" })).toBe(true);
    expect(t.admit("unauthorized", { address: "10.0.0.1", identity: "spiffe://x/a" })).toBe(true);
    expect(t.admit("bad_admin_token", { address: "10.0.0.1" })).toBe(true);
    expect(t.admit("unauthorized", { address: "10.0.0.1" })).toBe(false);
    t.flush();
    expect(summaries.map((s) => [s.type, s.peer.address, s.suppressed])).toEqual([
      ["unauthorized", "10.0.0.1", 1],
    ]);
    t.close();
  });

  it("reports what is pending at close, and writes everything in full after", () => {
    const { summaries, t } = throttle();
    t.admit("bad_signature", { address: "slack" });
    t.admit("bad_signature", { address: "slack" });
    t.close();
    expect(summaries.map((s) => s.suppressed)).toEqual([1]);
    expect(t.admit("bad_signature", { address: "slack" })).toBe(true);
  });

  it("shares one entry among the peers beyond the cap, so many addresses stay bounded", () => {
    const { summaries, t } = throttle(3);
    const written = Array.from({ length: 1000 }, (_, i) =>
      t.admit("unauthorized", { address: `10.0.${i >> 8}.${i & 255}` }),
    ).filter(Boolean).length;
    // Three peers, then one shared `*` entry.
    expect(written).toBe(4);
    t.close();
    expect(summaries).toEqual([
      { type: "unauthorized", peer: { address: "*" }, suppressed: 996, sinceMs: expect.any(Number) },
    ]);
  });
});
