import { describe, expect, it } from "vitest";
import type { Leases } from "./leases.js";

/**
 * The behaviour every Leases adapter must have. Call it from the adapter's test file with a factory that
 * makes a fresh, empty store; `advance` moves the adapter's notion of time (a manual clock for the memory
 * adapter, a real wait for Redis).
 */
export function leasesContract(
  name: string,
  make: () => Promise<{ leases: Leases; advance: (ms: number) => Promise<void> }>,
): void {
  describe(`Leases contract: ${name}`, () => {
    it("gives a key to one holder at a time, until the lease lapses", async () => {
      const { leases, advance } = await make();
      expect(await leases.acquire("k", 1_000)).toBeTypeOf("string");
      expect(await leases.acquire("k", 1_000)).toBeUndefined();
      expect(await leases.acquire("other", 1_000)).toBeTypeOf("string");
      await advance(1_100);
      expect(await leases.acquire("k", 1_000)).toBeTypeOf("string");
      await leases.close();
    });

    it("is given back only by its holder", async () => {
      const { leases, advance } = await make();
      const first = await leases.acquire("k", 1_000);
      await leases.release("k", "someone-else");
      expect(await leases.acquire("k", 1_000)).toBeUndefined();
      await leases.release("k", first as string);
      const second = await leases.acquire("k", 1_000);
      expect(second).toBeTypeOf("string");
      await advance(1_100);
      const third = await leases.acquire("k", 60_000);
      // The first holder's late release must not free the lease the third holder now has.
      await leases.release("k", second as string);
      expect(third).toBeTypeOf("string");
      expect(await leases.acquire("k", 60_000)).toBeUndefined();
      await leases.close();
    });

    it("lets exactly one of many concurrent callers take it", async () => {
      const { leases } = await make();
      const results = await Promise.all(Array.from({ length: 20 }, () => leases.acquire("race", 60_000)));
      expect(results.filter((r) => r !== undefined)).toHaveLength(1);
      await leases.close();
    });
  });
}
