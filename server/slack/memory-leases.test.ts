import { createManualClock } from "../domain/clock.js";
import { leasesContract } from "./leases.contract.js";
import { createMemoryLeases } from "./memory-leases.js";

leasesContract("memory", async () => {
  const clock = createManualClock();
  return { leases: createMemoryLeases(clock), advance: async (ms) => clock.advance(ms) };
});
