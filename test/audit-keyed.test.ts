import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createAuditLog } from "../server/audit/audit-log.js";
import {
  type AuditCheckpoint,
  type AuditKey,
  auditKey,
  chainHash,
  genesisHash,
} from "../server/audit/audit-record.js";
import { type VerifyOptions, verifyAuditFiles } from "../server/audit/audit-verify.js";
import { loadServeConfig } from "../server/config/config.js";
import { canonicalJson } from "../server/domain/hashing.js";
import type { JsonObject } from "../server/domain/types.js";
import { type RedisServer, startRedis } from "./support/redis.js";
import { startServerProcess } from "./support/server-process.js";
import { startTestServer, testPolicy } from "./support/test-server.js";
import { waitFor } from "./support/wait.js";

const run = promisify(execFile);
const cli = ["--import", "tsx", join(import.meta.dirname, "../clients/cli/countersign.ts")];
const secret = "audit-key-0123456789-abcdefghijklmnopqrstuvwxyz";
const key = auditKey(secret);
const otherKey = auditKey("attacker-key-0123456789-abcdefghijklmnopqrstuvw");

const tmp = () => mkdtempSync(join(tmpdir(), "countersign-audit-keyed-"));

/** A closed keyed chain of `count` security events written to a new file, and its last checkpoint. */
async function writeKeyedChain(
  count: number,
  sealWith: AuditKey = key,
): Promise<{ file: string; lines: string[]; checkpoint: AuditCheckpoint }> {
  const file = join(tmp(), "audit.jsonl");
  const checkpoints: AuditCheckpoint[] = [];
  const log = createAuditLog({ destination: file, key: sealWith, onCheckpoint: (c) => checkpoints.push(c) });
  await log.ready();
  for (let i = 0; i < count; i++) log.security("bad_admin_token", { reason: `attempt ${i}` });
  await log.close();
  const checkpoint = checkpoints.at(-1);
  if (checkpoint === undefined) throw new Error("no checkpoint at close");
  return { file, lines: readFileSync(file, "utf8").trimEnd().split("\n"), checkpoint };
}

/** Rewrites lines from index `from` on: each body changed by `edit`, then re-chained with `sealWith`. */
function rechain(
  lines: string[],
  from: number,
  edit: (body: JsonObject, index: number) => JsonObject,
  sealWith?: AuditKey,
): string[] {
  const out = lines.slice(0, from);
  let prev = from === 0 ? genesisHash : ((JSON.parse(out[from - 1] as string) as JsonObject).hash as string);
  lines.slice(from).forEach((text, i) => {
    const { hash: _, ...rest } = JSON.parse(text) as JsonObject;
    const body = { ...edit(rest, from + i), prev_hash: prev };
    const hash = chainHash(prev, canonicalJson(body), sealWith);
    out.push(JSON.stringify({ ...body, hash }));
    prev = hash;
  });
  return out;
}

function writeLines(lines: string[]): string {
  const file = join(tmp(), "tampered.jsonl");
  writeFileSync(file, `${lines.join("\n")}\n`);
  return file;
}

describe("a keyed, checkpointed audit chain against someone who can write the file", () => {
  let chain: Awaited<ReturnType<typeof writeKeyedChain>>;
  let options: VerifyOptions;

  beforeAll(async () => {
    chain = await writeKeyedChain(20);
    options = { keys: [key], checkpoints: [chain.checkpoint] };
  });

  it("verifies intact, with its key id and the checkpoint reached", async () => {
    const report = await verifyAuditFiles([chain.file], options);
    expect(report.ok).toBe(true);
    expect(report.chains).toEqual([
      expect.objectContaining({
        lines: 22,
        closed: true,
        keyIds: [key.id],
        checkpoint: expect.objectContaining({ seq: 22, reached: true }),
      }),
    ]);
    expect(JSON.parse(chain.lines[0] as string)).toMatchObject({ key_id: key.id });
    expect(chain.checkpoint).toMatchObject({ seq: 22, key_id: key.id });
  });

  it("catches a line edited and the chain recomputed (the attacker has no key)", async () => {
    const edit = (b: JsonObject, i: number) => (i === 6 ? { ...b, reason: "nothing happened" } : b);
    // Recomputed as plain SHA-256, keeping the key id…
    const sha = await verifyAuditFiles([writeLines(rechain(chain.lines, 6, edit))], options);
    expect(sha.ok).toBe(false);
    expect(sha.chains[0]?.break).toMatchObject({ seq: 7, problem: expect.stringContaining("was changed") });
    // …or downgraded to an unkeyed chain.
    const unkeyed = rechain(chain.lines, 0, (b, i) => {
      const { key_id: _, ...rest } = edit(b, i);
      return rest;
    });
    const down = await verifyAuditFiles([writeLines(unkeyed)], options);
    expect(down.ok).toBe(false);
    expect(down.chains[0]?.break?.problem).toContain("is unkeyed, but audit keys were given");
  });

  it("catches a line deleted and the rest renumbered", async () => {
    const without = chain.lines.filter((_, i) => i !== 11);
    const renumbered = rechain(without, 11, (b, i) => ({ ...b, seq: i + 1 }));
    const report = await verifyAuditFiles([writeLines(renumbered)], options);
    expect(report.ok).toBe(false);
    expect(report.chains[0]?.break).toMatchObject({
      seq: 12,
      problem: expect.stringContaining("was changed"),
    });
  });

  it("catches a whole chain forged with another key", async () => {
    const forged = await writeKeyedChain(20, otherKey);
    const report = await verifyAuditFiles([forged.file], { keys: [key], checkpoints: [forged.checkpoint] });
    expect(report.ok).toBe(false);
    expect(report.chains[0]?.break?.problem).toContain(
      `is sealed with audit key ${otherKey.id}, which is not among the keys given`,
    );
    expect(report.problems[0]).toContain(`sealed with audit key ${otherKey.id}`);
  });

  it("catches the tail cut off", async () => {
    const report = await verifyAuditFiles([writeLines(chain.lines.slice(0, 17))], options);
    expect(report.ok).toBe(false);
    expect(report.chains[0]?.break).toMatchObject({
      seq: 18,
      problem: expect.stringContaining("the log ends at seq 17, but the checkpoint of"),
    });
  });

  it("catches the newest rotated file deleted", async () => {
    const dir = tmp();
    writeFileSync(join(dir, "audit.jsonl.1"), `${chain.lines.slice(0, 10).join("\n")}\n`);
    writeFileSync(join(dir, "audit.jsonl"), `${chain.lines.slice(10).join("\n")}\n`);
    const both = [join(dir, "audit.jsonl.1"), join(dir, "audit.jsonl")];
    expect((await verifyAuditFiles(both, options)).ok).toBe(true);
    const report = await verifyAuditFiles([join(dir, "audit.jsonl.1")], options);
    expect(report.ok).toBe(false);
    expect(report.chains[0]?.break?.problem).toContain("the log ends at seq 10");
    // A whole newest chain gone: only its checkpoint remains.
    const newer = await writeKeyedChain(3);
    const gone = await verifyAuditFiles([chain.file], {
      keys: [key],
      checkpoints: [chain.checkpoint, newer.checkpoint],
    });
    expect(gone.ok).toBe(false);
    expect(gone.problems[0]).toContain(`chain ${newer.checkpoint.chain} has no line in the files`);
  });

  it("catches a forged checkpoint and a keyed log verified without its key", async () => {
    const forged = { ...chain.checkpoint, seq: 5 };
    const report = await verifyAuditFiles([chain.file], { keys: [key], checkpoints: [forged] });
    expect(report.problems[0]).toContain("was changed: its sig does not match");
    const keyless = await verifyAuditFiles([chain.file]);
    expect(keyless.ok).toBe(false);
    expect(keyless.chains[0]?.break?.problem).toContain(`give its key (--key-file)`);
  });

  it("`countersign audit verify --key-file --checkpoints` says why, and verifies after a key rotation", async () => {
    const dir = tmp();
    const keys = join(dir, "audit.keys");
    const checkpoints = join(dir, "server.log");
    const rotated = await writeKeyedChain(4, otherKey);
    writeFileSync(keys, `# current key first, then earlier ones\n${secret}\n${otherKey.secret}\n`);
    writeFileSync(
      checkpoints,
      [
        '{"level":30,"msg":"countersign is serving"}',
        JSON.stringify({ level: 30, audit_checkpoint: rotated.checkpoint, msg: "audit checkpoint" }),
        JSON.stringify({ level: 30, audit_checkpoint: chain.checkpoint, msg: "audit checkpoint" }),
      ].join("\n"),
    );
    const args = ["audit", "verify", "--key-file", keys, "--checkpoints", checkpoints];
    const ok = await run(process.execPath, [...cli, ...args, rotated.file, chain.file]);
    expect(ok.stdout).toContain(`intact (closed), keyed (key ${key.id}), checkpoint seq 22 reached`);
    expect(ok.stdout).toContain(`keyed (key ${otherKey.id})`);
    expect(ok.stdout).toContain("2 chain(s), 0 broken, 0 problem(s), 0 other line(s) ignored: OK");

    const cut = writeLines(chain.lines.slice(0, 20));
    const failed = await run(process.execPath, [...cli, ...args, rotated.file, cut]).catch(
      (err: { code: number; stdout: string }) => err,
    );
    expect("code" in failed && failed.code).toBe(1);
    expect(failed.stdout).toContain("BROKEN at seq 21: the log ends at seq 20");
    expect(failed.stdout).toContain("FAILED");

    // Every other attack, from the command line too.
    const forged = await writeKeyedChain(20, otherKey);
    const forgedKeys = join(dir, "forged.keys");
    writeFileSync(forgedKeys, `${secret}\n`);
    const attacks: [string, string[], string][] = [
      [
        "edited and recomputed",
        [writeLines(rechain(chain.lines, 6, (b, i) => (i === 6 ? { ...b, reason: "x" } : b)))],
        "BROKEN at seq 7: seq 7 was changed",
      ],
      [
        "deleted and renumbered",
        [
          writeLines(
            rechain(
              chain.lines.filter((_, i) => i !== 11),
              11,
              (b, i) => ({ ...b, seq: i + 1 }),
            ),
          ),
        ],
        "BROKEN at seq 12: seq 12 was changed",
      ],
      ["forged with another key", [forged.file], `which is not among the keys given`],
      ["newest rotated file deleted", [writeLines(chain.lines.slice(0, 10))], "the log ends at seq 10"],
    ];
    const results = await Promise.all(
      attacks.map(([, files]) =>
        run(process.execPath, [
          ...cli,
          "audit",
          "verify",
          "--key-file",
          forgedKeys,
          "--checkpoints",
          checkpoints,
          ...files,
        ]).catch((err: { code: number; stdout: string }) => err),
      ),
    );
    for (const [i, [name, , problem]] of attacks.entries()) {
      const result = results[i] as { code?: number; stdout: string };
      expect(result.code, name).toBe(1);
      expect(result.stdout, name).toContain(problem);
    }
  }, 60_000);
});

describe("log rotation: the writer reopens the path", () => {
  it("after a rename and after a delete, and on reopen() (SIGHUP), losing no line", async () => {
    const dir = tmp();
    const file = join(dir, "audit.jsonl");
    const reopened: string[] = [];
    const log = createAuditLog({ destination: file, key, onReopened: (r) => reopened.push(r) });
    await log.ready();
    const count = (f: string) => (existsSync(f) ? readFileSync(f, "utf8").split("\n").length - 1 : 0);
    log.security("bad_admin_token", { reason: "one" });
    await waitFor(() => count(file) === 2, 5_000, "two lines in the file");

    renameSync(file, `${file}.1`);
    log.security("bad_admin_token", { reason: "two" });
    await waitFor(() => count(file) === 1, 5_000, "a new file after the rename");
    expect(reopened).toEqual(["the file was deleted or renamed"]);

    rmSync(file);
    log.security("bad_admin_token", { reason: "three" });
    await waitFor(() => count(file) === 1, 5_000, "a new file after the delete");

    // A SIGHUP asks for a reopen even when the path still names the same file.
    log.reopen();
    log.security("bad_admin_token", { reason: "four" });
    await waitFor(() => count(file) === 2, 5_000, "the fourth line");
    expect(reopened).toHaveLength(3);
    await log.close();

    // The deleted file held line 3: the rest verify as one chain with a gap exactly there.
    const report = await verifyAuditFiles([`${file}.1`, file], { keys: [key] });
    expect(report.chains[0]?.break).toMatchObject({
      seq: 3,
      problem: "seq 3 is missing (removed, or moved): found seq 4",
    });
    const lines = readFileSync(file, "utf8").trimEnd().split("\n");
    expect(
      lines.map((l) => (JSON.parse(l) as JsonObject).reason ?? (JSON.parse(l) as JsonObject).type),
    ).toEqual(["three", "four", "audit_stopped"]);
  });
});

describe("checkpoints of a real server in Redis", () => {
  let redis: RedisServer;
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    await redis?.stop();
  });

  it("are read by `audit verify --store`, which then catches a cut tail", async () => {
    const ts = await startTestServer({
      flags: { store: redis.url, redisKeyPrefix: "audit-test:", auditCheckpointInterval: "100ms" },
      env: { AUDIT_KEY: secret },
    });
    const { approvals } = ts.clients(undefined, "connect");
    for (let i = 0; i < 3; i++) await approvals.createApproval({ action: "deploy.staging", title: `t${i}` });
    await ts.close();
    const keys = join(tmp(), "audit.keys");
    writeFileSync(keys, `${secret}\n`);
    const args = [
      "audit",
      "verify",
      "--key-file",
      keys,
      "--store",
      redis.url,
      "--redis-key-prefix",
      "audit-test:",
    ];
    const ok = await run(process.execPath, [...cli, ...args, ts.auditPath]);
    const total = readFileSync(ts.auditPath, "utf8").trimEnd().split("\n").length;
    expect(ok.stdout).toContain(
      `${total} events, intact (closed), keyed (key ${key.id}), checkpoint seq ${total} reached`,
    );

    const lines = readFileSync(ts.auditPath, "utf8").trimEnd().split("\n");
    const cut = writeLines(lines.slice(0, -2));
    const failed = await run(process.execPath, [...cli, ...args, cut]).catch(
      (err: { code: number; stdout: string }) => err,
    );
    expect("code" in failed && failed.code).toBe(1);
    expect(failed.stdout).toContain(`the log ends at seq ${total - 2}, but the checkpoint of`);
  }, 60_000);
});

describe("`countersign serve` and SIGHUP", () => {
  it("reopens the audit file after it was rotated away", async () => {
    const dir = tmp();
    const policy = join(dir, "policies.yaml");
    writeFileSync(policy, testPolicy);
    const file = join(dir, "audit.jsonl");
    const server = await startServerProcess(
      [
        ...["--grpc-listen", "127.0.0.1:0", "--connect-listen", "127.0.0.1:0", "--ops-listen", "127.0.0.1:0"],
        ...["--policy", policy, "--audit-file", file],
      ],
      { env: { AUDIT_KEY: secret } },
    );
    try {
      await waitFor(
        () => existsSync(file) && readFileSync(file, "utf8").includes("policy_reloaded"),
        10_000,
        "the first lines",
      );
      renameSync(file, `${file}.1`);
      server.child.kill("SIGHUP");
      // The reload that SIGHUP also runs writes a line: into a new file at the path.
      await waitFor(() => server.output().includes('"msg":"audit log reopened"'), 10_000, "the reopen");
      expect(server.output()).toContain('"reason":"reopen requested"');
      await waitFor(
        () => existsSync(file) && readFileSync(file, "utf8").includes('"trigger":"reload"'),
        10_000,
        "a line in the new file",
      );
    } finally {
      await server.stop();
    }
    const report = await verifyAuditFiles([`${file}.1`, file], { keys: [key] });
    expect(report.ok).toBe(true);
    expect(report.chains[0]).toMatchObject({ closed: true, keyIds: [key.id] });
  }, 60_000);
});

describe("audit settings", () => {
  const flags = { policy: "p.yaml" };
  it("take the key from AUDIT_KEY or AUDIT_KEY_FILE, and refuse a short one", () => {
    const file = join(tmp(), "audit.key");
    writeFileSync(file, `${secret}\n`);
    expect(loadServeConfig(flags, { AUDIT_KEY_FILE: file }).auditKey).toBe(secret);
    expect(loadServeConfig(flags, {}).auditKey).toBeUndefined();
    expect(() => loadServeConfig(flags, { AUDIT_KEY: "short" })).toThrow(
      "AUDIT_KEY must be at least 32 characters (e.g. openssl rand -base64 32)",
    );
    expect(() => loadServeConfig(flags, { AUDIT_KEY: secret, AUDIT_KEY_FILE: file })).toThrow(
      "AUDIT_KEY and AUDIT_KEY_FILE are both set; set one",
    );
    expect(loadServeConfig({ ...flags, auditCheckpointInterval: "1m" }, {}).auditCheckpointMs).toBe(60_000);
    expect(() => loadServeConfig({ ...flags, auditCheckpointInterval: "10ms" }, {})).toThrow(
      "--audit-checkpoint-interval must be between 100ms and 1h",
    );
  });
});
