/**
 * The disaster-recovery drill of docs/runbook.md, step by step: snapshot Redis (BGSAVE), lose it, start a
 * fresh Redis from the snapshot file, replay the archive with `countersign archive import`, and find
 * that the query endpoints answer exactly as before the disaster.
 */
import { execFile } from "node:child_process";
import { copyFileSync, mkdtempSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Decision, State } from "../gen/countersign/v1/approval_pb.js";
import { createArchiveWriter } from "../server/archive/archive-writer.js";
import { createManualClock } from "../server/domain/clock.js";
import { createRetention } from "../server/scheduler/retention.js";
import { createTestPki, type TestPki, testIdentities } from "./support/certs.js";
import { pollUntil, type RedisServer, startRedis } from "./support/redis.js";
import { startTestServer, type TestServer } from "./support/test-server.js";

const run = promisify(execFile);
const cli = ["--import", "tsx", join(import.meta.dirname, "../clients/cli/countersign.ts")];
const adminToken = "dr-admin-token-0123456789";
const day = 24 * 3_600_000;
const retentionMs = day;
const policy = `
version: 1
defaults: { channel: C0, timeout: 7d, unknown_action: deny }
policies:
  - name: dr-deploy
    match: "dr.deploy.*"
    approvers: { users: [U1, U2] }
    required_approvals: 1
  - name: dr-migrate
    match: "dr.migrate"
    approvers: { users: [U1] }
    stages:
      - { name: qa, users: [UQA], required: 1 }
    required_approvals: 1
`;

describe("disaster recovery drill", () => {
  let pki: TestPki;
  const clock = createManualClock(Date.UTC(2026, 5, 1, 9));
  const archiveDir = mkdtempSync(join(tmpdir(), "countersign-dr-archive-"));
  const backupDir = mkdtempSync(join(tmpdir(), "countersign-dr-backup-"));
  let redis: RedisServer;
  let restored: RedisServer | undefined;
  const servers: TestServer[] = [];

  beforeAll(async () => {
    pki = createTestPki();
    redis = await startRedis();
  });
  afterAll(async () => {
    await Promise.all(servers.map((s) => s.close()));
    await redis?.stop();
    await restored?.stop();
  });

  async function serve(url: string): Promise<TestServer> {
    const ts = await startTestServer({
      pki,
      policy,
      clock,
      env: { ADMIN_TOKEN: adminToken },
      flags: {
        deciders: testIdentities.decider,
        store: url,
        archiveDir,
        retention: "1d",
      },
    });
    servers.push(ts);
    return ts;
  }

  /** Everything the query endpoints say: every approval by id, the lists under several filters, the stats. */
  async function answers(ts: TestServer, ids: string[]) {
    const admin = ts.clients(pki.decider, "grpc", {
      headers: { authorization: `Bearer ${adminToken}` },
    }).admin;
    const reader = ts.clients(pki.decider, "connect").approvals;
    const byId: Record<string, unknown> = {};
    for (const id of ids) {
      byId[id] = await reader.getApproval({ id }).then(
        (res) => res.approval,
        (err: unknown) => ConnectError.from(err).code,
      );
    }
    const lists: Record<string, unknown[]> = {};
    const filters = {
      all: {},
      pending: { state: State.PENDING },
      approved: { state: State.APPROVED },
      denied: { state: State.DENIED },
      cancelled: { state: State.CANCELLED },
      migrate: { action: "dr.migrate" },
      stranger: { requester: testIdentities.stranger },
      window: { createTimeAfter: { seconds: BigInt(Math.floor(clock.now() / 1000) - 30 * 86_400) } },
    };
    for (const [name, filter] of Object.entries(filters)) {
      const all: unknown[] = [];
      let pageToken = "";
      do {
        const page = await admin.listApprovals({ ...filter, pageSize: 7, pageToken });
        all.push(...page.approvals);
        pageToken = page.nextPageToken;
      } while (pageToken !== "");
      lists[name] = all;
    }
    const stats = await admin.getStats({});
    return { byId, lists, counts: stats.counts };
  }

  it("answers the same after restoring the RDB snapshot into a fresh Redis and replaying the archive", async () => {
    const live = await serve(redis.url);
    const requester = live.clients(pki.requester, "grpc").approvals;
    const stranger = live.clients(pki.stranger, "grpc").approvals;
    const decider = live.clients(pki.decider, "grpc").approvals;
    const retention = createRetention({
      store: live.server.store,
      claims: live.server.claims,
      clock,
      retentionMs,
      archive: createArchiveWriter({ dir: archiveDir }),
    });
    const ids: string[] = [];
    for (let i = 0; i < 40; i++) {
      const res = await (i % 5 === 0 ? stranger : requester).createApproval({
        action: i % 4 === 0 ? "dr.migrate" : `dr.deploy.n${i}`,
        title: `drill ${i}`,
        params: { n: i },
      });
      ids.push(res.approval?.id ?? "");
    }
    const decide = async (from: number, to: number) => {
      for (let i = from; i < to; i++) {
        const id = ids[i] as string;
        if (i % 7 === 3) {
          await (i % 5 === 0 ? stranger : requester).cancelApproval({ id, reason: "not needed" });
          continue;
        }
        if (i % 4 === 0) {
          await decider.submitDecision({
            id,
            approver: "UQA",
            decision: Decision.ACKNOWLEDGE,
            interactionId: `qa-${i}`,
          });
        }
        await decider.submitDecision({
          id,
          approver: "U1",
          decision: i % 3 === 0 ? Decision.DENY : Decision.APPROVE,
          reason: "drill",
          interactionId: `u1-${i}`,
        });
      }
    };

    // Day 0: twelve decided; day 2: retention archives and purges them, eight more are decided.
    await decide(0, 12);
    clock.advance(2 * day);
    expect(await retention.runOnce()).toMatchObject({ archived: 12, purged: 12 });
    await decide(12, 20);

    // The backup: BGSAVE, wait until it finished, copy dump.rdb away.
    const admin = redis.client();
    const before = await admin.lastsave();
    await admin.bgsave();
    await pollUntil(
      async () => {
        const info = await admin.info("persistence");
        return (
          /rdb_bgsave_in_progress:0/.test(info) &&
          /rdb_last_bgsave_status:ok/.test(info) &&
          (await admin.lastsave()) >= before
        );
      },
      20_000,
      "BGSAVE finished",
    );
    copyFileSync(join(redis.dir, "dump.rdb"), join(backupDir, "dump.rdb"));

    // After the snapshot: six more decided, and everything finished is archived before the disaster.
    clock.advance(day);
    await decide(20, 26);
    clock.advance(2 * day);
    expect(await retention.runOnce()).toMatchObject({ archived: 14, purged: 14 });

    // What the system knows just before the disaster: the active store, and the archive re-imported.
    const archives = readdirSync(archiveDir).map((f) => join(archiveDir, f));
    expect(archives).toHaveLength(2);
    const imported = await run(process.execPath, [
      ...cli,
      "archive",
      "import",
      "--store",
      redis.url,
      ...archives,
    ]);
    expect(imported.stdout).toMatch(/^imported 26 approvals, 0 already present, 0 problems/);
    const expected = await answers(live, ids);
    expect(Object.values(expected.byId).filter((a) => a === Code.NotFound)).toEqual([]);
    expect((expected.lists.all ?? []).length).toBe(40);

    // The disaster: Redis is gone, with its data.
    await redis.kill();
    await live.close();
    servers.splice(servers.indexOf(live), 1);

    // Recovery: a fresh Redis started from the snapshot file, the server pointed at it, the archive replayed.
    restored = await startRedis({ dir: backupDir });
    const recovered = await serve(restored.url);
    const replayed = await run(process.execPath, [
      ...cli,
      "archive",
      "import",
      "--store",
      restored.url,
      ...archives,
    ]);
    // 26 archived approvals: 12 were purged before the snapshot (back from the archive), 8 were in the
    // snapshot as they are in the archive, 6 were decided after it (their final state comes from there).
    expect(replayed.stdout).toMatch(/^imported 18 approvals, 8 already present, 0 problems/);
    expect(await answers(recovered, ids)).toEqual(expected);
  }, 120_000);
});
