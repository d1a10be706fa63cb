import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { State } from "../gen/countersign/v1/approval_pb.js";
import { parseAuditLine } from "../server/audit/audit-record.js";
import { type PrometheusPage, parsePrometheusText } from "../server/telemetry/prometheus-text.js";
import { type SlackTestbed, startSlackTestbed } from "./support/fake-slack.js";
import { blockActionPayload, interactionBody, postSigned } from "./support/slack-signing.js";

/** The Slack part of the scripted run: a 429 from Slack, clicks, and a replayed click. */
describe("/metrics after a scripted Slack run", () => {
  let bed: SlackTestbed;
  let before: PrometheusPage;
  let after: PrometheusPage;
  let approvalId: string;
  const delta = (name: string, labels?: Record<string, string>) =>
    after.value(name, labels) - before.value(name, labels);
  const scrape = async () =>
    parsePrometheusText(await (await fetch(`${bed.ts.server.opsUrl}/metrics`)).text());

  beforeAll(async () => {
    bed = await startSlackTestbed();
    before = await scrape();
    // Slack answers the first post with 429 (Retry-After 1 s); the queue retries it.
    bed.slack.inject("chat.postMessage", { kind: "rate_limited", retryAfterSec: 1 }, 1);
    const { approvals } = bed.ts.clients(undefined, "connect");
    approvalId =
      (await approvals.createApproval({ action: "deploy.staging", title: "Deploy staging" })).approval?.id ??
      "";
    const message = await bed.waitForMessage(approvalId, () => true, "the message, after the 429");
    // U1 approves with a signed click; the very same signed request again is a replay.
    const body = interactionBody(
      blockActionPayload({
        user: "U1",
        actionId: "countersign_approve",
        approvalId,
        channel: message.channel,
        messageTs: message.ts,
      }),
    );
    const timestampSec = bed.nowSec();
    expect(
      (await postSigned(bed.eventsUrl, { signingSecret: bed.signingSecret, body, timestampSec })).status,
    ).toBe(200);
    await bed.waitForMessage(
      approvalId,
      (m) => JSON.stringify(m.blocks).includes("<@U1> approved"),
      "the vote",
    );
    expect(
      (await postSigned(bed.eventsUrl, { signingSecret: bed.signingSecret, body, timestampSec })).status,
    ).toBe(401);
    expect((await approvals.getApproval({ id: approvalId })).approval?.state).toBe(State.APPROVED);
    after = await scrape();
  }, 60_000);

  afterAll(async () => {
    await bed?.close();
  });

  it("counts Slack's 429, the retry and the calls", () => {
    expect(delta("countersign_slack_rate_limited_total", { method: "chat.postMessage" })).toBe(1);
    expect(
      delta("countersign_slack_api_calls_total", { method: "chat.postMessage", result: "rate_limited" }),
    ).toBe(1);
    expect(delta("countersign_slack_api_calls_total", { method: "chat.postMessage", result: "ok" })).toBe(1);
    expect(delta("countersign_slack_retries_total", { method: "chat.postMessage" })).toBe(1);
    expect(
      delta("countersign_slack_api_calls_total", { method: "chat.update", result: "ok" }),
    ).toBeGreaterThan(0);
  });

  it("counts the replayed click as a security event, and the decision it did not change once", () => {
    expect(delta("countersign_security_events_total", { type: "replay" })).toBe(1);
    expect(delta("countersign_votes_total", { action: "deploy.staging", decision: "approve" })).toBe(1);
    expect(delta("countersign_decisions_total", { action: "deploy.staging", outcome: "approved" })).toBe(1);
  });

  it("audits the replay", () => {
    const lines = readFileSync(bed.ts.auditPath, "utf8")
      .split("\n")
      .flatMap((t) => {
        const line = parseAuditLine(t);
        return line === undefined ? [] : [line];
      });
    expect(lines.filter((l) => l.type === "security").map((l) => l.event)).toEqual(["replay"]);
    expect(lines.filter((l) => l.approval_id === approvalId).map((l) => l.type)).toEqual([
      "created",
      "vote",
      "decided",
    ]);
  });
});
