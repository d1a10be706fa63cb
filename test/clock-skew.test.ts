/**
 * Clock skew between replicas: each server compares its host clock with Redis's (`TIME`), the one clock
 * the replicas share, at every readiness check, and keeps deadlines by Redis's time, so a replica with a
 * fast clock expires nobody's approval early. A host whose clock is off by more than `--max-clock-skew`
 * reports not ready, says why, logs an error and exposes the skew as a metric.
 */
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { State } from "../gen/countersign/v1/approval_pb.js";
import { loadServeConfig } from "../server/config/config.js";
import { createManualClock } from "../server/domain/clock.js";
import { createTestPki, type TestPki } from "./support/certs.js";
import { pollUntil, type RedisServer, startRedis } from "./support/redis.js";
import { startTestServer, type TestServer } from "./support/test-server.js";

let pki: TestPki;
let redis: RedisServer;
const servers: TestServer[] = [];

beforeAll(async () => {
  pki = createTestPki();
  redis = await startRedis();
});
afterAll(async () => {
  for (const ts of servers) await ts.close();
  await redis?.stop();
});

async function readyz(ts: TestServer): Promise<{ status: number; checks: Record<string, string> }> {
  const res = await fetch(`${ts.server.opsUrl}/readyz`);
  const body = (await res.json()) as { checks: Record<string, string> };
  return { status: res.status, checks: body.checks };
}

async function gauge(ts: TestServer, name: string): Promise<number> {
  const text = await (await fetch(`${ts.server.opsUrl}/metrics`)).text();
  const line = new RegExp(`^${name} (\\S+)$`, "m").exec(text);
  if (line?.[1] === undefined) throw new Error(`no ${name} in /metrics`);
  return Number(line[1]);
}

const skewGauge = (ts: TestServer) => gauge(ts, "countersign_clock_skew_seconds");

describe("clock skew against Redis TIME", () => {
  it("a host clock ahead or behind by more than --max-clock-skew makes the server not ready, logged and measured", async () => {
    let offsetMs = 5_000;
    const logs: { level: number; msg: string; skew_ms?: number }[] = [];
    const logger = pino({ level: "info" }, { write: (line: string) => logs.push(JSON.parse(line)) });
    const ts = await startTestServer({
      pki,
      flags: { store: redis.url },
      logger,
      hostClock: { now: () => Date.now() + offsetMs },
    });
    servers.push(ts);

    const ahead = await readyz(ts);
    expect(ahead.status).toBe(503);
    expect(ahead.checks.store).toBe("ok");
    expect(ahead.checks.clock).toMatch(
      /^this host's clock is 5\.0 s ahead of Redis's \(TIME\), more than --max-clock-skew 2s/,
    );
    expect(await skewGauge(ts)).toBeCloseTo(5, 0);
    const errors = logs.filter((l) => l.level === 50 && l.msg.includes("clock is off"));
    expect(errors).toHaveLength(1);
    expect(errors[0]?.skew_ms).toBeGreaterThan(4_500);

    offsetMs = 0;
    const fixed = await readyz(ts);
    expect(fixed).toEqual({ status: 200, checks: expect.objectContaining({ clock: "ok", store: "ok" }) });
    expect(Math.abs(await skewGauge(ts))).toBeLessThan(0.5);
    expect(logs.some((l) => l.msg.includes("agrees with Redis's again"))).toBe(true);

    offsetMs = -3_000;
    const behind = await readyz(ts);
    expect(behind.status).toBe(503);
    expect(behind.checks.clock).toMatch(/^this host's clock is 3\.0 s behind Redis's/);
    expect(await skewGauge(ts)).toBeCloseTo(-3, 0);
  }, 30_000);

  it("--max-clock-skew is 2s unless set, 0s (off) or 100ms to 1h", () => {
    const flags = { policy: "p.yaml" };
    expect(loadServeConfig(flags, {}).maxClockSkewMs).toBe(2_000);
    expect(loadServeConfig(flags, { COUNTERSIGN_MAX_CLOCK_SKEW: "500ms" }).maxClockSkewMs).toBe(500);
    expect(loadServeConfig({ ...flags, maxClockSkew: "0s" }, {}).maxClockSkewMs).toBe(0);
    for (const bad of ["10ms", "2h"])
      expect(() => loadServeConfig({ ...flags, maxClockSkew: bad }, {})).toThrow(
        "--max-clock-skew must be 0 (off) or between 100ms and 1h",
      );
    expect(() => loadServeConfig({ ...flags, maxClockSkew: "soon" }, {})).toThrow(/--max-clock-skew: /);
  });

  it("--max-clock-skew sets the bound (0s: measured, never unready)", async () => {
    const loose = await startTestServer({
      pki,
      flags: { store: redis.url, maxClockSkew: "10s" },
      hostClock: { now: () => Date.now() + 5_000 },
    });
    servers.push(loose);
    expect((await readyz(loose)).checks.clock).toBe("ok");

    const off = await startTestServer({
      pki,
      flags: { store: redis.url, maxClockSkew: "0s" },
      hostClock: { now: () => Date.now() + 60_000 },
    });
    servers.push(off);
    expect((await readyz(off)).checks.clock).toBe("ok");
    expect(await skewGauge(off)).toBeCloseTo(60, 0);
  }, 30_000);

  it("a test's manual clock, which drives deadlines, is not taken for a skewed host clock", async () => {
    const ts = await startTestServer({
      pki,
      flags: { store: redis.url },
      clock: createManualClock(Date.UTC(2026, 0, 1)),
    });
    servers.push(ts);
    const ready = await readyz(ts);
    expect(ready).toEqual({ status: 200, checks: expect.objectContaining({ clock: "ok" }) });
    expect(Math.abs(await skewGauge(ts))).toBeLessThan(0.5);
  }, 30_000);

  it("a replica with a fast host clock keeps deadlines by Redis's time: it expires nobody's approval early", async () => {
    const fastMs = 11 * 60_000; // past the 10-minute timeout of deploy.staging
    const fast = await startTestServer({
      pki,
      flags: { store: redis.url },
      hostClock: { now: () => Date.now() + fastMs },
    });
    servers.push(fast);
    const other = await startTestServer({ pki, flags: { store: redis.url } });
    servers.push(other);
    expect((await readyz(fast)).checks.clock).toMatch(/660\.0 s ahead/);

    const before = Date.now();
    const created = await other
      .clients(pki.requester, "grpc")
      .approvals.createApproval({ action: "deploy.staging", title: "Deploy staging" });
    const id = created.approval?.id ?? "";
    // The fast replica's scheduler runs every 250 ms: let it run twice after the approval was stored.
    const ranAt = await gauge(fast, "countersign_scheduler_last_run_timestamp_seconds");
    await pollUntil(
      async () => (await gauge(fast, "countersign_scheduler_last_run_timestamp_seconds")) >= ranAt + 0.4,
      10_000,
      "two runs of the fast replica's scheduler",
    );
    const seen = await fast.clients(pki.requester, "grpc").approvals.getApproval({ id });
    expect(seen.approval?.state).toBe(State.PENDING);

    const own = await fast
      .clients(pki.requester, "connect")
      .approvals.createApproval({ action: "deploy.staging", title: "Deploy staging again" });
    const { createTime, expireTime } = own.approval ?? {};
    if (createTime === undefined || expireTime === undefined) throw new Error("no create or expire time");
    const createdAt = timestampMs(createTime);
    expect(createdAt).toBeGreaterThanOrEqual(before - 1_000);
    expect(createdAt).toBeLessThanOrEqual(Date.now() + 1_000);
    expect(timestampMs(expireTime) - createdAt).toBe(600_000);
  }, 30_000);

  it("without Redis there is no shared clock to compare with: no clock check", async () => {
    const ts = await startTestServer({ pki, hostClock: { now: () => Date.now() + 60_000 } });
    servers.push(ts);
    const ready = await readyz(ts);
    expect(ready.status).toBe(200);
    expect(ready.checks).not.toHaveProperty("clock");
  }, 30_000);
});
