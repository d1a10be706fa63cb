import { describe, expect, it } from "vitest";
import { createManualClock } from "../domain/clock.js";
import { ValidationError } from "../domain/errors.js";
import { applyParamsEdit } from "../domain/governance.js";
import type { OverrideRules } from "../domain/types.js";
import { createStaticPolicyHolder } from "../policy/policy-holder.js";
import { createApprovalOperations } from "../services/approval-operations.js";
import type { ApprovalStore } from "../store/approval-store.js";
import { createMemoryApprovalStore } from "../store/memory-approval-store.js";
import { createMetrics, noPolicyAction, otherAction, overrideRejectionReason } from "./metrics.js";
import { parsePrometheusText } from "./prometheus-text.js";

const policy = `
version: 1
defaults: { channel: C0, timeout: 10m, unknown_action: deny, super_approvers: [UADMIN] }
policies:
  - { name: any, match: "app.*", approvers: { users: [U1] }, timeout: 60s }
`;

const input = (action: string) => ({
  action,
  title: "t",
  justification: "",
  params: {},
  idempotencyKey: "",
  onBehalfOf: "",
  origin: { repo: "", branch: "", pullRequest: "", runId: "", links: [] },
  overrides: {},
  rerequestOf: "",
});

function setup(options: { maxActions?: number; store?: ApprovalStore } = {}) {
  const clock = createManualClock();
  const metrics = createMetrics({ clock, processMetrics: false, ...options });
  const store = options.store ?? createMemoryApprovalStore();
  metrics.observeStore(store);
  const operations = createApprovalOperations({
    store,
    policies: createStaticPolicyHolder(policy),
    clock,
    listeners: [metrics.listener],
  });
  const scrape = async () => parsePrometheusText((await metrics.render()).text);
  return { clock, metrics, operations, scrape };
}

describe("metrics", () => {
  it("bounds the action label: unknown actions and actions past the limit share one value each", async () => {
    const { operations, scrape } = setup({ maxActions: 2 });
    for (const action of ["app.a", "app.b", "app.c", "app.d", "app.a", "nothing.matches"])
      await operations.create(input(action), "ci");
    const page = await scrape();
    const created = (action: string) => page.value("countersign_approvals_created_total", { action });
    expect([created("app.a"), created("app.b"), created(otherAction), created(noPolicyAction)]).toEqual([
      2, 1, 2, 1,
    ]);
    expect(page.value("countersign_decisions_total", { action: noPolicyAction, outcome: "denied" })).toBe(1);
  });

  it("counts pending approvals that are overdue when no scheduler expires them", async () => {
    const { clock, operations, scrape } = setup();
    await operations.create(input("app.a"), "ci");
    await operations.create(input("app.a"), "ci");
    clock.advance(60_000 + 29_000);
    let page = await scrape();
    expect(page.value("countersign_approvals_overdue")).toBe(0);
    expect(page.value("countersign_approvals_pending", { action: "app.a" })).toBe(2);
    clock.advance(2_000);
    page = await scrape();
    expect(page.value("countersign_approvals_overdue")).toBe(2);
    expect(page.value("countersign_approvals_oldest_pending_age_seconds")).toBe(91);
  });

  it("reports a store that does not answer as down, without the gauges it could not read", async () => {
    const inner = createMemoryApprovalStore();
    let down = false;
    const store: ApprovalStore = {
      ...inner,
      ping: () => (down ? Promise.reject(new Error("ECONNREFUSED")) : Promise.resolve()),
    };
    const { operations, scrape } = setup({ store });
    await operations.create(input("app.a"), "ci");
    expect((await scrape()).value("countersign_store_up")).toBe(1);
    down = true;
    const page = await scrape();
    expect(page.value("countersign_store_up")).toBe(0);
    expect(page.samples.some((s) => s.name === "countersign_approvals_pending")).toBe(false);
  });

  it("classifies rejected edits by the governance rule that refused them", () => {
    const rules: OverrideRules = {
      keys: ["version", "region"],
      maxKeys: 1,
      maxDiffBytes: 8,
      schema: { type: "object", properties: { version: { type: "string", pattern: "^v[0-9]+$" } } },
      requestKeys: [],
    };
    const reason = (edited: Record<string, string>) => {
      try {
        applyParamsEdit(
          { version: "v1", region: "eu" },
          { version: "v1", region: "eu", ...edited },
          rules,
          "U1",
          0,
        );
      } catch (err) {
        if (err instanceof ValidationError) return overrideRejectionReason(err.violations);
      }
      return "accepted";
    };
    expect(reason({ owner: "x" })).toBe("not_allowed");
    expect(reason({ version: "v2", region: "us" })).toBe("too_many_keys");
    expect(reason({ region: "a-long-region-name" })).toBe("diff_too_large");
    expect(reason({ version: "two" })).toBe("schema");
    expect(reason({ version: "v2" })).toBe("accepted");
    expect(
      overrideRejectionReason([
        { field: "edited_params", description: "this action's policy does not allow edits" },
      ]),
    ).toBe("not_allowed");
  });

  it("exposes what the Slack gateway reports: calls, 429s, retries and its queue", async () => {
    const { metrics, scrape } = setup();
    metrics.slack.apiCall("chat.postMessage", "ok");
    metrics.slack.apiCall("chat.postMessage", "rate_limited");
    metrics.slack.apiCall("chat.update", "ambiguous");
    metrics.slack.retry("chat.postMessage");
    metrics.slack.queue(7, 12.5);
    metrics.security("replay");
    const page = await scrape();
    expect(page.value("countersign_slack_api_calls_total", { method: "chat.postMessage" })).toBe(2);
    expect(page.value("countersign_slack_api_calls_total", { result: "ambiguous" })).toBe(1);
    expect(page.value("countersign_slack_rate_limited_total", { method: "chat.postMessage" })).toBe(1);
    expect(page.value("countersign_slack_retries_total")).toBe(1);
    expect(page.value("countersign_slack_queue_depth")).toBe(7);
    expect(page.value("countersign_slack_queue_oldest_age_seconds")).toBe(12.5);
    expect(page.value("countersign_security_events_total", { type: "replay" })).toBe(1);
  });

  it("counts reminders and escalations by action", async () => {
    const { metrics, operations, scrape } = setup();
    const { approval } = await operations.create(input("app.a"), "ci");
    metrics.reminder(approval);
    metrics.reminder(approval);
    metrics.escalation(approval);
    const page = await scrape();
    expect(page.value("countersign_reminders_total", { action: "app.a" })).toBe(2);
    expect(page.value("countersign_escalations_total", { action: "app.a" })).toBe(1);
  });
});
