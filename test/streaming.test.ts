import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Decision, State } from "../gen/countersign/v1/approval_pb.js";
import { createManualClock } from "../server/domain/clock.js";
import type { ApprovalStore } from "../server/store/approval-store.js";
import { createMemoryApprovalStore } from "../server/store/memory-approval-store.js";
import { createTestPki, type TestPki, testIdentities } from "./support/certs.js";
import { startTestServer, type TestServer } from "./support/test-server.js";
import { waitFor } from "./support/wait.js";

const approvers = Array.from({ length: 50 }, (_, i) => `U${i}`);
const policy = `
version: 1
defaults: { channel: C0, timeout: 10m, unknown_action: deny }
policies:
  - name: contested
    match: "contested.*"
    approvers: { users: [${approvers.join(", ")}] }
    required_approvals: 3
    deny_threshold: 2
  - name: short
    match: "short.*"
    approvers: { users: [U1] }
    timeout: 60s
`;

/** A store that counts live change-feed subscriptions, to show watchers leak nothing. */
function countingStore(inner: ApprovalStore): ApprovalStore & { live(): number } {
  let live = 0;
  return {
    ...inner,
    live: () => live,
    subscribe(id, listener) {
      live++;
      const unsubscribe = inner.subscribe(id, listener);
      let done = false;
      return () => {
        if (done) return;
        done = true;
        live--;
        unsubscribe();
      };
    },
  };
}

let pki: TestPki;
let ts: TestServer;
const clock = createManualClock(Date.now());
const store = countingStore(createMemoryApprovalStore());

beforeAll(async () => {
  pki = createTestPki();
  ts = await startTestServer({
    pki,
    policy,
    clock,
    store,
    flags: { deciders: testIdentities.decider, heartbeatInterval: "200ms" },
  });
});
afterAll(async () => {
  await ts?.close();
});

describe("decisions under contention", () => {
  it("50 parallel decisions on each of 200 approvals: one terminal state each, seen by every watcher", async () => {
    const requester = ts.clients(pki.requester, "grpc").approvals;
    const deciders = [
      ts.clients(pki.decider, "grpc").approvals,
      ts.clients(pki.decider, "connect").approvals,
    ];
    const ids = await Promise.all(
      Array.from({ length: 200 }, async (_, i) => {
        const res = await requester.createApproval({ action: `contested.n${i}`, title: `contested ${i}` });
        return res.approval?.id ?? "";
      }),
    );
    const watched = ids.map(async (id, i) => {
      const watcher = (
        i % 2 === 0 ? requester : ts.clients(pki.requester, "connect").approvals
      ).watchApproval({ id });
      const states: State[] = [];
      for await (const msg of watcher) states.push(msg.approval?.state ?? State.UNSPECIFIED);
      return states;
    });
    const answers = await Promise.all(
      ids.map((id) =>
        Promise.all(
          approvers.map(async (approver, j) => {
            try {
              const res = await (deciders[j % 2] ?? requester).submitDecision({
                id,
                approver,
                decision: j % 3 === 0 ? Decision.DENY : Decision.APPROVE,
                interactionId: `${id}-${approver}`,
              });
              return res.approval?.state ?? State.UNSPECIFIED;
            } catch (err) {
              expect(ConnectError.from(err).code).toBe(Code.FailedPrecondition);
              return "late" as const;
            }
          }),
        ),
      ),
    );
    const finals = await Promise.all(watched);
    for (const [i, id] of ids.entries()) {
      const stored = await store.get(id);
      expect(stored?.state === "approved" || stored?.state === "denied").toBe(true);
      const terminal = stored?.state === "approved" ? State.APPROVED : State.DENIED;
      const terminalAnswers = (answers[i] ?? []).filter((s) => s !== "late" && s !== State.PENDING);
      expect(new Set(terminalAnswers)).toEqual(new Set([terminal]));
      expect(finals[i]?.at(-1)).toBe(terminal);
      expect(finals[i]?.filter((s) => s !== State.PENDING)).toEqual([terminal]);
      const decisive = stored?.rules.requiredApprovals ?? 0;
      const approvals = stored?.votes.filter((v) => v.decision === "approve").length ?? 0;
      const denials = stored?.votes.filter((v) => v.decision === "deny").length ?? 0;
      expect(
        terminal === State.APPROVED
          ? approvals === decisive && denials < 2
          : denials === 2 && approvals < decisive,
      ).toBe(true);
    }
    await waitFor(() => store.live() === 0, 5_000, "watch subscriptions released");
  });
});

describe("watch streams", () => {
  it("send heartbeats while idle and release everything when the client goes away", async () => {
    const requester = ts.clients(pki.requester, "grpc").approvals;
    const id =
      (await requester.createApproval({ action: "contested.idle", title: "idle" })).approval?.id ?? "";
    for (const protocol of ["grpc", "connect", "grpc-web"] as const) {
      const abort = new AbortController();
      const stream = ts
        .clients(pki.requester, protocol)
        .approvals.watchApproval({ id }, { signal: abort.signal });
      const iterator = stream[Symbol.asyncIterator]();
      const first = await iterator.next();
      expect(first.value?.heartbeat).toBe(false);
      const second = await iterator.next();
      expect(second.value?.heartbeat).toBe(true);
      expect(second.value?.approval?.id).toBe(id);
      expect(store.live()).toBe(1);
      abort.abort();
      await iterator.next().catch(() => undefined);
      await waitFor(() => store.live() === 0, 5_000, `${protocol} watch released after disconnect`);
    }
  });

  it("expires an approval once its deadline passes (injected clock) and tells the watcher", async () => {
    const requester = ts.clients(pki.requester, "connect").approvals;
    const created = await requester.createApproval({ action: "short.one", title: "short" });
    const id = created.approval?.id ?? "";
    const iterator = requester.watchApproval({ id })[Symbol.asyncIterator]();
    expect((await iterator.next()).value?.approval?.state).toBe(State.PENDING);
    clock.advance(59_000);
    const stillPending = await requester.getApproval({ id });
    expect(stillPending.approval?.state).toBe(State.PENDING);
    clock.advance(1_000);
    let last = await iterator.next();
    while (last.value?.heartbeat) last = await iterator.next();
    expect(last.value?.approval?.state).toBe(State.EXPIRED);
    expect(last.value?.approval?.decidedBy).toBe("system");
    expect((await iterator.next()).done).toBe(true);
  });
});
