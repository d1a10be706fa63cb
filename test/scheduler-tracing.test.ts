import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SpanStatusCode } from "@opentelemetry/api";
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { afterEach, describe, expect, it } from "vitest";
import { createArchiveWriter } from "../server/archive/archive-writer.js";
import { createManualClock } from "../server/domain/clock.js";
import { createStaticPolicyHolder } from "../server/policy/policy-holder.js";
import { createRetention } from "../server/scheduler/retention.js";
import { createScheduler } from "../server/scheduler/scheduler.js";
import { createApprovalOperations } from "../server/services/approval-operations.js";
import { createMemoryClaims } from "../server/store/claims.js";
import { createMemoryApprovalStore } from "../server/store/memory-approval-store.js";

const policy = `
version: 1
defaults: { channel: C0, timeout: 10m, unknown_action: deny, super_approvers: [UADMIN] }
policies:
  - { name: deploy, match: "deploy.*", approvers: { users: [U1] }, timeout: 60s }
`;

const input = {
  action: "deploy.prod",
  title: "Deploy",
  justification: "",
  params: {},
  idempotencyKey: "",
  onBehalfOf: "",
  origin: { repo: "", branch: "", pullRequest: "", runId: "", links: [] },
  overrides: {},
  rerequestOf: "",
};
const day = 24 * 3_600_000;

const exporter = new InMemorySpanExporter();
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
const tracer = provider.getTracer("countersign");
afterEach(() => exporter.reset());

function setup() {
  const clock = createManualClock(Date.UTC(2026, 2, 1));
  const store = createMemoryApprovalStore({ now: clock.now });
  const operations = createApprovalOperations({
    store,
    policies: createStaticPolicyHolder(policy),
    clock,
  });
  return { clock, store, operations };
}

const spansNamed = (name: string) => exporter.getFinishedSpans().filter((s) => s.name === name);

describe("scheduler spans", () => {
  it("makes each expiry run a `scheduler expire` span with the number it expired", async () => {
    const { clock, store, operations } = setup();
    const scheduler = createScheduler({ store, operations, clock, tracer });
    for (let i = 0; i < 3; i++) await operations.create({ ...input, idempotencyKey: `k${i}` }, "ci");
    expect(await scheduler.runOnce()).toBe(0);
    clock.advance(61_000);
    expect(await scheduler.runOnce()).toBe(3);
    expect(spansNamed("scheduler expire").map((s) => s.attributes["countersign.expired"])).toEqual([0, 3]);
    expect((await store.stats()).counts.expired).toBe(3);
  });

  it("makes each retention run a `scheduler retention` span with what it archived and purged", async () => {
    const { clock, store, operations } = setup();
    const created = await operations.create(input, "ci");
    await operations.cancel(created.approval.id, "ci", "not needed");
    const claims = createMemoryClaims(clock.now);
    const dir = mkdtempSync(join(tmpdir(), "countersign-archive-"));
    const retention = createRetention({
      store,
      clock,
      claims,
      retentionMs: 7 * day,
      archive: createArchiveWriter({ dir }),
      tracer,
    });
    clock.advance(7 * day + 60_000);
    expect(await retention.runOnce()).toEqual({ ran: true, archived: 1, purged: 1 });
    // Another replica's run in the same interval does nothing, and says so.
    expect(await retention.runOnce()).toEqual({ ran: false, archived: 0, purged: 0 });
    expect(spansNamed("scheduler retention").map((s) => s.attributes)).toEqual([
      { "countersign.retention.ran": true, "countersign.archived": 1, "countersign.purged": 1 },
      { "countersign.retention.ran": false, "countersign.archived": 0, "countersign.purged": 0 },
    ]);
  });

  it("ends a retention span whose archive write failed with an error status", async () => {
    const { clock, store, operations } = setup();
    const created = await operations.create(input, "ci");
    await operations.cancel(created.approval.id, "ci", "not needed");
    const notADirectory = join(mkdtempSync(join(tmpdir(), "countersign-archive-")), "file");
    writeFileSync(notADirectory, "");
    const retention = createRetention({
      store,
      clock,
      claims: createMemoryClaims(clock.now),
      retentionMs: 7 * day,
      archive: createArchiveWriter({ dir: notADirectory }),
      tracer,
    });
    clock.advance(7 * day + 60_000);
    await expect(retention.runOnce()).rejects.toThrow(/ENOTDIR|EEXIST/);
    const [span] = spansNamed("scheduler retention");
    expect(span?.status.code).toBe(SpanStatusCode.ERROR);
    expect(span?.events.map((e) => e.name)).toEqual(["exception"]);
  });
});
