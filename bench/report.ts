/**
 * The benchmark's output: the targets of issue #7 checked against a run, the table printed at the end,
 * and the JSON document written to `bench/results/latest.json`.
 */
import type { ScalingRow } from "./scaling.js";
import type { BurstRow, FanOutRow, LatencyRow, SustainedRow } from "./scenarios.js";
import type { BenchStore } from "./server.js";
import type { BenchProtocol } from "./transports.js";

/** One target checked against the run. */
export interface TargetCheck {
  /** What is measured, e.g. "create P95 / echo P95". */
  name: string;
  store: BenchStore;
  protocol: BenchProtocol;
  /** The limit, e.g. "≤ 1.5". */
  limit: string;
  /** The measured value, with its unit. */
  measured: string;
  met: boolean;
  /** Why the check is only indicative in this run (e.g. fewer streams than the target names). */
  note?: string;
}

/** A scenario that failed: the run goes on, the report says so, and the exit status is 1. */
export interface BenchFailure {
  store: BenchStore;
  protocol?: BenchProtocol;
  scenario: string;
  message: string;
}

/** Everything a run measured. */
export interface BenchResults {
  latency: LatencyRow[];
  fanOut: FanOutRow[];
  burst: BurstRow[];
  sustained: SustainedRow[];
  /** With `--scaling`: cost per request by number of pending approvals in Redis. */
  scaling?: ScalingRow[];
}

/** The document written to `bench/results/latest.json`. */
export interface BenchReport extends BenchResults {
  /** Format of this document. */
  format: 1;
  mode: "quick" | "full";
  command: string;
  startedAt: string;
  finishedAt: string;
  durationSeconds: number;
  machine: {
    node: string;
    platform: string;
    cpus: number;
    cpuModel: string;
    memoryMb: number;
    /** 1-minute load average before and after the run: others' work shares the machine. */
    loadAverage: { before: number; after: number };
  };
  /** Durations, sizes and the server's flags. */
  settings: Record<string, unknown>;
  /** Stores that were asked for but could not run, and why. */
  skipped: { store: BenchStore; reason: string }[];
  targets: TargetCheck[];
  failures: BenchFailure[];
}

/** Limits of issue #7, per store. */
const limits = {
  memory: { createP95: 1.5, decideP95: 1.5, e2eP95: 4, createThroughput: 0.5 },
  redis: { createP95: 2.5, decideP95: 2.5, e2eP95: 6, createThroughput: 0.35 },
} as const;

/** The target numbers that are not ratios. */
export const absoluteTargets = {
  fanOutStreams: 5_000,
  memoryPerStreamKb: 20,
  fanOutDeliveryMs: 50,
  burstApprovals: 5_000,
  sustainedP99Ms: 50,
  sustainedRssGrowthPercent: 10,
  sustainedRate: 200,
  sustainedSeconds: 60,
  sustainedStreams: 2_000,
  createP95Ms: 3,
  /** "Flat": P95 with many pending approvals at most this many times P95 with the fewest (noise). */
  scalingFlatRatio: 1.5,
} as const;

/** Checks the targets (gRPC through grpc-js, mutual TLS) against what the run measured. */
export function checkTargets(results: BenchResults): TargetCheck[] {
  const checks: TargetCheck[] = [];
  const protocol: BenchProtocol = "grpc";
  const stores = [...new Set(results.latency.map((r) => r.store))];
  for (const store of stores) {
    const row = (scenario: LatencyRow["scenario"], concurrency: number) =>
      results.latency.find(
        (r) =>
          r.store === store &&
          r.protocol === protocol &&
          r.scenario === scenario &&
          r.concurrency === concurrency,
      );
    const l = limits[store];
    for (const [scenario, label, limit] of [
      ["create", "create P95 / echo P95", l.createP95],
      ["decide", "approval op P95 / echo P95", l.decideP95],
      ["e2e", "end to end P95 / echo P95", l.e2eP95],
    ] as const) {
      const r = row(scenario, 1);
      if (r?.p95VsEcho === undefined) continue;
      checks.push({
        name: label,
        store,
        protocol,
        limit: `≤ ${limit}`,
        measured: `${r.p95VsEcho} (${r.latency.p95} ms)`,
        met: r.p95VsEcho <= limit && r.errors === 0,
      });
    }
    const high = results.latency.find(
      (r) => r.store === store && r.protocol === protocol && r.scenario === "create" && r.concurrency > 1,
    );
    if (high?.throughputVsEcho !== undefined)
      checks.push({
        name: `create throughput / echo throughput, c = ${high.concurrency}`,
        store,
        protocol,
        limit: `≥ ${l.createThroughput}`,
        measured: `${high.throughputVsEcho} (${high.throughputPerSecond}/s)`,
        met: high.throughputVsEcho >= l.createThroughput && high.errors === 0,
      });
    const create1 = row("create", 1);
    if (store === "memory" && create1 !== undefined)
      checks.push({
        name: "create P95, absolute",
        store,
        protocol,
        limit: `< ${absoluteTargets.createP95Ms} ms`,
        measured: `${create1.latency.p95} ms`,
        met: create1.latency.p95 < absoluteTargets.createP95Ms,
      });
  }
  for (const f of results.fanOut.filter((r) => r.protocol === protocol)) {
    const few = f.streams < absoluteTargets.fanOutStreams ? { note: `${f.streams} streams in this run` } : {};
    checks.push({
      name: "fan-out: streams open on one approval",
      store: f.store,
      protocol,
      limit: `${absoluteTargets.fanOutStreams}`,
      measured: `${f.opened}`,
      met: f.opened >= absoluteTargets.fanOutStreams && f.errors === 0,
      ...few,
    });
    checks.push({
      name: "fan-out: server memory per open stream (RSS)",
      store: f.store,
      protocol,
      limit: `≤ ${absoluteTargets.memoryPerStreamKb} KB`,
      measured: `${f.memoryPerStreamKb.rss} KB (heap ${f.memoryPerStreamKb.heapUsed} KB)`,
      met: f.memoryPerStreamKb.rss <= absoluteTargets.memoryPerStreamKb,
      ...few,
    });
    checks.push({
      name: "fan-out: decision reaches every watcher",
      store: f.store,
      protocol,
      limit: `all within ${absoluteTargets.fanOutDeliveryMs} ms`,
      measured: `${f.delivered}/${f.opened} within ${f.latency.max} ms`,
      met: f.delivered === f.opened && f.opened > 0 && f.latency.max <= absoluteTargets.fanOutDeliveryMs,
      ...few,
    });
  }
  for (const b of results.burst.filter((r) => r.protocol === protocol)) {
    checks.push({
      name: "burst: every decision delivered to its watcher",
      store: b.store,
      protocol,
      limit: `${absoluteTargets.burstApprovals} of ${absoluteTargets.burstApprovals}, none lost`,
      measured: `${b.delivered} of ${b.approvals} (${b.lost} lost) in ${b.totalMs} ms`,
      met: b.lost === 0 && b.errors === 0 && b.approvals >= absoluteTargets.burstApprovals,
      ...(b.approvals < absoluteTargets.burstApprovals
        ? { note: `${b.approvals} approvals in this run` }
        : {}),
    });
  }
  for (const s of results.sustained.filter((r) => r.protocol === protocol)) {
    const short =
      s.durationMs < absoluteTargets.sustainedSeconds * 1000 || s.streams < absoluteTargets.sustainedStreams
        ? { note: `${s.durationMs / 1000} s with ${s.streams} streams in this run` }
        : {};
    checks.push({
      name: `sustained ${s.ratePerSecond} creates/s: create P99`,
      store: s.store,
      protocol,
      limit: `< ${absoluteTargets.sustainedP99Ms} ms`,
      measured: `${s.latency.p99} ms`,
      met: s.latency.p99 < absoluteTargets.sustainedP99Ms,
      ...short,
    });
    checks.push({
      name: "sustained: errors",
      store: s.store,
      protocol,
      limit: "0",
      measured: `${s.errors}`,
      met: s.errors === 0,
      ...short,
    });
    checks.push({
      name: "sustained: RSS growth after warm-up",
      store: s.store,
      protocol,
      limit: `≤ ${absoluteTargets.sustainedRssGrowthPercent} %`,
      measured: `${s.rss.growthPercent} % (${s.rss.afterWarmupMb} → ${s.rss.maxMb} MB)`,
      met: s.rss.growthPercent <= absoluteTargets.sustainedRssGrowthPercent,
      ...short,
    });
  }
  const scaling = results.scaling ?? [];
  const smallest = scaling[0];
  for (const r of scaling.slice(1)) {
    if (smallest === undefined) break;
    for (const [name, at, base] of [
      ["create", r.create.p95, smallest.create.p95],
      ["decide", r.decide.p95, smallest.decide.p95],
    ] as const)
      checks.push({
        name: `scaling: ${name} P95 with ${r.pending} pending / with ${smallest.pending}`,
        store: "redis",
        protocol,
        limit: `≤ ${absoluteTargets.scalingFlatRatio} (flat)`,
        measured: `${Math.round((at / base) * 100) / 100} (${base} → ${at} ms)`,
        met: at / base <= absoluteTargets.scalingFlatRatio,
      });
  }
  return checks;
}

/** Aligns a table: the first `left` columns to the left, the others (numbers) to the right. */
function pad(cells: string[][], left = 3): string {
  const widths = cells[0]?.map((_, i) => Math.max(...cells.map((row) => (row[i] ?? "").length))) ?? [];
  return cells
    .map((row) =>
      row
        .map((cell, i) => (i < left ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0)))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

const fmt = (x: number | undefined, digits = 2) => (x === undefined ? "" : x.toFixed(digits));

/** The printed report: one table per kind of scenario, then the targets. */
export function formatReport(report: BenchReport): string {
  const out: string[] = [];
  out.push(
    `Countersign benchmark (${report.mode}), ${report.startedAt}, ${report.durationSeconds} s; node ${report.machine.node}, ` +
      `${report.machine.cpus} × ${report.machine.cpuModel}, load average ${report.machine.loadAverage.before} → ${report.machine.loadAverage.after}`,
  );
  out.push(
    "Latency in ms (HDR percentiles); ×echo = P95 over echo's P95 at c = 1, throughput over echo's at the same c.\n",
  );
  out.push(
    pad([
      [
        "store",
        "transport",
        "scenario",
        "c",
        "p50",
        "p95",
        "p99",
        "max",
        "req/s",
        "p95 ×echo",
        "req/s ×echo",
        "errors",
      ],
      ...report.latency.map((r) => [
        r.store,
        r.protocol,
        r.scenario,
        String(r.concurrency),
        fmt(r.latency.p50, 3),
        fmt(r.latency.p95, 3),
        fmt(r.latency.p99, 3),
        fmt(r.latency.max, 1),
        String(r.throughputPerSecond),
        fmt(r.p95VsEcho),
        r.concurrency > 1 ? fmt(r.throughputVsEcho) : "",
        String(r.errors),
      ]),
    ]),
  );
  if (report.fanOut.length > 0) {
    out.push(
      "\nWatch fan-out: N streams on one approval, one decision; ms from the vote sent to each watcher.\n",
    );
    out.push(
      pad([
        [
          "store",
          "transport",
          "streams",
          "conns",
          "delivered",
          "first",
          "p50",
          "p95",
          "p99",
          "max",
          "KB/stream RSS",
          "KB/stream heap",
          "errors",
        ],
        ...report.fanOut.map((r) => [
          r.store,
          r.protocol,
          String(r.streams),
          String(r.connections),
          `${r.delivered}/${r.opened}`,
          fmt(r.latency.min, 1),
          fmt(r.latency.p50, 1),
          fmt(r.latency.p95, 1),
          fmt(r.latency.p99, 1),
          fmt(r.latency.max, 1),
          fmt(r.memoryPerStreamKb.rss, 1),
          fmt(r.memoryPerStreamKb.heapUsed, 1),
          String(r.errors),
        ]),
      ]),
    );
  }
  if (report.burst.length > 0) {
    out.push(
      "\nBurst: N approvals with one watcher each, all decided at once; ms from each vote to its watcher.\n",
    );
    out.push(
      pad([
        [
          "store",
          "transport",
          "approvals",
          "delivered",
          "lost",
          "p50",
          "p95",
          "p99",
          "max",
          "all in ms",
          "errors",
        ],
        ...report.burst.map((r) => [
          r.store,
          r.protocol,
          String(r.approvals),
          String(r.delivered),
          String(r.lost),
          fmt(r.latency.p50, 1),
          fmt(r.latency.p95, 1),
          fmt(r.latency.p99, 1),
          fmt(r.latency.max, 1),
          fmt(r.totalMs, 1),
          String(r.errors),
        ]),
      ]),
    );
  }
  if (report.sustained.length > 0) {
    out.push(
      "\nSustained: creates at a fixed rate with watch streams open; latency from when each create was due.\n",
    );
    out.push(
      pad([
        [
          "store",
          "transport",
          "rate",
          "seconds",
          "streams",
          "creates",
          "p50",
          "p95",
          "p99",
          "max",
          "RSS MB",
          "growth",
          "errors",
        ],
        ...report.sustained.map((r) => [
          r.store,
          r.protocol,
          `${r.ratePerSecond}/s`,
          String(r.durationMs / 1000),
          String(r.streams),
          String(r.creates),
          fmt(r.latency.p50, 2),
          fmt(r.latency.p95, 2),
          fmt(r.latency.p99, 2),
          fmt(r.latency.max, 1),
          `${r.rss.afterWarmupMb}→${r.rss.maxMb}`,
          `${r.rss.growthPercent} %`,
          String(r.errors),
        ]),
      ]),
    );
  }
  if (report.scaling !== undefined && report.scaling.length > 0) {
    out.push(
      "\nScaling: Redis store, gRPC, c = 1, by pending approvals in Redis; P95 in ms and over echo's.\n",
    );
    out.push(
      pad(
        [
          [
            "pending",
            "Redis MB",
            "filled at",
            "echo p50",
            "echo p95",
            "create p50",
            "create p95",
            "×echo",
            "decide p50",
            "decide p95",
            "×echo",
          ],
          ...report.scaling.map((r) => [
            String(r.pending),
            String(r.redisMemoryMb),
            `${r.loadPerSecond}/s`,
            fmt(r.echo.p50, 3),
            fmt(r.echo.p95, 3),
            fmt(r.create.p50, 3),
            fmt(r.create.p95, 3),
            fmt(r.createVsEcho),
            fmt(r.decide.p50, 3),
            fmt(r.decide.p95, 3),
            fmt(r.decideVsEcho),
          ]),
        ],
        0,
      ),
    );
  }
  if (report.skipped.length > 0 || report.failures.length > 0) out.push("");
  for (const s of report.skipped) out.push(`skipped: ${s.store} store: ${s.reason}`);
  for (const f of report.failures)
    out.push(`FAILED: ${f.store}/${f.protocol ?? "-"} ${f.scenario}: ${f.message}`);
  out.push("\nTargets (grpc-js, mutual TLS, c = 1 unless stated):\n");
  out.push(
    pad(
      [
        ["", "store", "target", "limit", "measured", "note"],
        ...report.targets.map((t) => [
          t.met ? "MET " : "MISS",
          t.store,
          t.name,
          t.limit,
          t.measured,
          t.note ?? "",
        ]),
      ],
      6,
    ),
  );
  return `${out.join("\n")}\n`;
}
