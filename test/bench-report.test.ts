import { describe, expect, it } from "vitest";
import { resultProblems } from "../bench/check-results.js";
import type { LatencySummary } from "../bench/histogram.js";
import { type BenchReport, checkTargets } from "../bench/report.js";
import type { LatencyRow } from "../bench/scenarios.js";

const latency = (p95: number): LatencySummary => ({
  count: 1000,
  min: p95 / 4,
  p50: p95 / 2,
  p95,
  p99: p95 * 1.5,
  max: p95 * 2,
  mean: p95 / 2,
});

/** A latency row as `runLatencyScenarios` makes it, ratios included. */
function row(
  store: LatencyRow["store"],
  scenario: LatencyRow["scenario"],
  concurrency: number,
  p95: number,
  throughput: number,
  echo: { p95: number; throughput: number },
): LatencyRow {
  return {
    store,
    protocol: "grpc",
    scenario,
    concurrency,
    latency: latency(p95),
    throughputPerSecond: throughput,
    errors: 0,
    p95VsEcho: p95 / echo.p95,
    throughputVsEcho: throughput / echo.throughput,
  };
}

/** One store's latency rows: echo P95 1 ms; create, decide, e2e at the given multiples. */
function storeRows(store: LatencyRow["store"], create: number, decide: number, e2e: number, c64: number) {
  const echo1 = { p95: 1, throughput: 1000 };
  const echo64 = { p95: 20, throughput: 4000 };
  return [
    row(store, "echo", 1, 1, 1000, echo1),
    row(store, "create", 1, create, 700, echo1),
    row(store, "decide", 1, decide, 500, echo1),
    row(store, "e2e", 1, e2e, 150, echo1),
    row(store, "echo", 64, 20, 4000, echo64),
    row(store, "create", 64, 40, 4000 * c64, echo64),
  ];
}

const verdicts = (report: Pick<BenchReport, "latency" | "fanOut" | "burst" | "sustained">) =>
  Object.fromEntries(checkTargets(report).map((t) => [`${t.store} ${t.name}`, t.met]));

describe("the benchmark's target checks", () => {
  it("holds each ratio to its store's limit", () => {
    const v = verdicts({
      latency: [...storeRows("memory", 1.4, 1.6, 3.9, 0.55), ...storeRows("redis", 2.6, 2.4, 6.1, 0.34)],
      fanOut: [],
      burst: [],
      sustained: [],
    });
    expect(v).toMatchObject({
      "memory create P95 / echo P95": true,
      "memory approval op P95 / echo P95": false,
      "memory end to end P95 / echo P95": true,
      "memory create throughput / echo throughput, c = 64": true,
      "redis create P95 / echo P95": false,
      "redis approval op P95 / echo P95": true,
      "redis end to end P95 / echo P95": false,
      "redis create throughput / echo throughput, c = 64": false,
    });
  });

  it("counts a lost decision, a slow watcher and a growing RSS as misses", () => {
    const v = verdicts({
      latency: [],
      fanOut: [
        {
          store: "memory",
          protocol: "grpc",
          streams: 5000,
          opened: 5000,
          delivered: 5000,
          connections: 20,
          memoryPerStreamKb: { rss: 19, heapUsed: 15 },
          latency: latency(60),
          errors: 0,
        },
      ],
      burst: [
        {
          store: "memory",
          protocol: "grpc",
          approvals: 5000,
          delivered: 4999,
          lost: 1,
          totalMs: 3000,
          latency: latency(40),
          errors: 0,
        },
      ],
      sustained: [
        {
          store: "redis",
          protocol: "grpc",
          ratePerSecond: 200,
          durationMs: 60_000,
          streams: 2000,
          latency: latency(20),
          serviceTime: latency(20),
          creates: 12_000,
          errors: 0,
          rss: { afterWarmupMb: 200, maxMb: 230, endMb: 230, growthPercent: 15 },
          rssSamplesMb: [200, 230],
          liveHeapMb: { before: 80, after: 81 },
          liveHeapPerCreateBytes: 90,
        },
      ],
    });
    expect(v).toMatchObject({
      "memory fan-out: streams open on one approval": true,
      "memory fan-out: server memory per open stream (RSS)": true,
      "memory fan-out: decision reaches every watcher": false,
      "memory burst: every decision delivered to its watcher": false,
      "redis sustained 200 creates/s: create P99": true,
      "redis sustained: errors": true,
      "redis sustained: RSS growth after warm-up": false,
    });
  });
});

describe("the results check CI runs", () => {
  const report = (latency: LatencyRow[]): BenchReport => ({
    format: 1,
    mode: "quick",
    command: "npm run bench -- --quick",
    startedAt: "",
    finishedAt: "",
    durationSeconds: 30,
    machine: {
      node: "",
      platform: "",
      cpus: 2,
      cpuModel: "",
      memoryMb: 0,
      loadAverage: { before: 0, after: 0 },
    },
    settings: {
      stores: ["memory"],
      transports: ["grpc"],
      skipped: ["fanout", "burst", "sustained"],
      highConcurrency: 64,
    },
    skipped: [],
    latency,
    fanOut: [],
    burst: [],
    sustained: [],
    targets: checkTargets({ latency, fanOut: [], burst: [], sustained: [] }),
    failures: [],
  });

  it("accepts a complete file", () => {
    expect(resultProblems(report(storeRows("memory", 1.2, 1.1, 3, 0.6)))).toEqual([]);
  });

  it("names what is missing or broken", () => {
    const rows = storeRows("memory", 1.2, 1.1, 3, 0.6).filter((r) => r.scenario !== "e2e");
    const broken = rows.map((r) =>
      r.scenario === "decide" ? { ...r, latency: { ...r.latency, p95: Number.NaN } } : r,
    );
    expect(resultProblems(report(broken))).toEqual([
      "memory/grpc decide c=1: latency p95 is NaN",
      "memory/grpc decide c=1: percentiles out of order",
      "memory/grpc: no e2e c=1 result",
    ]);
  });
});
