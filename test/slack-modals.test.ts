import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Decision, State } from "../gen/countersign/v1/approval_pb.js";
import { canonicalSha256 } from "../server/domain/hashing.js";
import type { ApprovalStore } from "../server/store/approval-store.js";
import { createMemoryApprovalStore } from "../server/store/memory-approval-store.js";
import { type SlackTestbed, startSlackTestbed } from "./support/fake-slack.js";
import { viewSubmissionPayload } from "./support/slack-signing.js";

/** A store whose compare-and-set can be held, to play a slow store. */
function holdableStore(): { store: ApprovalStore; hold(): void; release(): void } {
  const inner = createMemoryApprovalStore();
  let gate: Promise<void> | undefined;
  let open: (() => void) | undefined;
  return {
    store: {
      ...inner,
      async compareAndSet(next, expected) {
        await gate;
        return inner.compareAndSet(next, expected);
      },
    },
    hold() {
      gate = new Promise((resolve) => {
        open = resolve;
      });
    },
    release() {
      open?.();
      gate = undefined;
    },
  };
}

let bed: SlackTestbed;
const slowStore = holdableStore();

beforeAll(async () => {
  // A short budget keeps the "working on it" answer far from Slack's 3 s even on a loaded machine.
  bed = await startSlackTestbed({ store: slowStore.store, tuning: { ackBudgetMs: 1_000 } });
});
afterAll(async () => {
  slowStore.release();
  await bed?.close();
});

async function create(action: string, params: Record<string, string | number> = {}): Promise<string> {
  const { approvals } = bed.ts.clients(undefined, "connect");
  return (await approvals.createApproval({ action, title: `Modal ${action}`, params })).approval?.id ?? "";
}

async function approval(id: string) {
  const { approvals } = bed.ts.clients(undefined, "connect");
  return (await approvals.getApproval({ id })).approval;
}

/** Clicks a button that opens a modal; the modal Slack was asked to open. */
async function openModal(user: string, actionId: string, id: string): Promise<Record<string, unknown>> {
  const opened = bed.slack.callsTo("views.open").length;
  await bed.click(user, actionId, id);
  const call = await bed.slack.waitFor(() => bed.slack.callsTo("views.open")[opened], "views.open");
  return (call.response?.view ?? {}) as Record<string, unknown>;
}

/** Submits a modal as `user`; what the endpoint answered (parsed). */
async function submit(user: string, view: Record<string, unknown>, values: Record<string, string>) {
  const result = await bed.interact(viewSubmissionPayload({ user, view, values }));
  expect(result.status).toBe(200);
  return {
    ...result,
    json: result.body === "" ? undefined : (JSON.parse(result.body) as Record<string, unknown>),
  };
}

function inputs(
  view: Record<string, unknown>,
): { block: string; label: string; initial?: string; optional: boolean }[] {
  return (
    view.blocks as {
      type: string;
      block_id: string;
      label: { text: string };
      optional?: boolean;
      element: { initial_value?: string };
    }[]
  )
    .filter((b) => b.type === "input")
    .map((b) => ({
      block: b.block_id,
      label: b.label.text,
      optional: b.optional === true,
      ...(b.element.initial_value === undefined ? {} : { initial: b.element.initial_value }),
    }));
}

describe("the Deny modal", () => {
  it("asks for the reason the policy requires, shows the error by the field, and denies with it", async () => {
    const id = await create("deploy.staging", { service: "web", version: "v1" });
    const view = await openModal("U1", "countersign_deny", id);
    expect(view.callback_id).toBe("countersign_deny");
    expect(inputs(view)).toEqual([{ block: "reason", label: "Reason", optional: false }]);

    const empty = await submit("U1", view, { reason: "   " });
    expect(empty.json).toEqual({
      response_action: "errors",
      errors: { reason: 'policy "staging-deploy" requires a reason to deny' },
    });
    expect((await approval(id))?.state).toBe(State.PENDING);

    const done = await submit("U1", view, { reason: "freeze week" });
    expect(done.json).toBeUndefined();
    const denied = await approval(id);
    expect(denied?.state).toBe(State.DENIED);
    expect(denied?.reason).toBe("freeze week");
    await bed.waitForMessage(
      id,
      (m) => JSON.stringify(m.blocks).includes("freeze week"),
      "the reason on the message",
    );
  });

  it("denies without a reason when the policy does not require one", async () => {
    const id = await create("deploy.production");
    const view = await openModal("U2", "countersign_deny", id);
    expect(inputs(view)).toEqual([{ block: "reason", label: "Reason", optional: true }]);
    await submit("U2", view, {});
    expect((await approval(id))?.state).toBe(State.DENIED);
  });

  it("shows a refusal in the modal (not an approver) and changes nothing", async () => {
    const id = await create("deploy.production");
    const view = await openModal("U8", "countersign_deny", id);
    const answer = await submit("U8", view, { reason: "no" });
    expect(answer.json?.response_action).toBe("update");
    expect(JSON.stringify(answer.json)).toContain("U8 is not an approver of this action");
    expect((await approval(id))?.votes).toEqual([]);
  });
});

describe("the Approve with edits modal", () => {
  const params = { service: "web", version: "v1", replicas: 2 };

  it("offers only the keys the policy allows, prefilled, and applies an edit with a new params hash", async () => {
    const id = await create("deploy.staging", params);
    const view = await openModal("U1", "countersign_edit", id);
    expect(view.callback_id).toBe("countersign_edit");
    expect(inputs(view)).toEqual([
      { block: "param_0", label: "version", initial: "v1", optional: true },
      { block: "param_1", label: "replicas", initial: "2", optional: true },
      { block: "reason", label: "Reason", optional: true },
    ]);
    const answer = await submit("U1", view, { param_0: "v2", reason: "v1 is broken" });
    expect(answer.json).toBeUndefined();
    const approved = await approval(id);
    expect(approved?.state).toBe(State.APPROVED);
    expect(approved?.params).toEqual({ ...params, version: "v2" });
    expect(approved?.paramsSha256).toBe(canonicalSha256({ ...params, version: "v2" }));
    expect(approved?.edits[0]?.changes.map((c) => c.key)).toEqual(["version"]);
    expect(approved?.edits[0]?.paramsSha256Before).toBe(canonicalSha256(params));
    await bed.waitForMessage(
      id,
      (m) => JSON.stringify(m.blocks).includes('edited `version` `\\"v1\\"` → `\\"v2\\"`'),
      "the edit on the message",
    );
  });

  it("shows each governance rejection by its field and changes nothing", async () => {
    const id = await create("deploy.staging", params);
    const view = await openModal("U2", "countersign_edit", id);
    const cases: { name: string; values: Record<string, string>; errors: Record<string, string> }[] = [
      {
        name: "too many changed keys",
        values: { param_0: "v2", param_1: "3" },
        errors: { param_0: "edited_params: changes 2 keys; the policy allows at most 1" },
      },
      {
        name: "changed values too large",
        values: { param_0: "v12345678901234567890123456" },
        errors: { param_0: "edited_params: changed values are 29 bytes; the policy allows at most 24" },
      },
      {
        name: "a value the JSON Schema refuses",
        values: { param_0: "2.0" },
        errors: { param_0: 'must match pattern "^v[0-9]+$"' },
      },
      {
        name: "another value the JSON Schema refuses",
        values: { param_1: "50" },
        errors: { param_1: "must be <= 10" },
      },
      {
        name: "a value that is not JSON",
        values: { param_1: "lots" },
        errors: { param_1: 'is not a JSON value (e.g. 42, true, "text" or [1, 2])' },
      },
    ];
    for (const c of cases) {
      const answer = await submit("U2", view, c.values);
      expect([c.name, answer.json]).toEqual([c.name, { response_action: "errors", errors: c.errors }]);
    }
    const still = await approval(id);
    expect(still?.state).toBe(State.PENDING);
    expect(still?.votes).toEqual([]);
    expect(still?.params).toEqual(params);
  });
});

describe("acknowledging within 3 s", () => {
  it("acks a click at once while the store hangs, and records the vote when it recovers", async () => {
    const id = await create("deploy.production");
    await bed.waitForMessage(id, () => true, "the message");
    slowStore.hold();
    try {
      const click = await bed.click("U1", "countersign_approve", id);
      expect(click.status).toBe(200);
      expect(click.elapsedMs).toBeLessThan(3_000);
    } finally {
      slowStore.release();
    }
    await bed.waitForMessage(id, (m) => JSON.stringify(m.blocks).includes("<@U1> approved"), "the vote");
  });

  it("answers a modal submission in time while the store hangs, then shows the outcome in the modal", async () => {
    const id = await create("deploy.production");
    const view = await openModal("U3", "countersign_deny", id);
    slowStore.hold();
    let answer: Awaited<ReturnType<typeof submit>>;
    try {
      answer = await submit("U3", view, { reason: "slow" });
    } finally {
      slowStore.release();
    }
    expect(answer.elapsedMs).toBeLessThan(3_000);
    expect(answer.json?.response_action).toBe("update");
    expect(JSON.stringify(answer.json)).toContain("Recording your decision");
    const update = await bed.slack.waitFor(
      () => bed.slack.callsTo("views.update").find((c) => c.args.view_id === view.id),
      "the outcome in the modal",
    );
    expect(JSON.stringify(update.args.view)).toContain("Your decision was recorded.");
    expect((await approval(id))?.state).toBe(State.DENIED);
  });

  it("acks a Deny click at once while Slack hangs, and says the form could not open", async () => {
    const id = await create("deploy.production");
    await bed.waitForMessage(id, () => true, "the message");
    bed.slack.inject("views.open", { kind: "hang" }, 1);
    const click = await bed.click("U2", "countersign_deny", id);
    expect(click.status).toBe(200);
    expect(click.elapsedMs).toBeLessThan(3_000);
    await bed.slack.waitFor(
      () => bed.slack.ephemerals().find((e) => e.user === "U2" && e.text.includes("did not open the form")),
      "the explanation",
    );
    const { approvals } = bed.ts.clients(undefined, "connect");
    await approvals.submitDecision({ id, approver: "U2", decision: Decision.DENY });
  });
});
