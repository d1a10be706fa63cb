/**
 * The benchmark's scenarios as the runner conducts them: which worker does what, when memory is read,
 * and how the workers' answers become one result per scenario.
 */
import type { Histogram } from "hdr-histogram-js";
import { type LatencySummary, mergeHistograms, newHistogram, recordNs, summarize } from "./histogram.js";
import type {
  ClosedLoopOp,
  CreateManyResult,
  DecideAllResult,
  JobTarget,
  LoadResult,
  WatchResult,
} from "./jobs.js";
import { benchActions } from "./requests.js";
import type { BenchServer, BenchStore, ServerMemory } from "./server.js";
import type { BenchProtocol } from "./transports.js";
import type { JobHandle, LoadWorkers } from "./workers.js";

/** Durations and sizes of a run. */
export interface BenchSettings {
  /** Warm-up of each latency scenario, not measured. */
  warmupMs: number;
  /** Measured period of each latency scenario (split over the rounds). */
  durationMs: number;
  /** Interleaved rounds of the latency scenarios (see `runLatencyScenarios`). */
  rounds: number;
  /** Callers of the throughput scenarios. */
  highConcurrency: number;
  /** Load-generator processes sharing the high-concurrency callers. */
  loadWorkers: number;
  /** Watch streams on one approval (fan-out). */
  fanOutStreams: number;
  /** Approvals, each with one watcher, decided in one burst. */
  burstApprovals: number;
  /** Streams per connection in the stream scenarios. */
  streamsPerConnection: number;
  /** The sustained scenario: creates per second, for how long, with how many open watch streams. */
  sustained: { ratePerSecond: number; warmupMs: number; durationMs: number; streams: number };
}

/** What the scenarios run against. */
export interface ScenarioContext {
  workers: LoadWorkers;
  /** Workers that hold watch streams (the others generate load). */
  watcherWorkers: number[];
  server: BenchServer;
  store: BenchStore;
  target: (protocol: BenchProtocol) => JobTarget;
  settings: BenchSettings;
  log: (line: string) => void;
}

/** The result of a latency scenario. */
export interface LatencyRow {
  store: BenchStore;
  protocol: BenchProtocol;
  scenario: ClosedLoopOp;
  concurrency: number;
  latency: LatencySummary;
  throughputPerSecond: number;
  errors: number;
  firstError?: string;
  /** This row's P95 over the P95 of echo at concurrency 1, same store and transport, same run. */
  p95VsEcho?: number;
  /** This row's throughput over echo's at the same concurrency, same store and transport, same run. */
  throughputVsEcho?: number;
}

/** The result of the fan-out scenario. */
export interface FanOutRow {
  store: BenchStore;
  protocol: BenchProtocol;
  /** Streams asked for, on one approval. */
  streams: number;
  /** Streams that had their first snapshot. */
  opened: number;
  /** Streams that received the decision. */
  delivered: number;
  connections: number;
  /** Server memory growth per open stream, KB (1 KB = 1024 bytes), from its `/metrics`. */
  memoryPerStreamKb: { rss: number; heapUsed: number };
  /** From sending the decision to each watcher having it. */
  latency: LatencySummary;
  errors: number;
  firstError?: string;
}

/** The result of the burst scenario. */
export interface BurstRow {
  store: BenchStore;
  protocol: BenchProtocol;
  approvals: number;
  /** Watchers that received their approval's decision. */
  delivered: number;
  lost: number;
  /** From the first vote sent to the last watcher having its decision. */
  totalMs: number;
  /** Per approval, from sending its vote to its watcher having the decision. */
  latency: LatencySummary;
  errors: number;
  firstError?: string;
}

/** The result of the sustained scenario. */
export interface SustainedRow {
  store: BenchStore;
  protocol: BenchProtocol;
  ratePerSecond: number;
  durationMs: number;
  streams: number;
  /** Create latency from when each create was due (open loop). */
  latency: LatencySummary;
  /** Create latency from when each create was actually sent. */
  serviceTime: LatencySummary;
  creates: number;
  errors: number;
  firstError?: string;
  /** Server resident memory, MB: at the end of the warm-up, the highest after it, and the growth. */
  rss: { afterWarmupMb: number; maxMb: number; endMb: number; growthPercent: number };
  /** Server resident memory every second from the start of the load, MB. */
  rssSamplesMb: number[];
  /**
   * V8 heap in use after a full garbage collection, before the load and after it, MB: what the server
   * keeps (a leak grows it; the approvals themselves do with the memory store).
   */
  liveHeapMb: { before: number; after: number };
  /** Growth of that live heap per create, bytes. */
  liveHeapPerCreateBytes: number;
}

const mb = (bytes: number) => Math.round((bytes / 1024 / 1024) * 10) / 10;

/** Splits `total` into `parts` near-equal positive shares. */
function shares(total: number, parts: number): number[] {
  const n = Math.max(1, Math.min(parts, total));
  return Array.from({ length: n }, (_, i) => Math.floor(total / n) + (i < total % n ? 1 : 0));
}

/** Splits `items` into `parts` near-equal slices. */
function slices<T>(items: readonly T[], parts: number): T[][] {
  let at = 0;
  return shares(items.length, parts).map((n) => {
    const slice = items.slice(at, at + n);
    at += n;
    return slice;
  });
}

/** The merged histogram, counts, summed throughput and first error of load results. */
function summarizeLoad(results: LoadResult[]): {
  histogram: Histogram;
  count: number;
  errors: number;
  throughputPerSecond: number;
  firstError?: string;
} {
  const histogram = mergeHistograms(results.map((r) => r.histogram));
  const firstError = results.find((r) => r.firstError !== undefined)?.firstError;
  return {
    histogram,
    count: results.reduce((n, r) => n + r.count, 0),
    errors: results.reduce((n, r) => n + r.errors, 0),
    throughputPerSecond: results.reduce(
      (n, r) => n + (r.elapsedMs > 0 ? (r.count / r.elapsedMs) * 1000 : 0),
      0,
    ),
    ...(firstError === undefined ? {} : { firstError }),
  };
}

/** Runs one slice of a closed-loop scenario over the load workers; resolves with their raw results. */
async function closedLoop(
  ctx: ScenarioContext,
  protocol: BenchProtocol,
  op: ClosedLoopOp,
  concurrency: number,
  warmupMs: number,
  durationMs: number,
): Promise<LoadResult[]> {
  const parts = concurrency === 1 ? [1] : shares(concurrency, ctx.settings.loadWorkers);
  const handles = parts.map((c, i) =>
    ctx.workers.run<LoadResult>(i, ctx.target(protocol), {
      kind: "closed-loop",
      op,
      concurrency: c,
      connections: Math.min(c, 4),
      warmupMs,
      durationMs,
    }),
  );
  return Promise.all(handles.map((h) => h.result));
}

/** Warm-up of the later rounds of a scenario: only the new connections' handshakes. */
const laterRoundWarmupMs = 200;

/**
 * Latency scenarios on one transport (by default echo, create, decide and end to end at concurrency 1,
 * echo and create at high concurrency), in `settings.rounds` interleaved rounds: a change of the
 * machine's load during the run (others share it) then weighs on echo and on the scenarios alike, and
 * their ratios stay meaningful. Ratios to echo are filled in.
 */
export async function runLatencyScenarios(
  ctx: ScenarioContext,
  protocol: BenchProtocol,
  plan: readonly (readonly [ClosedLoopOp, number])[] = [
    ["echo", 1],
    ["create", 1],
    ["decide", 1],
    ["e2e", 1],
    ["echo", ctx.settings.highConcurrency],
    ["create", ctx.settings.highConcurrency],
  ],
): Promise<LatencyRow[]> {
  const rounds = Math.max(1, ctx.settings.rounds);
  const raw = plan.map(() => [] as LoadResult[]);
  for (let round = 0; round < rounds; round++) {
    for (const [i, [op, c]] of plan.entries()) {
      const warmup = round === 0 ? ctx.settings.warmupMs : laterRoundWarmupMs;
      raw[i]?.push(...(await closedLoop(ctx, protocol, op, c, warmup, ctx.settings.durationMs / rounds)));
    }
  }
  const rows = plan.map(([op, concurrency], i): LatencyRow => {
    const merged = summarizeLoad(raw[i] ?? []);
    const row: LatencyRow = {
      store: ctx.store,
      protocol,
      scenario: op,
      concurrency,
      latency: summarize(merged.histogram),
      // Each round's workers ran at the same time: a round's throughput is their sum; the mean of rounds.
      throughputPerSecond: Math.round(merged.throughputPerSecond / rounds),
      errors: merged.errors,
      ...(merged.firstError === undefined ? {} : { firstError: merged.firstError }),
    };
    ctx.log(
      `  ${ctx.store}/${protocol} ${op} c=${concurrency}: p50 ${row.latency.p50} ms, p95 ${row.latency.p95} ms, ` +
        `${row.throughputPerSecond}/s${row.errors > 0 ? `, ${row.errors} errors (${row.firstError})` : ""}`,
    );
    return row;
  });
  for (const row of rows) {
    const echo1 = rows.find((r) => r.scenario === "echo" && r.concurrency === 1);
    const echoSame = rows.find((r) => r.scenario === "echo" && r.concurrency === row.concurrency);
    if (echo1 !== undefined && echo1.latency.p95 > 0)
      row.p95VsEcho = ratio(row.latency.p95 / echo1.latency.p95);
    if (echoSame !== undefined && echoSame.throughputPerSecond > 0)
      row.throughputVsEcho = ratio(row.throughputPerSecond / echoSame.throughputPerSecond);
  }
  return rows;
}

const ratio = (x: number) => Math.round(x * 100) / 100;

/** Creates `count` pending approvals through a load worker. */
async function createPending(
  ctx: ScenarioContext,
  protocol: BenchProtocol,
  count: number,
): Promise<string[]> {
  const { ids } = await ctx.workers.run<CreateManyResult>(0, ctx.target(protocol), {
    kind: "create-many",
    action: benchActions.single,
    count,
    concurrency: 32,
  }).result;
  return ids;
}

/** Opens one watch stream per id across the watcher workers; resolves once all have their snapshot. */
async function openWatchers(
  ctx: ScenarioContext,
  protocol: BenchProtocol,
  ids: readonly string[],
  timeoutMs: number,
): Promise<{ handles: JobHandle<WatchResult>[]; connections: number }> {
  let connections = 0;
  const handles = slices(ids, ctx.watcherWorkers.length).map((part, i) => {
    const n = Math.max(1, Math.ceil(part.length / ctx.settings.streamsPerConnection));
    connections += n;
    return ctx.workers.run<WatchResult>(ctx.watcherWorkers[i] as number, ctx.target(protocol), {
      kind: "watch",
      ids: part,
      connections: n,
      timeoutMs,
    });
  });
  try {
    await Promise.all(handles.map((h) => h.ready));
  } catch (err) {
    for (const h of handles) h.stop();
    await Promise.allSettled(handles.map((h) => h.result));
    throw err;
  }
  return { handles, connections };
}

/**
 * Fan-out: `fanOutStreams` watchers of one approval, then one decision; how long until every watcher
 * has it, and the server's memory per open stream.
 */
export async function runFanOut(ctx: ScenarioContext, protocol: BenchProtocol): Promise<FanOutRow> {
  const streams = ctx.settings.fanOutStreams;
  const [id] = await createPending(ctx, protocol, 1);
  const before = await ctx.server.liveMemory();
  const ids = new Array<string>(streams).fill(id as string);
  const { handles, connections } = await openWatchers(ctx, protocol, ids, 30_000);
  const after = await ctx.server.liveMemory();
  const decision = await ctx.workers.run<DecideAllResult>(0, ctx.target(protocol), {
    kind: "decide-all",
    ids: [id as string],
    concurrency: 1,
  }).result;
  const results = await Promise.all(handles.map((h) => h.result));
  const sent = BigInt(decision.sentAtNs[0] ?? 0);
  const histogram = newHistogram();
  let delivered = 0;
  for (const r of results)
    for (const at of r.terminalAtNs) {
      if (at === null) continue;
      delivered++;
      recordNs(histogram, BigInt(at) - sent);
    }
  const opened = results.reduce((n, r) => n + r.opened, 0);
  const errors = results.reduce((n, r) => n + r.errors, 0) + decision.errors;
  const firstError = decision.firstError ?? results.find((r) => r.firstError !== undefined)?.firstError;
  const perStreamKb = (bytes: number) => Math.round((bytes / Math.max(1, opened) / 1024) * 10) / 10;
  const row: FanOutRow = {
    store: ctx.store,
    protocol,
    streams,
    opened,
    delivered,
    connections,
    memoryPerStreamKb: {
      rss: perStreamKb(after.rss - before.rss),
      heapUsed: perStreamKb(after.heapUsed - before.heapUsed),
    },
    latency: summarize(histogram),
    errors,
    ...(firstError === undefined ? {} : { firstError }),
  };
  ctx.log(
    `  ${ctx.store}/${protocol} fan-out ${streams} streams: delivered ${delivered}, max ${row.latency.max} ms, ` +
      `${row.memoryPerStreamKb.rss} KB RSS / ${row.memoryPerStreamKb.heapUsed} KB heap per stream`,
  );
  return row;
}

/** Burst: `burstApprovals` approvals, one watcher each, all decided at once; every decision delivered? */
export async function runBurst(ctx: ScenarioContext, protocol: BenchProtocol): Promise<BurstRow> {
  const count = ctx.settings.burstApprovals;
  const ids = await createPending(ctx, protocol, count);
  const { handles } = await openWatchers(ctx, protocol, ids, 60_000);
  const decision = await ctx.workers.run<DecideAllResult>(0, ctx.target(protocol), {
    kind: "decide-all",
    ids,
    concurrency: ctx.settings.highConcurrency,
  }).result;
  const results = await Promise.all(handles.map((h) => h.result));
  const arrivals = results.flatMap((r) => r.terminalAtNs);
  const histogram = newHistogram();
  let delivered = 0;
  let last = 0;
  arrivals.forEach((at, i) => {
    if (at === null) return;
    delivered++;
    last = Math.max(last, at);
    recordNs(histogram, BigInt(at) - BigInt(decision.sentAtNs[i] ?? at));
  });
  const first = Math.min(...decision.sentAtNs);
  const errors = results.reduce((n, r) => n + r.errors, 0) + decision.errors;
  const firstError = decision.firstError ?? results.find((r) => r.firstError !== undefined)?.firstError;
  const row: BurstRow = {
    store: ctx.store,
    protocol,
    approvals: count,
    delivered,
    lost: count - delivered,
    totalMs: delivered === 0 ? 0 : Math.round((last - first) / 1e4) / 100,
    latency: summarize(histogram),
    errors,
    ...(firstError === undefined ? {} : { firstError }),
  };
  ctx.log(
    `  ${ctx.store}/${protocol} burst of ${count}: delivered ${delivered}, lost ${row.lost}, all in ${row.totalMs} ms`,
  );
  return row;
}

/**
 * Sustained: `sustained.streams` watch streams held open while creates arrive at a fixed rate; create
 * latency, errors, and the server's resident memory sampled every second.
 */
export async function runSustained(ctx: ScenarioContext, protocol: BenchProtocol): Promise<SustainedRow> {
  const s = ctx.settings.sustained;
  const ids = await createPending(ctx, protocol, s.streams);
  const { handles } = await openWatchers(ctx, protocol, ids, s.warmupMs + s.durationMs + 120_000);
  // Live heap (after a full collection) before and after the load, outside the measured period.
  const liveBefore = await ctx.server.liveMemory();
  const samples: { at: number; rss: number }[] = [];
  const started = Date.now();
  const sampler = setInterval(() => samples.push({ at: Date.now() - started, rss: ctx.server.rss() }), 1_000);
  let load: LoadResult;
  try {
    load = await ctx.workers.run<LoadResult>(0, ctx.target(protocol), {
      kind: "open-loop-create",
      ratePerSecond: s.ratePerSecond,
      warmupMs: s.warmupMs,
      durationMs: s.durationMs,
    }).result;
  } finally {
    clearInterval(sampler);
  }
  let liveAfter: ServerMemory;
  try {
    liveAfter = await ctx.server.liveMemory();
  } finally {
    for (const h of handles) h.stop();
  }
  const watches = await Promise.all(handles.map((h) => h.result));
  // The first sample at or after the end of the warm-up is the base; growth is the highest above it.
  const afterWarmup = samples.filter((x) => x.at >= s.warmupMs);
  const base = afterWarmup[0]?.rss ?? 0;
  const maxRss = Math.max(base, ...afterWarmup.map((x) => x.rss));
  const end = samples[samples.length - 1]?.rss ?? 0;
  const errors = load.errors + watches.reduce((n, w) => n + w.errors, 0);
  const firstError = load.firstError ?? watches.find((w) => w.firstError !== undefined)?.firstError;
  const row: SustainedRow = {
    store: ctx.store,
    protocol,
    ratePerSecond: s.ratePerSecond,
    durationMs: s.durationMs,
    streams: watches.reduce((n, w) => n + w.opened, 0),
    latency: summarize(mergeHistograms([load.histogram])),
    serviceTime: summarize(mergeHistograms([load.serviceHistogram ?? load.histogram])),
    creates: load.count,
    errors,
    ...(firstError === undefined ? {} : { firstError }),
    rss: {
      afterWarmupMb: mb(base),
      maxMb: mb(maxRss),
      endMb: mb(end),
      growthPercent: base === 0 ? 0 : Math.round(((maxRss - base) / base) * 1000) / 10,
    },
    rssSamplesMb: samples.map((x) => mb(x.rss)),
    liveHeapMb: { before: mb(liveBefore.heapUsed), after: mb(liveAfter.heapUsed) },
    liveHeapPerCreateBytes: Math.round((liveAfter.heapUsed - liveBefore.heapUsed) / Math.max(1, load.count)),
  };
  ctx.log(
    `  ${ctx.store}/${protocol} sustained ${s.ratePerSecond}/s for ${s.durationMs / 1000} s with ${row.streams} streams: ` +
      `p99 ${row.latency.p99} ms, ${row.errors} errors, RSS ${row.rss.afterWarmupMb} → max ${row.rss.maxMb} MB (${row.rss.growthPercent} %)`,
  );
  return row;
}
