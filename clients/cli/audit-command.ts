import { readFile } from "node:fs/promises";
import type { Command } from "commander";
import { createRedisCheckpointStore } from "../../server/audit/audit-checkpoints.js";
import { type AuditExportFilter, auditOutcomes, exportAuditEvents } from "../../server/audit/audit-export.js";
import {
  type AuditCheckpoint,
  type AuditKey,
  type AuditOutcome,
  parseAuditKeys,
} from "../../server/audit/audit-record.js";
import { readCheckpoints, type VerifyReport, verifyAuditFiles } from "../../server/audit/audit-verify.js";
import { loadStoreConfig } from "../../server/config/config.js";
import { durationPatternSource, parseDuration } from "../../server/policy/duration.js";
import { createRedisConnections } from "../../server/store/redis-connection.js";

const durationPattern = new RegExp(durationPatternSource);

/** A time given as RFC 3339 (`2026-01-31T12:00:00Z`) or as a duration ago (`24h`), in epoch ms. */
export function parseTimeBound(text: string, now = Date.now()): number {
  if (durationPattern.test(text)) return now - parseDuration(text);
  const time = Date.parse(text);
  if (Number.isNaN(time))
    throw new Error(
      `${JSON.stringify(text)} is neither an RFC 3339 time (2026-01-31T12:00:00Z) nor a duration (24h)`,
    );
  return time;
}

/** The text report of `audit verify`: one line per chain, the problems, then a summary. */
export function formatVerifyReport(report: VerifyReport): string {
  const lines = report.chains.map((c) => {
    const state = c.closed ? "closed" : "open";
    if (c.break !== undefined) {
      const at = c.break.at.line === 0 ? c.break.at.file : `${c.break.at.file}:${c.break.at.line}`;
      return `chain ${c.chain}: ${c.lines} events, BROKEN at seq ${c.break.seq}: ${c.break.problem} (${at})`;
    }
    const sealing =
      c.keyIds.length === 0
        ? "UNKEYED: tamper-evident only against accidents, not against anyone who can write the file"
        : `keyed (key ${c.keyIds.join(", ")})`;
    const checkpoint = c.checkpoint === undefined ? "" : `, checkpoint seq ${c.checkpoint.seq} reached`;
    return `chain ${c.chain}: ${c.lines} events, intact (${state}), ${sealing}${checkpoint}`;
  });
  if (report.chains.length === 0) lines.push("no audit events found");
  for (const problem of report.problems) lines.push(`PROBLEM: ${problem}`);
  if (report.checkpoints === 0)
    lines.push("no checkpoint given: lines cut from the end or a deleted newest file cannot be detected");
  const broken = report.chains.filter((c) => c.break !== undefined).length;
  lines.push(
    `${report.chains.length} chain(s), ${broken} broken, ${report.problems.length} problem(s), ` +
      `${report.otherLines} other line(s) ignored: ${report.ok ? "OK" : "FAILED"}`,
  );
  return `${lines.join("\n")}\n`;
}

/** The keys of every key file. */
async function readKeyFiles(files: readonly string[]): Promise<AuditKey[]> {
  const keys: AuditKey[] = [];
  for (const file of files) {
    try {
      keys.push(...parseAuditKeys(await readFile(file, "utf8")));
    } catch (err) {
      throw new Error(`--key-file ${file}: ${(err as Error).message}`);
    }
  }
  return keys;
}

/** The checkpoints kept in Redis (`--store redis://...`). */
async function readStoreCheckpoints(
  store: string,
  keyPrefix: string | undefined,
): Promise<AuditCheckpoint[]> {
  const settings = loadStoreConfig(
    { store, ...(keyPrefix === undefined ? {} : { redisKeyPrefix: keyPrefix }) },
    {},
  );
  if (settings.redis === undefined)
    throw new Error(
      "--store: checkpoints are read from Redis (redis://...); the memory store lives only in a server",
    );
  const connections = createRedisConnections(settings.redis);
  try {
    await connections.whenReady();
    return await createRedisCheckpointStore(connections.command, settings.redis.keyPrefix).list();
  } finally {
    await connections.close();
  }
}

const collect = (value: string, previous: string[] = []) => [...previous, value];

/** `countersign audit verify FILE...` and `countersign audit export FILE...`. */
export function addAuditCommand(program: Command): void {
  const audit = program.command("audit").description("verify and export the hash-chained audit log");

  audit
    .command("verify")
    .description(
      "check the hash chains of audit logs (other log lines and several processes' chains may be mixed in); " +
        "exit status 1 on any break or when no audit event is found",
    )
    .argument("<files...>", "log files, in order (e.g. rotated files, oldest first)")
    .option(
      "--key-file <file>",
      "audit keys, one per line: the current and earlier ones (repeatable)",
      collect,
    )
    .option(
      "--checkpoints <file>",
      "a log holding the server's audit checkpoints, e.g. the server log (repeatable)",
      collect,
    )
    .option("--store <url>", "read the checkpoints kept in Redis (redis://... or rediss://...)")
    .option("--redis-key-prefix <prefix>", "prefix of Countersign's Redis keys (default countersign:)")
    .option("--output <format>", "text or json", "text")
    .action(
      async (
        files: string[],
        opts: {
          output: string;
          keyFile?: string[];
          checkpoints?: string[];
          store?: string;
          redisKeyPrefix?: string;
        },
      ) => {
        const keys = await readKeyFiles(opts.keyFile ?? []);
        const checkpoints = [
          ...(await readCheckpoints(opts.checkpoints ?? [])),
          ...(opts.store === undefined ? [] : await readStoreCheckpoints(opts.store, opts.redisKeyPrefix)),
        ];
        const report = await verifyAuditFiles(files, { keys, checkpoints });
        if (opts.output === "json") process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
        else process.stdout.write(formatVerifyReport(report));
        if (!report.ok) process.exitCode = 1;
      },
    );

  audit
    .command("export")
    .description("print the audit lines that match every filter given, as JSON lines")
    .argument("<files...>", "log files, in order")
    .option("--since <time>", "at or after this time: RFC 3339, or a duration ago such as 24h")
    .option("--until <time>", "before this time: RFC 3339, or a duration ago")
    .option("--action <glob>", "actions matching this glob, as in policy `match` (repeatable)", collect)
    .option(
      "--outcome <outcome>",
      `every event of approvals that ended so: ${auditOutcomes.join(", ")} (repeatable)`,
      collect,
    )
    .option("--type <type>", "only this event type, e.g. decided, vote, unauthorized (repeatable)", collect)
    .action(
      async (
        files: string[],
        opts: { since?: string; until?: string; action?: string[]; outcome?: string[]; type?: string[] },
      ) => {
        const bad = (opts.outcome ?? []).filter((o) => !(auditOutcomes as readonly string[]).includes(o));
        if (bad.length > 0)
          throw new Error(`--outcome ${bad.join(", ")}: expected one of ${auditOutcomes.join(", ")}`);
        const filter: AuditExportFilter = {
          ...(opts.since === undefined ? {} : { since: parseTimeBound(opts.since) }),
          ...(opts.until === undefined ? {} : { until: parseTimeBound(opts.until) }),
          ...(opts.action === undefined ? {} : { actions: opts.action }),
          ...(opts.outcome === undefined ? {} : { outcomes: opts.outcome as AuditOutcome[] }),
          ...(opts.type === undefined ? {} : { types: opts.type }),
        };
        const out: string[] = [];
        const flush = () => {
          if (out.length > 0) process.stdout.write(`${out.join("\n")}\n`);
          out.length = 0;
        };
        const result = await exportAuditEvents(files, filter, (line) => {
          out.push(line);
          if (out.length >= 1000) flush();
        });
        flush();
        process.stderr.write(`exported ${result.exported} of ${result.scanned} audit events\n`);
      },
    );
}
