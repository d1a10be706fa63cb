import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { familyOf, metricNamesIn, parsePrometheusText } from "../server/telemetry/prometheus-text.js";
import { startTestServer, type TestServer } from "./support/test-server.js";

const run = promisify(execFile);
const root = join(import.meta.dirname, "..");
const rulesPath = join(root, "deploy/prometheus/alerts.yml");
const rulesTestPath = join(root, "deploy/prometheus/alerts.test.yml");

/** Runs promtool (Debian's `prometheus` package; `.ci/run` installs it). */
async function promtool(...args: string[]): Promise<{ code: number; out: string }> {
  try {
    const { stdout, stderr } = await run("promtool", args, { cwd: root });
    return { code: 0, out: stdout + stderr };
  } catch (err) {
    const e = err as { code?: number | string; stdout?: string; stderr?: string };
    if (e.code === "ENOENT") throw new Error("promtool is not installed: apt-get install prometheus");
    return { code: Number(e.code), out: `${e.stdout ?? ""}${e.stderr ?? ""}` };
  }
}

interface Rule {
  alert: string;
  expr: string;
  for: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
}
const rules = (parse(readFileSync(rulesPath, "utf8")) as { groups: { rules: Rule[] }[] }).groups.flatMap(
  (g) => g.rules,
);

describe("Prometheus alert rules", () => {
  it("has the alerts the issue asks for", () => {
    expect(rules.map((r) => r.alert)).toEqual([
      "CountersignCreateLatencyHigh",
      "CountersignDecideLatencyHigh",
      "CountersignErrorRateHigh",
      "CountersignSlackRateLimited",
      "CountersignSlackPostFailed",
      "CountersignStoreUnavailable",
      "CountersignApprovalsStuckPastExpiry",
      "CountersignSchedulerNotRunning",
      "CountersignAuditLogUnwritable",
      "CountersignArchiveFailing",
      "CountersignClockSkew",
    ]);
    expect(rules.find((r) => r.alert === "CountersignCreateLatencyHigh")?.expr).toContain("> 0.12");
    expect(rules.find((r) => r.alert === "CountersignDecideLatencyHigh")?.expr).toContain("> 0.25");
    expect(rules.find((r) => r.alert === "CountersignErrorRateHigh")?.expr).toContain("> 0.01");
  });

  it("passes `promtool check rules`", async () => {
    const result = await promtool("check", "rules", rulesPath);
    expect(result.out).toContain(`SUCCESS: ${rules.length} rules found`);
    expect(result.code).toBe(0);
  });

  it("passes `promtool test rules`, with a firing and a non-firing case for every alert", async () => {
    const tests = (
      parse(readFileSync(rulesTestPath, "utf8")) as {
        tests: { alert_rule_test: { alertname: string; exp_alerts: unknown[] }[] }[];
      }
    ).tests.flatMap((t) => t.alert_rule_test);
    for (const rule of rules) {
      const cases = tests.filter((t) => t.alertname === rule.alert);
      expect(
        cases.some((c) => c.exp_alerts.length > 0),
        `${rule.alert} fires`,
      ).toBe(true);
      expect(
        cases.some((c) => c.exp_alerts.length === 0),
        `${rule.alert} stays quiet`,
      ).toBe(true);
    }
    const result = await promtool("test", "rules", rulesTestPath);
    expect(result.out).toContain("SUCCESS");
    expect(result.code).toBe(0);
  });

  it("fails `promtool test rules` when a threshold is wrong (the tests can fail)", async () => {
    const dir = mkdtempSync(join(tmpdir(), "countersign-alerts-"));
    writeFileSync(join(dir, "alerts.yml"), readFileSync(rulesPath, "utf8").replace("> 0.25", "> 0.6"));
    writeFileSync(join(dir, "alerts.test.yml"), readFileSync(rulesTestPath, "utf8"));
    const result = await promtool("test", "rules", join(dir, "alerts.test.yml"));
    expect(result.code).not.toBe(0);
    expect(result.out).toContain("CountersignDecideLatencyHigh");
  });

  it("links every alert to its section of the runbook", () => {
    const runbook = readFileSync(join(root, "docs/runbook.md"), "utf8");
    const anchors = new Set(
      [...runbook.matchAll(/^#{2,4} (.+)$/gm)].map((m) =>
        (m[1] as string)
          .toLowerCase()
          .replace(/[^a-z0-9 -]/g, "")
          .replace(/ /g, "-"),
      ),
    );
    for (const rule of rules) {
      expect(rule.annotations.runbook_url).toBe(`docs/runbook.md#${rule.alert.toLowerCase()}`);
      expect(anchors.has(rule.alert.toLowerCase()), rule.alert).toBe(true);
    }
  });

  describe("against a live /metrics", () => {
    let ts: TestServer;
    let families: Map<string, string>;

    beforeAll(async () => {
      ts = await startTestServer({});
      families = parsePrometheusText(await (await fetch(`${ts.server.opsUrl}/metrics`)).text()).families;
    });
    afterAll(async () => {
      await ts?.close();
    });

    it("reads only metrics the server exposes", () => {
      for (const rule of rules) {
        const names = metricNamesIn(rule.expr);
        expect(names.length, rule.alert).toBeGreaterThan(0);
        for (const name of names)
          expect(families.has(familyOf(name, families)), `${rule.alert}: ${name}`).toBe(true);
      }
    });
  });
});
