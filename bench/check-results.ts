/**
 * Checks that a results file of `npm run bench` is complete and well-formed (CI runs it after
 * `npm run bench -- --quick`); the numbers themselves are not judged, a shared CI machine is too noisy.
 *
 *   npx tsx bench/check-results.ts [bench/results/latest.json]
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { LatencySummary } from "./histogram.js";
import type { BenchReport } from "./report.js";

/** Every problem with a parsed results document; empty when it is complete. */
export function resultProblems(report: BenchReport): string[] {
  const problems: string[] = [];
  const latency = (where: string, l: LatencySummary | undefined) => {
    if (l === undefined) return problems.push(`${where}: no latency`);
    for (const key of ["min", "p50", "p95", "p99", "max", "mean"] as const)
      if (!Number.isFinite(l[key]) || l[key] < 0) problems.push(`${where}: latency ${key} is ${l[key]}`);
    // HDR percentiles report the top of their bucket (0.1 % wide), which may pass the exact maximum.
    if (!(l.p50 <= l.p95 && l.p95 <= l.p99 && l.p99 <= l.max * 1.001 + 0.001))
      problems.push(`${where}: percentiles out of order`);
    if (l.count <= 0) problems.push(`${where}: no measurement`);
  };
  if (report.format !== 1) problems.push(`format is ${String(report.format)}, expected 1`);
  if (report.mode !== "quick" && report.mode !== "full") problems.push(`mode is ${String(report.mode)}`);
  for (const f of report.failures ?? [])
    problems.push(`failed: ${f.store}/${f.protocol ?? "-"} ${f.scenario}: ${f.message}`);
  const stores = (report.settings.stores as string[] | undefined) ?? [];
  const transports = (report.settings.transports as string[] | undefined) ?? [];
  const skipped = new Set((report.settings.skipped as string[] | undefined) ?? []);
  const high = Number(report.settings.highConcurrency);
  for (const store of stores) {
    if (report.skipped.some((s) => s.store === store)) continue;
    for (const protocol of transports) {
      const where = `${store}/${protocol}`;
      if (!skipped.has("latency"))
        for (const [scenario, concurrency] of [
          ["echo", 1],
          ["create", 1],
          ["decide", 1],
          ["e2e", 1],
          ["echo", high],
          ["create", high],
        ] as const) {
          const row = report.latency.find(
            (r) =>
              r.store === store &&
              r.protocol === protocol &&
              r.scenario === scenario &&
              r.concurrency === concurrency,
          );
          if (row === undefined) {
            problems.push(`${where}: no ${scenario} c=${concurrency} result`);
            continue;
          }
          latency(`${where} ${scenario} c=${concurrency}`, row.latency);
          if (!(row.throughputPerSecond > 0))
            problems.push(`${where} ${scenario} c=${concurrency}: no throughput`);
          if (!Number.isFinite(row.p95VsEcho))
            problems.push(`${where} ${scenario} c=${concurrency}: no ratio to echo`);
        }
      if (!skipped.has("fanout")) {
        const f = report.fanOut.find((r) => r.store === store && r.protocol === protocol);
        if (f === undefined) problems.push(`${where}: no fan-out result`);
        else {
          latency(`${where} fan-out`, f.latency);
          if (f.opened !== f.streams)
            problems.push(`${where} fan-out: ${f.opened} of ${f.streams} streams opened`);
        }
      }
      if (!skipped.has("burst")) {
        const b = report.burst.find((r) => r.store === store && r.protocol === protocol);
        if (b === undefined) problems.push(`${where}: no burst result`);
        else latency(`${where} burst`, b.latency);
      }
    }
    if (!skipped.has("sustained") && store === stores[stores.length - 1]) {
      const s = report.sustained.find((r) => r.store === store);
      if (s === undefined) problems.push(`${store}: no sustained result`);
      else {
        latency(`${store} sustained`, s.latency);
        if (!(s.rssSamplesMb?.length > 0)) problems.push(`${store} sustained: no memory samples`);
      }
    }
  }
  if (report.targets.length === 0) problems.push("no target was checked");
  return problems;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const file = process.argv[2] ?? join(import.meta.dirname, "results", "latest.json");
  let report: BenchReport;
  try {
    report = JSON.parse(readFileSync(file, "utf8")) as BenchReport;
  } catch (err) {
    process.stderr.write(`${file}: ${(err as Error).message}\n`);
    process.exit(1);
  }
  const problems = resultProblems(report);
  for (const p of problems) process.stderr.write(`${file}: ${p}\n`);
  if (problems.length > 0) process.exit(1);
  process.stdout.write(
    `${file}: complete (${report.latency.length} latency rows, ${report.fanOut.length} fan-out, ` +
      `${report.burst.length} burst, ${report.sustained.length} sustained, ${report.targets.length} targets)\n`,
  );
}
