import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SpanKind, SpanStatusCode } from "@opentelemetry/api";
import { InMemorySpanExporter } from "@opentelemetry/sdk-trace-base";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { parseAuditLine } from "../audit/audit-record.js";
import { createManualClock } from "../domain/clock.js";
import { createObservability } from "./observability.js";
import { parsePrometheusText } from "./prometheus-text.js";

async function setup() {
  const file = join(mkdtempSync(join(tmpdir(), "countersign-observability-")), "audit.jsonl");
  const observability = await createObservability({
    clock: createManualClock(),
    logger: pino({ level: "silent" }),
    auditDestination: file,
    processMetrics: false,
  });
  const scrape = async () => parsePrometheusText((await observability.metrics.render()).text);
  const audit = async () => {
    await observability.close();
    return readFileSync(file, "utf8")
      .split("\n")
      .flatMap((l) => {
        const line = parseAuditLine(l);
        return line === undefined ? [] : [line];
      });
  };
  return { observability, scrape, audit };
}

describe("observability of the Slack gateway's events", () => {
  it("counts calls, 429s, retries and the queue, and counts and audits refused requests and clicks", async () => {
    const { observability: o, scrape, audit } = await setup();
    const call = { type: "api_call", status: 200, error: "", durationMs: 5 } as const;
    o.slackListener({
      ...call,
      method: "chat.postMessage",
      outcome: "rate_limited",
      status: 429,
      attempt: 1,
    });
    o.slackListener({ type: "rate_limited", method: "chat.postMessage", retryAfterMs: 1000 });
    o.slackListener({ ...call, method: "chat.postMessage", outcome: "ok", attempt: 2 });
    o.slackListener({ ...call, method: "chat.update", outcome: "ok", attempt: 1 });
    o.slackListener({ type: "queue", depth: 3, oldestAgeMs: 1500 });
    o.slackListener({ type: "security", kind: "replay", reason: "seen before", remoteAddress: "10.0.0.9" });
    o.slackListener({
      type: "security",
      kind: "bad_signature",
      reason: "mismatch",
      remoteAddress: "10.0.0.9",
    });
    const click = { approvalId: "01A", user: "U9", action: "approve", code: "permission_denied" } as const;
    o.slackListener({ type: "unauthorized", source: "service", ...click, message: "U9 is not an approver" });
    o.slackListener({ type: "unauthorized", source: "gateway", ...click, message: "already approved" });

    const page = await scrape();
    expect(page.value("countersign_slack_api_calls_total", { method: "chat.postMessage" })).toBe(2);
    expect(page.value("countersign_slack_rate_limited_total", { method: "chat.postMessage" })).toBe(1);
    expect(page.value("countersign_slack_retries_total", { method: "chat.postMessage" })).toBe(1);
    expect(page.value("countersign_slack_queue_depth")).toBe(3);
    expect(page.value("countersign_slack_queue_oldest_age_seconds")).toBe(1.5);
    expect(page.value("countersign_security_events_total", { type: "replay" })).toBe(1);
    expect(page.value("countersign_security_events_total", { type: "bad_signature" })).toBe(1);
    // The API's own refusal is counted where it happens (application layer or interceptor), not twice.
    expect(page.value("countersign_security_events_total", { type: "unauthorized" })).toBe(1);

    const lines = (await audit()).filter((l) => l.type === "security" || l.type === "unauthorized");
    expect(lines.map((l) => [l.type, l.event ?? l.actor])).toEqual([
      ["security", "replay"],
      ["security", "bad_signature"],
      ["unauthorized", "U9"],
    ]);
    expect(lines[0]).toMatchObject({ reason: "seen before", remote_address: "10.0.0.9" });
    expect(lines[2]).toMatchObject({ approval_id: "01A", rpc: "slack/approve", message: "already approved" });
  });

  it("refuses to start when the audit file cannot be opened, naming it", async () => {
    // A path under a regular file: no directory can be made there.
    const notADirectory = join(mkdtempSync(join(tmpdir(), "countersign-observability-")), "file");
    writeFileSync(notADirectory, "");
    const path = join(notADirectory, "audit.jsonl");
    await expect(
      createObservability({
        clock: createManualClock(),
        logger: pino({ level: "silent" }),
        auditDestination: path,
        processMetrics: false,
      }),
    ).rejects.toThrow(`cannot open the audit file ${path}: `);
  });

  it("traces each Slack Web API call as a client span, and each reminder tick that found work, when tracing is on", async () => {
    const exporter = new InMemorySpanExporter();
    const file = join(mkdtempSync(join(tmpdir(), "countersign-observability-")), "audit.jsonl");
    const o = await createObservability({
      clock: createManualClock(),
      logger: pino({ level: "silent" }),
      auditDestination: file,
      processMetrics: false,
      tracing: { exporter, batch: false },
    });
    try {
      o.slackListener({
        type: "api_call",
        method: "chat.postMessage",
        outcome: "rate_limited",
        status: 429,
        error: "ratelimited",
        attempt: 2,
        durationMs: 40,
      });
      const [span] = exporter.getFinishedSpans();
      expect(span?.name).toBe("slack chat.postMessage");
      expect(span?.kind).toBe(SpanKind.CLIENT);
      expect(span?.attributes).toMatchObject({
        "slack.method": "chat.postMessage",
        "slack.retry_count": 1,
        "slack.rate_limited": true,
        "http.response.status_code": 429,
      });
      expect(span?.status.code).toBe(SpanStatusCode.ERROR);
      const [seconds, nanos] = span?.duration ?? [0, 0];
      expect(seconds * 1000 + nanos / 1e6).toBeCloseTo(40, 0);

      o.slackListener({ type: "notices_due", reminders: 2, escalations: 1, approvals: 2 });
      const tick = exporter.getFinishedSpans().find((s) => s.name === "scheduler reminders");
      expect(tick?.attributes).toEqual({
        "countersign.reminders": 2,
        "countersign.escalations": 1,
        "countersign.approvals": 2,
      });
    } finally {
      await o.close();
    }
  });
});
