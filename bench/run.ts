/**
 * `npm run bench`: starts the server in production mode in its own process (and a private Redis),
 * drives it from load-generator processes over grpc-js and Connect, prints one table of every scenario
 * next to the bare transport (the Echo service on the same server, same run), checks the targets of
 * issue #7, and writes `bench/results/latest.json`.
 *
 *   npm run bench                      the full run (under 5 minutes)
 *   npm run bench -- --quick           a ~30 s smoke run (CI: it runs and writes valid JSON)
 *   npm run bench -- --stores memory --transports grpc --skip sustained
 *   npm run bench -- --cpu-prof        also write the server's CPU profiles into bench/results/
 *   npm run bench -- --strict          exit with 1 when a target is missed
 *   npm run bench -- --scaling         cost per request with 1 k, 100 k and 1 M pending approvals in Redis
 *   npm run bench -- --server-node-options "--max-semi-space-size=32"   Node options of the server
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir, totalmem } from "node:os";
import { dirname, join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { createTestPki } from "../test/support/certs.js";
import { type RedisServer, startRedis } from "../test/support/redis.js";
import {
  type BenchFailure,
  type BenchReport,
  type BenchResults,
  checkTargets,
  formatReport,
} from "./report.js";
import { benchPolicy } from "./requests.js";
import { runScaling } from "./scaling.js";
import {
  type BenchSettings,
  runBurst,
  runFanOut,
  runLatencyScenarios,
  runSustained,
  type ScenarioContext,
} from "./scenarios.js";
import { type BenchServer, type BenchStore, startBenchServer } from "./server.js";
import { type BenchProtocol, benchProtocols } from "./transports.js";
import { startLoadWorkers } from "./workers.js";

/** The groups of scenarios `--skip` can leave out. */
const scenarioGroups = ["latency", "fanout", "burst", "sustained"] as const;
type ScenarioGroup = (typeof scenarioGroups)[number];

/** Settings of the default run: under 5 minutes on a 2-core machine. */
const fullSettings: BenchSettings = {
  warmupMs: 500,
  durationMs: 2_100,
  rounds: 3,
  highConcurrency: 64,
  loadWorkers: 1,
  fanOutStreams: 5_000,
  burstApprovals: 5_000,
  streamsPerConnection: 250,
  sustained: { ratePerSecond: 200, warmupMs: 5_000, durationMs: 60_000, streams: 2_000 },
};

/** Settings of `--quick`: every scenario, small, in about 30 s. */
const quickSettings: BenchSettings = {
  warmupMs: 300,
  durationMs: 700,
  rounds: 1,
  highConcurrency: 64,
  loadWorkers: 1,
  fanOutStreams: 500,
  burstApprovals: 300,
  streamsPerConnection: 250,
  sustained: { ratePerSecond: 200, warmupMs: 1_000, durationMs: 3_000, streams: 200 },
};

function usage(problem: string): never {
  process.stderr.write(
    `bench: ${problem}\nusage: npm run bench -- [--quick] [--stores memory,redis] [--transports grpc,connect] ` +
      `[--skip ${scenarioGroups.join(",")}] [--out FILE] [--cpu-prof] [--strict]\n` +
      "       npm run bench -- --scaling [--scaling-levels 1000,100000,1000000]\n",
  );
  process.exit(2);
}

function listOption<T extends string>(
  name: string,
  text: string | undefined,
  allowed: readonly T[],
): T[] | undefined {
  if (text === undefined) return undefined;
  const items = text
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
  const bad = items.filter((s) => !(allowed as readonly string[]).includes(s));
  if (bad.length > 0 || items.length === 0)
    usage(`--${name} ${JSON.stringify(text)}: expected a comma-separated list of ${allowed.join(", ")}`);
  return items as T[];
}

const { values: flags } = (() => {
  try {
    return parseArgs({
      options: {
        quick: { type: "boolean", default: false },
        stores: { type: "string" },
        transports: { type: "string" },
        skip: { type: "string" },
        out: { type: "string" },
        "cpu-prof": { type: "boolean", default: false },
        strict: { type: "boolean", default: false },
        scaling: { type: "boolean", default: false },
        "server-node-options": { type: "string" },
        "scaling-levels": { type: "string" },
      },
      strict: true,
    });
  } catch (err) {
    return usage((err as Error).message);
  }
})();

const mode = flags.quick ? "quick" : "full";
const settings = flags.quick ? quickSettings : fullSettings;
// The quick run is CI's smoke test: the memory store only, unless asked for more.
// `--scaling` is a study of the Redis store alone.
const stores: BenchStore[] = flags.scaling
  ? ["redis"]
  : (listOption<BenchStore>("stores", flags.stores, ["memory", "redis"]) ??
    (flags.quick ? ["memory"] : ["memory", "redis"]));
const scalingLevels = (flags["scaling-levels"] ?? "1000,100000,1000000").split(",").map((text) => {
  const n = Number(text.trim());
  if (!Number.isInteger(n) || n < 1)
    usage(`--scaling-levels ${JSON.stringify(text)}: expected whole numbers`);
  return n;
});
const protocols = listOption<BenchProtocol>("transports", flags.transports, benchProtocols) ?? [
  ...benchProtocols,
];
const skip = new Set<ScenarioGroup>(listOption<ScenarioGroup>("skip", flags.skip, scenarioGroups) ?? []);
const outFile = resolve(flags.out ?? join(import.meta.dirname, "results", "latest.json"));
const profileDir = join(import.meta.dirname, "results");

const runStarted = Date.now();
/** Progress on stderr, each line with the seconds since the start. */
const log = (line: string) =>
  process.stderr.write(`${((Date.now() - runStarted) / 1000).toFixed(0).padStart(4)} s ${line}\n`);

async function main(): Promise<number> {
  const started = new Date();
  const loadBefore = loadavg()[0] ?? 0;
  const workDir = mkdtempSync(join(tmpdir(), "countersign-bench-"));
  const policyPath = join(workDir, "policies.yaml");
  writeFileSync(policyPath, benchPolicy);
  log(
    `bench (${mode}): stores ${stores.join(", ")}; transports ${protocols.join(", ")}; work dir ${workDir}`,
  );
  const pki = createTestPki();
  const results: BenchResults = { latency: [], fanOut: [], burst: [], sustained: [] };
  const skipped: BenchReport["skipped"] = [];
  const failures: BenchFailure[] = [];
  const serverArgs: Record<string, string[]> = {};
  // One load generator (worker 0) and two processes that hold watch streams.
  const workers = await startLoadWorkers(Math.max(3, settings.loadWorkers));
  let redis: RedisServer | undefined;
  try {
    if (stores.includes("redis")) {
      try {
        redis = await startRedis();
        log(`private redis-server on port ${redis.port}`);
      } catch (err) {
        skipped.push({ store: "redis", reason: `redis-server did not start: ${(err as Error).message}` });
        log(`redis scenarios skipped: ${(err as Error).message}`);
      }
    }
    for (const store of stores) {
      if (store === "redis" && redis === undefined) continue;
      const attempt = async (
        scenario: string,
        protocol: BenchProtocol | undefined,
        body: () => Promise<void>,
      ) => {
        try {
          await body();
        } catch (err) {
          const message = err instanceof Error ? err.message : String(err);
          failures.push({ store, ...(protocol === undefined ? {} : { protocol }), scenario, message });
          log(`  FAILED ${store}/${protocol ?? "-"} ${scenario}: ${message}`);
        }
      };
      const fresh = async (name: string, keepData = false): Promise<BenchServer> => {
        if (redis !== undefined && !keepData) await redis.client().flushall();
        const server = await startBenchServer({
          store,
          ...(redis === undefined ? {} : { redisUrl: redis.url }),
          pki,
          policyPath,
          workDir,
          name: `${store}-${name}`,
          ...(flags["cpu-prof"] ? { profileDir } : {}),
          ...(flags["server-node-options"] === undefined
            ? {}
            : { nodeOptions: flags["server-node-options"] }),
        });
        serverArgs[store] = server.args;
        return server;
      };
      const context = (server: BenchServer): ScenarioContext => ({
        workers,
        watcherWorkers: [1, 2],
        server,
        store,
        target: (protocol) => ({
          target: server.target,
          protocol,
          requester: pki.requester,
          decider: pki.decider,
        }),
        settings,
        log,
      });

      if (flags.scaling && redis !== undefined) {
        const onRedis = redis;
        await attempt("scaling", "grpc", async () => {
          results.scaling = await runScaling(
            scalingLevels,
            onRedis,
            () => fresh("scaling", true),
            context,
            log,
          );
        });
        continue;
      }

      /** Runs `body` against a server of its own, started fresh (its memory is measured from a clean start). */
      const onFreshServer = async (name: string, body: (ctx: ScenarioContext) => Promise<void>) =>
        attempt(`${name} server`, undefined, async () => {
          const server = await fresh(name);
          try {
            await body(context(server));
          } finally {
            await server.stop();
          }
        });
      if (!skip.has("latency")) {
        log(`${store}: latency`);
        await onFreshServer("latency", async (ctx) => {
          for (const protocol of protocols)
            await attempt("latency", protocol, async () => {
              results.latency.push(...(await runLatencyScenarios(ctx, protocol)));
            });
        });
      }
      if (!skip.has("fanout") || !skip.has("burst")) {
        log(`${store}: watch streams`);
        await onFreshServer("streams", async (ctx) => {
          if (!skip.has("fanout"))
            for (const protocol of protocols)
              await attempt("fanout", protocol, async () => {
                results.fanOut.push(await runFanOut(ctx, protocol));
              });
          if (!skip.has("burst"))
            for (const protocol of protocols)
              await attempt("burst", protocol, async () => {
                results.burst.push(await runBurst(ctx, protocol));
              });
        });
      }
      if (!skip.has("sustained") && store === stores[stores.length - 1]) {
        // Once per run, on the last store (Redis, the production store, by default); gRPC only, the
        // transport of the targets.
        log(`${store}: sustained load`);
        await onFreshServer("sustained", async (ctx) => {
          await attempt("sustained", "grpc", async () => {
            results.sustained.push(await runSustained(ctx, "grpc"));
          });
        });
      }
    }
  } finally {
    await workers.close();
    await redis?.stop();
    rmSync(workDir, { recursive: true, force: true });
  }

  const finished = new Date();
  const report: BenchReport = {
    format: 1,
    mode,
    command: ["npm run bench", ...(process.argv.length > 2 ? ["--", ...process.argv.slice(2)] : [])].join(
      " ",
    ),
    startedAt: started.toISOString(),
    finishedAt: finished.toISOString(),
    durationSeconds: Math.round((finished.getTime() - started.getTime()) / 1000),
    machine: {
      node: process.version,
      platform: `${process.platform} ${process.arch}`,
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model.trim() ?? "unknown",
      memoryMb: Math.round(totalmem() / 1024 / 1024),
      loadAverage: { before: round1(loadBefore), after: round1(loadavg()[0] ?? 0) },
    },
    settings: { ...settings, stores, transports: protocols, skipped: [...skip], serverArgs },
    skipped,
    ...results,
    targets: checkTargets(results),
    failures,
  };
  process.stdout.write(formatReport(report));
  mkdirSync(dirname(outFile), { recursive: true });
  writeFileSync(outFile, `${JSON.stringify(report, null, 2)}\n`);
  log(`results written to ${outFile}`);
  if (failures.length > 0) return 1;
  if (flags.strict && report.targets.some((t) => !t.met)) return 1;
  return 0;
}

function round1(x: number): number {
  return Math.round(x * 10) / 10;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  },
);
