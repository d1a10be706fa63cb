import { describe, expect, it } from "vitest";
import type { Approval } from "../domain/types.js";
import { approvalFactory, describeApprovalStoreContract } from "./approval-store.contract.js";
import { createMemoryApprovalStore } from "./memory-approval-store.js";

describeApprovalStoreContract("memory", async () => {
  const store = createMemoryApprovalStore();
  return { store, cleanup: () => store.close() };
});

describe("memory approval store", () => {
  it("isolates a throwing listener from the others and reports what it threw", async () => {
    const errors: unknown[] = [];
    const store = createMemoryApprovalStore({ onListenerError: (err) => errors.push(err) });
    const approval = approvalFactory()();
    const delivered: Approval[] = [];
    store.subscribe(approval.id, () => {
      throw new Error("listener failed");
    });
    store.subscribe(approval.id, (a) => delivered.push(a));
    store.subscribeAll((a) => delivered.push(a));

    const { approval: stored } = await store.create(approval);
    expect(delivered).toEqual([stored, stored]);
    expect(errors).toEqual([new Error("listener failed")]);
    await store.close();
  });
});
