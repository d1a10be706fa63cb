import { execFile } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { archiveFileName, parseArchiveLine } from "../server/archive/archive-record.js";
import { createArchiveWriter } from "../server/archive/archive-writer.js";
import { loadServeConfig } from "../server/config/config.js";
import { createManualClock } from "../server/domain/clock.js";
import { canonicalSha256 } from "../server/domain/hashing.js";
import type { Approval, JsonValue } from "../server/domain/types.js";
import { createRetention } from "../server/scheduler/retention.js";
import { approvalFactory } from "../server/store/approval-store.contract.js";
import type { ApprovalStore } from "../server/store/approval-store.js";
import { createMemoryClaims } from "../server/store/claims.js";
import { createMemoryApprovalStore } from "../server/store/memory-approval-store.js";
import { openRedisBackend } from "../server/store/redis-backend.js";
import { createMetrics } from "../server/telemetry/metrics.js";
import { parsePrometheusText } from "../server/telemetry/prometheus-text.js";
import { type RedisServer, startRedis } from "./support/redis.js";

const run = promisify(execFile);
const cli = ["--import", "tsx", join(import.meta.dirname, "../clients/cli/countersign.ts")];
const day = 24 * 3_600_000;
const retentionMs = 7 * day;
const quiet = { info() {}, warn() {}, error() {} };

let redis: RedisServer;
beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  await redis?.stop();
});

function redisStore(keyPrefix: string) {
  return openRedisBackend(
    { url: redis.url, commandTimeoutMs: 2_000, waitReplicas: 0, keyPrefix },
    quiet,
    () => {},
  );
}

/** A decided approval with a vote, as the store holds it after the decision. */
async function decide(store: ApprovalStore, a: Approval, at: number): Promise<Approval> {
  const stored = await store.compareAndSet(
    {
      ...a,
      state: "approved",
      decideTime: at,
      decidedBy: "U-ALICE",
      votes: [
        {
          approver: "U-ALICE",
          decision: "approve",
          reason: "ok",
          time: at,
          stage: "",
          submittedBy: "gateway",
          interactionId: `click-${a.id}`,
        },
      ],
    },
    a.version,
  );
  if (stored === undefined) throw new Error("lost a race in a test without contention");
  return stored;
}

function readArchive(dir: string): { file: string; approvals: Approval[] }[] {
  return readdirSync(dir)
    .sort()
    .map((file) => ({
      file,
      approvals: readFileSync(join(dir, file), "utf8")
        .trim()
        .split("\n")
        .map((line) => {
          const parsed = parseArchiveLine(line);
          if ("problem" in parsed) throw new Error(parsed.problem);
          return parsed.approval;
        }),
    }));
}

describe("retention", () => {
  it("archives finished approvals past retention to the day's JSONL file, then purges them", async () => {
    const clock = createManualClock(Date.UTC(2026, 2, 1, 12));
    const store = createMemoryApprovalStore({ now: clock.now });
    const dir = mkdtempSync(join(tmpdir(), "countersign-archive-"));
    const retention = createRetention({
      store,
      clock,
      retentionMs,
      claims: createMemoryClaims(clock.now),
      archive: createArchiveWriter({ dir }),
    });
    const make = approvalFactory();
    const t = clock.now();
    const old = await decide(store, (await store.create(make({ createTime: t }))).approval, t + 1_000);
    const pending = (await store.create(make({ createTime: t + 2_000, expireTime: t + 30 * day }))).approval;
    const recent = (await store.create(make({ createTime: t + 3_000 }))).approval;

    clock.advance(6 * day);
    const recentDecided = await decide(store, recent, clock.now());
    expect(await retention.runOnce()).toEqual({ ran: true, archived: 0, purged: 0 });

    clock.set(t + retentionMs + 1_000);
    expect(await retention.runOnce()).toEqual({ ran: true, archived: 1, purged: 1 });
    expect(await store.get(old.id)).toBeUndefined();
    expect(await store.get(pending.id)).toEqual(pending);
    expect(await store.get(recentDecided.id)).toEqual(recentDecided);
    const files = readArchive(dir);
    expect(files).toEqual([{ file: archiveFileName(clock.now()), approvals: [old] }]);
    expect(files[0]?.file).toBe("approvals-2026-03-08.jsonl");
    const line = JSON.parse(readFileSync(join(dir, files[0]?.file ?? ""), "utf8")) as Record<string, unknown>;
    expect(line).toMatchObject({ kind: "countersign.approval", v: 1, archiveTime: clock.now() });
    expect(line.sha256).toBe(canonicalSha256(old as unknown as JsonValue));
    expect(old.votes).toHaveLength(1);
    expect(old.paramsSha256).toMatch(/^[0-9a-f]{64}$/);
    expect(old.policySha256).toMatch(/^[0-9a-f]{64}$/);

    clock.set(recentDecided.decideTime + retentionMs);
    expect(await retention.runOnce()).toEqual({ ran: true, archived: 1, purged: 1 });
    expect(readArchive(dir)).toEqual([
      { file: "approvals-2026-03-08.jsonl", approvals: [old] },
      { file: "approvals-2026-03-14.jsonl", approvals: [recentDecided] },
    ]);
  });

  it("purges nothing when the archive cannot be written", async () => {
    const clock = createManualClock(Date.UTC(2026, 2, 1));
    const store = createMemoryApprovalStore({ now: clock.now });
    const notADirectory = join(mkdtempSync(join(tmpdir(), "countersign-archive-")), "file");
    writeFileSync(notADirectory, "");
    const retention = createRetention({
      store,
      clock,
      retentionMs,
      claims: createMemoryClaims(clock.now),
      archive: createArchiveWriter({ dir: notADirectory }),
    });
    const done = await decide(
      store,
      (await store.create(approvalFactory()({ createTime: clock.now() }))).approval,
      clock.now(),
    );
    clock.advance(retentionMs + 60_000);
    await expect(retention.runOnce()).rejects.toThrow(/ENOTDIR|EEXIST/);
    expect(await store.get(done.id)).toEqual(done);
  });

  it("runs once per interval across replicas sharing Redis, archiving each approval once", async () => {
    const clock = createManualClock(Date.UTC(2026, 2, 1));
    const replicas = [redisStore("ret1:"), redisStore("ret1:"), redisStore("ret1:")];
    const dirs = replicas.map(() => mkdtempSync(join(tmpdir(), "countersign-archive-")));
    try {
      const [first] = replicas;
      if (first === undefined) throw new Error("no replica");
      await first.store.ping();
      const make = approvalFactory();
      const decided: Approval[] = [];
      for (let i = 0; i < 40; i++) {
        const a = (await first.store.create(make({ createTime: clock.now() + i }))).approval;
        decided.push(await decide(first.store, a, clock.now() + i));
      }
      clock.advance(retentionMs + 60_000);
      const runs = await Promise.all(
        replicas.map((r, i) =>
          createRetention({
            store: r.store,
            clock,
            retentionMs,
            claims: r.claims,
            batchSize: 15,
            archive: createArchiveWriter({ dir: dirs[i] as string }),
          }).runOnce(),
        ),
      );
      expect(runs.filter((r) => r.ran)).toEqual([{ ran: true, archived: 40, purged: 40 }]);
      const archived = dirs.flatMap((d) => readArchive(d).flatMap((f) => f.approvals));
      expect(archived.map((a) => a.id).sort()).toEqual(decided.map((a) => a.id).sort());
      expect((await first.store.stats()).counts.approved).toBe(0);
    } finally {
      await Promise.all(replicas.map((r) => r.store.close()));
    }
  });

  it("keeps a re-imported approval for one more retention period, then purges it without archiving it again", async () => {
    const clock = createManualClock(Date.UTC(2026, 2, 1));
    const store = createMemoryApprovalStore({ now: clock.now });
    const dir = mkdtempSync(join(tmpdir(), "countersign-archive-"));
    const archive = createArchiveWriter({ dir });
    const retention = createRetention({
      store,
      clock,
      retentionMs,
      claims: createMemoryClaims(clock.now),
      archive,
    });
    const a = await decide(
      store,
      (await store.create(approvalFactory()({ createTime: clock.now() }))).approval,
      clock.now(),
    );
    clock.advance(retentionMs + 60_000);
    expect(await retention.runOnce()).toMatchObject({ archived: 1, purged: 1 });

    expect(await store.restore(a)).toBe(true);
    expect(await store.restore(a)).toBe(false);
    expect(await store.get(a.id)).toEqual(a);
    clock.advance(retentionMs - 120_000);
    expect(await retention.runOnce()).toMatchObject({ archived: 0, purged: 0 });
    clock.advance(120_000);
    expect(await retention.runOnce()).toEqual({ ran: true, archived: 0, purged: 1 });
    expect(await store.get(a.id)).toBeUndefined();
    expect(readArchive(dir).flatMap((f) => f.approvals)).toEqual([a]);
  });

  it("counts what it archived and purged, and the archive writes that failed, on /metrics", async () => {
    const clock = createManualClock(Date.UTC(2026, 2, 1));
    const metrics = createMetrics({ clock, processMetrics: false });
    const read = async () => {
      const page = parsePrometheusText((await metrics.render()).text);
      return ["archived", "purged", "archive_failures"].map((n) => page.value(`countersign_${n}_total`));
    };
    const store = createMemoryApprovalStore({ now: clock.now });
    const claims = createMemoryClaims(clock.now);
    const dir = mkdtempSync(join(tmpdir(), "countersign-archive-"));
    const retention = createRetention({
      store,
      clock,
      retentionMs,
      claims,
      archive: createArchiveWriter({ dir }),
      observer: metrics.retention,
    });
    const make = approvalFactory();
    const finished: Approval[] = [];
    for (let i = 0; i < 3; i++)
      finished.push(
        await decide(store, (await store.create(make({ createTime: clock.now() }))).approval, clock.now()),
      );
    expect(await read()).toEqual([0, 0, 0]);

    clock.advance(retentionMs + 60_000);
    expect(await retention.runOnce()).toEqual({ ran: true, archived: 3, purged: 3 });
    expect(await read()).toEqual([3, 3, 0]);

    // A re-imported approval is purged again without being archived again.
    const [first] = finished;
    if (first === undefined) throw new Error("no approval");
    expect(await store.restore(first)).toBe(true);
    clock.advance(retentionMs + 60_000);
    expect(await retention.runOnce()).toEqual({ ran: true, archived: 0, purged: 1 });
    expect(await read()).toEqual([3, 4, 0]);

    const notADirectory = join(mkdtempSync(join(tmpdir(), "countersign-archive-")), "file");
    writeFileSync(notADirectory, "");
    const failing = createRetention({
      store,
      clock,
      retentionMs,
      claims,
      archive: createArchiveWriter({ dir: notADirectory }),
      observer: metrics.retention,
    });
    await decide(store, (await store.create(make({ createTime: clock.now() }))).approval, clock.now());
    clock.advance(retentionMs + 60_000);
    await expect(failing.runOnce()).rejects.toThrow(/ENOTDIR|EEXIST/);
    expect(await read()).toEqual([3, 4, 1]);
  });

  it("defaults --retention to 7 days and refuses a bad one", () => {
    expect(loadServeConfig({ policy: "p.yaml" }, {}).retentionMs).toBe(retentionMs);
    expect(
      loadServeConfig({ policy: "p.yaml", retention: "30d", archiveDir: "/var/lib/cs" }, {}),
    ).toMatchObject({
      retentionMs: 30 * day,
      archiveDir: "/var/lib/cs",
    });
    expect(() => loadServeConfig({ policy: "p.yaml", retention: "soon" }, {})).toThrow(/--retention/);
  });
});

describe("countersign archive import", () => {
  it("re-imports archived approvals into Redis, idempotently, reporting bad lines by file and line", async () => {
    const dir = mkdtempSync(join(tmpdir(), "countersign-archive-"));
    const make = approvalFactory();
    const t = Date.UTC(2026, 2, 1);
    const approvals = Array.from({ length: 5 }, (_, i) => ({
      ...make({ createTime: t + i, action: i % 2 === 0 ? "deploy.production" : "db.migrate" }),
      state: "approved" as const,
      decideTime: t + 10 + i,
      decidedBy: "U-ALICE",
      version: 2,
    }));
    const archive = createArchiveWriter({ dir });
    const file = await archive.append(approvals, t + day);
    const damaged = join(dir, "damaged.jsonl");
    const lines = readFileSync(file, "utf8").trim().split("\n");
    writeFileSync(damaged, `${lines[0]}\nnot json\n${(lines[1] ?? "").replace("U-ALICE", "U-MALLORY")}\n`);

    const args = [...cli, "archive", "import", "--store", redis.url, "--redis-key-prefix", "imp1:"];
    const first = await run(process.execPath, [...args, file]);
    expect(first.stdout).toBe("imported 5 approvals, 0 already present, 0 problems (5 lines in 1 files)\n");
    const second = await run(process.execPath, [...args, file]);
    expect(second.stdout).toBe("imported 0 approvals, 5 already present, 0 problems (5 lines in 1 files)\n");
    const bad = await run(process.execPath, [...args, damaged, join(dir, "missing.jsonl")]).catch(
      (err: { code: number; stdout: string; stderr: string }) => err,
    );
    expect("code" in bad && bad.code).toBe(1);
    expect(bad.stderr.trim().split("\n")).toEqual([
      `${damaged}:2: is not JSON`,
      `${damaged}:3: does not match its sha256 (the line was changed or damaged)`,
      `${join(dir, "missing.jsonl")}:0: cannot read the file: ENOENT`,
    ]);

    const { store } = redisStore("imp1:");
    try {
      for (const a of approvals) expect(await store.get(a.id)).toEqual(a);
      const page = await store.list({ pageSize: 10, action: "db.migrate" });
      expect(page.approvals.map((a) => a.id)).toEqual([approvals[3]?.id, approvals[1]?.id]);
    } finally {
      await store.close();
    }
  });

  it("refuses to run without a Redis store", async () => {
    const bad = await run(process.execPath, [...cli, "archive", "import", "x.jsonl"], {
      env: Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("COUNTERSIGN_"))),
    }).catch((err: { code: number; stderr: string }) => err);
    expect("code" in bad && bad.code).toBe(2);
    expect(bad.stderr).toMatch(/give the Redis store/);
  });
});
