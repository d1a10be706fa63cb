/**
 * Cost per request against the number of pending approvals in Redis (`npm run bench -- --scaling`):
 * Redis is filled to each level through the real create path (the application layer and the Redis
 * store, in this process, without the transport), then a fresh server is measured at concurrency 1.
 */
import { create } from "@bufbuild/protobuf";
import { CreateApprovalRequestSchema } from "../gen/countersign/v1/approval_service_pb.js";
import { loadStoreConfig } from "../server/config/config.js";
import { systemClock } from "../server/domain/clock.js";
import { createStaticPolicyHolder } from "../server/policy/policy-holder.js";
import { createApprovalOperations } from "../server/services/approval-operations.js";
import { createInputFromMessage } from "../server/services/convert.js";
import { openRedisBackend } from "../server/store/redis-backend.js";
import { testIdentities } from "../test/support/certs.js";
import type { RedisServer } from "../test/support/redis.js";
import type { LatencySummary } from "./histogram.js";
import { benchActions, benchPolicy, createRequest } from "./requests.js";
import { type LatencyRow, runLatencyScenarios, type ScenarioContext } from "./scenarios.js";
import type { BenchServer } from "./server.js";

/** The cost of each operation with `pending` approvals waiting in Redis. */
export interface ScalingRow {
  pending: number;
  /** Memory Redis reports in use (`used_memory`), MB. */
  redisMemoryMb: number;
  /** Seconds it took to bring Redis to this level from the previous one, and the rate. */
  loadSeconds: number;
  loadPerSecond: number;
  /** gRPC, concurrency 1. */
  echo: LatencySummary;
  create: LatencySummary;
  decide: LatencySummary;
  createVsEcho: number;
  decideVsEcho: number;
}

/** Creates pending approvals in Redis through the application layer until there are `target`. */
async function fillTo(redis: RedisServer, target: number, log: (line: string) => void): Promise<void> {
  const { redis: settings } = loadStoreConfig({ store: redis.url }, {});
  if (settings === undefined) throw new Error("no Redis settings");
  const quiet = { info: () => {}, warn: () => {}, error: () => {} };
  const backend = openRedisBackend({ ...settings, commandTimeoutMs: 30_000 }, quiet, () => {});
  try {
    const operations = createApprovalOperations({
      store: backend.store,
      policies: createStaticPolicyHolder(benchPolicy),
      clock: systemClock,
    });
    let have = (await backend.store.stats()).counts.pending;
    const from = have;
    const started = Date.now();
    let lastLog = started;
    let next = have;
    await Promise.all(
      Array.from({ length: 256 }, async () => {
        for (let i = next++; i < target; i = next++) {
          const input = createInputFromMessage(
            create(CreateApprovalRequestSchema, createRequest(benchActions.single, `fill-${i}`)),
          );
          await operations.create(input, testIdentities.requester);
          have++;
          if (Date.now() - lastLog > 10_000) {
            lastLog = Date.now();
            log(`    ${have} pending (${Math.round((have - from) / ((lastLog - started) / 1000))}/s)`);
          }
        }
      }),
    );
  } finally {
    await backend.store.close();
  }
}

/** `used_memory` of a Redis, bytes. */
async function redisUsedMemory(redis: RedisServer): Promise<number> {
  const client = redis.client();
  try {
    const info = await client.info("memory");
    return Number(/^used_memory:(\d+)/m.exec(info)?.[1] ?? Number.NaN);
  } finally {
    client.disconnect();
  }
}

/**
 * For each level (ascending): fills Redis to it, starts a fresh server, and measures echo, create and
 * decide at concurrency 1 over gRPC.
 */
export async function runScaling(
  levels: readonly number[],
  redis: RedisServer,
  startServer: () => Promise<BenchServer>,
  context: (server: BenchServer) => ScenarioContext,
  log: (line: string) => void,
): Promise<ScalingRow[]> {
  const rows: ScalingRow[] = [];
  await redis.client().flushall();
  let previous = 0;
  for (const level of [...levels].sort((a, b) => a - b)) {
    log(`scaling: filling Redis to ${level} pending approvals`);
    const started = Date.now();
    await fillTo(redis, level, log);
    const loadSeconds = (Date.now() - started) / 1000;
    const server = await startServer();
    let latency: LatencyRow[];
    try {
      latency = await runLatencyScenarios(context(server), "grpc", [
        ["echo", 1],
        ["create", 1],
        ["decide", 1],
      ]);
    } finally {
      await server.stop();
    }
    const pick = (scenario: LatencyRow["scenario"]) =>
      latency.find((r) => r.scenario === scenario) as LatencyRow;
    rows.push({
      pending: level,
      redisMemoryMb: Math.round((await redisUsedMemory(redis)) / 1024 / 1024),
      loadSeconds: Math.round(loadSeconds),
      loadPerSecond: Math.round((level - previous) / Math.max(0.001, loadSeconds)),
      echo: pick("echo").latency,
      create: pick("create").latency,
      decide: pick("decide").latency,
      createVsEcho: pick("create").p95VsEcho ?? Number.NaN,
      decideVsEcho: pick("decide").p95VsEcho ?? Number.NaN,
    });
    previous = level;
  }
  return rows;
}
