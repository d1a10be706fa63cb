import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { pushProbeResult } from "../clients/cli/probe-command.js";
import { familyOf, metricNamesIn, parsePrometheusText } from "../server/telemetry/prometheus-text.js";
import { startTestServer, type TestServer } from "./support/test-server.js";

const run = promisify(execFile);
const dashboardPath = join(import.meta.dirname, "../deploy/grafana/countersign.json");

interface Panel {
  id: number;
  type: string;
  title: string;
  gridPos: { h: number; w: number; x: number; y: number };
  datasource?: { type: string; uid: string };
  targets?: { refId: string; expr: string; legendFormat: string }[];
}

/** The metric families the probe pushes, as a Pushgateway receives them. */
async function probeFamilies(): Promise<Map<string, string>> {
  let body = "";
  const gateway = http.createServer((req, res) => {
    req.setEncoding("utf8");
    req.on("data", (chunk: string) => {
      body += chunk;
    });
    req.on("end", () => res.writeHead(200).end());
  });
  await new Promise<void>((resolve) => gateway.listen(0, "127.0.0.1", resolve));
  try {
    const { port } = gateway.address() as AddressInfo;
    await pushProbeResult(`http://127.0.0.1:${port}`, "countersign_probe", {
      approvalId: "x",
      outcome: "approved",
      createMs: 1,
      decideMs: 1,
      endToEndMs: 2,
    });
  } finally {
    gateway.close();
  }
  return parsePrometheusText(body).families;
}

describe("Grafana dashboard deploy/grafana/countersign.json", () => {
  const dashboard = JSON.parse(readFileSync(dashboardPath, "utf8")) as {
    uid: string;
    title: string;
    templating: { list: { name: string; type: string }[] };
    panels: Panel[];
  };
  const panels = dashboard.panels.filter((p) => p.type !== "row");
  const targets = panels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p.title, ...t })));
  let ts: TestServer;
  let families: Map<string, string>;

  beforeAll(async () => {
    ts = await startTestServer({});
    families = parsePrometheusText(await (await fetch(`${ts.server.opsUrl}/metrics`)).text()).families;
    for (const [name, type] of await probeFamilies()) families.set(name, type);
  });
  afterAll(async () => {
    await ts?.close();
  });

  it("is a valid dashboard with the data source as a variable", () => {
    expect(dashboard).toMatchObject({ uid: "countersign", title: "Countersign" });
    expect(dashboard.templating.list).toContainEqual(
      expect.objectContaining({ name: "datasource", type: "datasource" }),
    );
    expect(new Set(dashboard.panels.map((p) => p.id)).size).toBe(dashboard.panels.length);
    for (const p of panels) {
      expect(p.datasource?.uid, p.title).toBe(["$", "{datasource}"].join(""));
      expect(p.gridPos.x + p.gridPos.w, p.title).toBeLessThanOrEqual(24);
      expect(p.targets?.length, p.title).toBeGreaterThan(0);
    }
  });

  it("shows throughput, decision latency P50/P95/P99, outcomes, pending, Slack health and security events", () => {
    const titles = dashboard.panels.map((p) => p.title);
    for (const wanted of [
      /Approvals created/,
      /Decision latency .* P50 \/ P95 \/ P99/,
      /Outcomes/,
      /Pending approvals/,
      /Slack API calls/,
      /Slack 429s/,
      /Slack outbound queue/,
      /Security events/,
      /SLO 120 ms/,
      /SLO 250 ms/,
    ])
      expect(
        titles.some((t) => wanted.test(t)),
        String(wanted),
      ).toBe(true);
    const latency = targets.filter((t) => t.panel.startsWith("Decision latency")).map((t) => t.expr);
    for (const q of ["0.5", "0.95", "0.99"])
      expect(latency.some((e) => e.includes(`histogram_quantile(${q},`))).toBe(true);
  });

  it("queries only metrics that exist (the server's /metrics and the probe's push)", () => {
    for (const t of targets) {
      const names = metricNamesIn(t.expr);
      expect(names.length, `${t.panel}: ${t.expr}`).toBeGreaterThan(0);
      for (const name of names)
        expect(families.has(familyOf(name, families)), `${t.panel}: ${name}`).toBe(true);
    }
  });

  it("has queries that are valid PromQL (checked by promtool)", async () => {
    const dir = mkdtempSync(join(tmpdir(), "countersign-dashboard-"));
    const file = join(dir, "queries.yml");
    const rules = targets.map((t, i) => ({
      record: `dashboard:query_${i}`,
      expr: t.expr.replaceAll("$__rate_interval", "5m"),
    }));
    writeFileSync(file, stringify({ groups: [{ name: "dashboard", rules }] }));
    const { stdout } = await run("promtool", ["check", "rules", file]);
    expect(stdout).toContain(`SUCCESS: ${rules.length} rules found`);
  });
});
