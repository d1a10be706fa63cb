import { describe, expect, it } from "vitest";
import { createManualClock } from "../domain/clock.js";
import { FailedPreconditionError, UnavailableError } from "../domain/errors.js";
import type { CreateInput, VoteInput } from "../domain/lifecycle.js";
import { createStaticPolicyHolder } from "../policy/policy-holder.js";
import type { ApprovalStore } from "../store/approval-store.js";
import { createMemoryApprovalStore } from "../store/memory-approval-store.js";
import type { ApprovalEvent } from "./approval-events.js";
import { createApprovalOperations } from "./approval-operations.js";

const minute = 60_000;
const policy = `
version: 1
defaults: { channel: C0, timeout: 10m, unknown_action: deny }
policies:
  - name: deploy
    match: "deploy.*"
    approvers: { users: [U1, U2, U3] }
    required_approvals: 1
`;

function request(action = "deploy.api"): CreateInput {
  return {
    action,
    title: "Deploy",
    justification: "",
    params: { version: "v1" },
    idempotencyKey: "",
    onBehalfOf: "",
    origin: { repo: "", branch: "", pullRequest: "", runId: "", links: [] },
    overrides: {},
    rerequestOf: "",
  };
}

function ballot(approver: string, interactionId: string): VoteInput {
  return {
    approver,
    approverGroups: [],
    decision: "approve",
    reason: "",
    interactionId,
    submittedBy: "gateway",
  };
}

/** `replicas` operations sharing one store and one clock, each reporting its events to `events`. */
function setUp(replicas = 1) {
  const clock = createManualClock(Date.UTC(2026, 0, 1));
  const store = createMemoryApprovalStore({ now: clock.now });
  const policies = createStaticPolicyHolder(policy, { clock });
  const events: ApprovalEvent[] = [];
  const ops = Array.from({ length: replicas }, () =>
    createApprovalOperations({ store, policies, clock, listeners: [(e) => events.push(e)] }),
  );
  return { clock, store, events, ops, first: ops[0] as (typeof ops)[number] };
}

async function refusal(call: Promise<unknown>): Promise<unknown> {
  return call.then(
    () => undefined,
    (err: unknown) => err,
  );
}

describe("approvals past their deadline", () => {
  it("refuses a vote after the deadline and stores the expiry, before the scheduler ran", async () => {
    const { clock, first, events } = setUp();
    const { approval } = await first.create(request(), "ci");
    clock.set(approval.expireTime);

    const err = await refusal(first.vote(approval.id, ballot("U1", "click-1")));
    expect(err).toBeInstanceOf(FailedPreconditionError);
    expect((err as Error).message).toBe(
      `approval ${approval.id} expired at ${new Date(approval.expireTime).toISOString()}; ` +
        "nothing done after its deadline counts (request it again)",
    );
    const stored = await first.get(approval.id);
    expect(stored).toMatchObject({ state: "expired", decidedBy: "system", votes: [], version: 2 });
    expect(events.filter((e) => e.type === "terminal").map((e) => e.approval.state)).toEqual(["expired"]);
    expect(events.filter((e) => e.type === "refused")).toHaveLength(1);
    // The scheduler finds nothing left to do.
    expect((await first.expire(approval.id)).changed).toBe(false);
  });

  it("refuses a cancel and an admin resolve after the deadline the same way", async () => {
    const { clock, first } = setUp();
    const a = (await first.create(request(), "ci")).approval;
    const b = (await first.create(request(), "ci")).approval;
    clock.advance(10 * minute);
    expect(await refusal(first.cancel(a.id, "ci", ""))).toBeInstanceOf(FailedPreconditionError);
    expect(
      await refusal(
        first.resolve(b.id, { name: "admin", certificate: "", tokenHolder: "admin" }, "approve", "x"),
      ),
    ).toBeInstanceOf(FailedPreconditionError);
    expect((await first.get(a.id)).state).toBe("expired");
    expect((await first.get(b.id)).state).toBe("expired");
  });

  it("shows a pending approval past its deadline as expired on get, list and watch (and stores it)", async () => {
    const { clock, first, store, events } = setUp();
    const a = (await first.create(request(), "ci")).approval;
    const b = (await first.create(request(), "ci")).approval;
    const c = (await first.create(request(), "ci")).approval;
    clock.advance(10 * minute);
    // Stored still pending: nobody has expired them yet.
    expect((await store.get(a.id))?.state).toBe("pending");

    expect((await first.get(a.id)).state).toBe("expired");
    const all = await first.list({ pageSize: 10 });
    expect(all.approvals.map((x) => [x.id, x.state])).toEqual([
      [c.id, "expired"],
      [b.id, "expired"],
      [a.id, "expired"],
    ]);
    expect((await first.list({ pageSize: 10, state: "pending" })).approvals).toEqual([]);

    const d = (await first.create(request(), "ci")).approval;
    const watched = [];
    const controller = new AbortController();
    for await (const event of first.watch(d.id, { signal: controller.signal, heartbeatMs: 5 })) {
      watched.push(event);
      // The clock passes the deadline while the stream is open: the next message is the expiry.
      if (watched.length === 1) clock.advance(10 * minute);
      if (watched.length > 5) break;
    }
    expect(watched.map((e) => [e.approval.state, e.heartbeat])).toEqual([
      ["pending", false],
      ["expired", false],
    ]);
    for (const id of [a.id, b.id, c.id, d.id]) expect((await store.get(id))?.state).toBe("expired");
    const expiries = events.filter((e) => e.type === "terminal" && e.approval.state === "expired");
    expect(expiries.map((e) => e.approval.id).sort()).toEqual([a.id, b.id, c.id, d.id].sort());
  });

  it("expires once when votes, reads and schedulers on several replicas race at the deadline", async () => {
    const { clock, ops, events, store } = setUp(3);
    const ids: string[] = [];
    for (let i = 0; i < 20; i++)
      ids.push((await (ops[i % 3] ?? ops[0])?.create(request(), "ci"))?.approval.id ?? "");
    clock.advance(10 * minute);
    const outcomes = await Promise.allSettled(
      ids.flatMap((id, i) =>
        ops.flatMap((op, r) => [
          op.vote(id, ballot(`U${r + 1}`, `click-${i}-${r}`)),
          op.expire(id),
          op.get(id),
        ]),
      ),
    );
    const votes = outcomes.filter((_, i) => i % 3 === 0);
    expect(votes.every((o) => o.status === "rejected" && o.reason instanceof FailedPreconditionError)).toBe(
      true,
    );
    for (const id of ids) {
      const stored = await store.get(id);
      expect(stored).toMatchObject({ state: "expired", version: 2, votes: [] });
      expect(events.filter((e) => e.type === "terminal" && e.approval.id === id)).toHaveLength(1);
    }
    expect(events.filter((e) => e.type === "vote")).toEqual([]);
  });
});

describe("writes answered UNAVAILABLE that the store applied anyway", () => {
  /** A store whose next compare-and-set fails with UNAVAILABLE and is applied `when` (as Redis does). */
  function unreliable(when: "before the failure" | "after the failure") {
    const clock = createManualClock(Date.UTC(2026, 0, 1));
    const inner = createMemoryApprovalStore({ now: clock.now });
    let applied: Promise<unknown> = Promise.resolve();
    let failNext = false;
    const store: ApprovalStore = {
      ...inner,
      async compareAndSet(next, expectedVersion) {
        if (!failNext) return inner.compareAndSet(next, expectedVersion);
        failNext = false;
        if (when === "before the failure") await inner.compareAndSet(next, expectedVersion);
        else
          applied = new Promise((resolve) => setTimeout(resolve, 5)).then(() =>
            inner.compareAndSet(next, expectedVersion),
          );
        throw new UnavailableError("the approval store is unavailable (Command timed out)");
      },
    };
    const events: ApprovalEvent[] = [];
    const policies = createStaticPolicyHolder(policy, { clock });
    const ops = createApprovalOperations({ store, policies, clock, listeners: [(e) => events.push(e)] });
    return { ops, events, failNextWrite: () => (failNext = true), applied: () => applied };
  }

  for (const when of ["before the failure", "after the failure"] as const) {
    it(`reports a vote applied ${when} exactly once, and a retry returns the stored outcome`, async () => {
      const { ops, events, failNextWrite, applied } = unreliable(when);
      const { approval } = await ops.create(request(), "ci");
      failNextWrite();
      expect(await refusal(ops.vote(approval.id, ballot("U1", "click-1")))).toBeInstanceOf(UnavailableError);
      await applied();
      // Reported as soon as it is seen stored, before (and whether or not) anyone retries.
      expect(events.filter((e) => e.type === "terminal").map((e) => e.approval.state)).toEqual(["approved"]);
      const retried = await ops.vote(approval.id, ballot("U1", "click-1"));
      expect(retried).toMatchObject({ changed: false, approval: { state: "approved", version: 2 } });
      expect(events.filter((e) => e.type === "vote")).toHaveLength(1);
      expect(events.filter((e) => e.type === "terminal").map((e) => e.approval.state)).toEqual(["approved"]);
    });
  }
});
