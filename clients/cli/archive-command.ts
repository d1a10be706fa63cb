import { type Command, Option } from "commander";
import { importArchives } from "../../server/archive/archive-importer.js";
import { ConfigError, loadStoreConfig, type ServeFlags } from "../../server/config/config.js";
import { openRedisBackend } from "../../server/store/redis-backend.js";

/** `countersign archive import FILES...`: re-imports archived approvals into the Redis store. */
export function addArchiveCommand(program: Command): void {
  const archive = program.command("archive").description("work with the archive of finished approvals");
  archive
    .command("import")
    .description(
      "re-import archived approvals (JSONL files) into the store so GetApproval / ListApprovals answer for them " +
        "again; importing twice changes nothing. Exit status 1 if a line could not be imported.",
    )
    .argument("<files...>", "archive files (approvals-YYYY-MM-DD.jsonl)")
    .addOption(
      new Option(
        "--store <url>",
        "the Redis store: redis://host:port or rediss://host:port [COUNTERSIGN_STORE]",
      ),
    )
    .addOption(
      new Option("--redis-sentinels <host:port,...>", "Redis through Sentinel [COUNTERSIGN_REDIS_SENTINELS]"),
    )
    .addOption(
      new Option(
        "--redis-master-name <name>",
        "the master's name in Sentinel [COUNTERSIGN_REDIS_MASTER_NAME]",
      ),
    )
    .addOption(
      new Option("--redis-timeout <duration>", "Redis call timeout [COUNTERSIGN_REDIS_TIMEOUT] (default 2s)"),
    )
    .addOption(
      new Option("--redis-tls-ca <file>", "CA of the Redis server certificate [COUNTERSIGN_REDIS_TLS_CA]"),
    )
    .addOption(
      new Option(
        "--redis-key-prefix <prefix>",
        "prefix of Countersign's keys [COUNTERSIGN_REDIS_KEY_PREFIX]",
      ),
    )
    .action(async (files: string[], flags: ServeFlags) => {
      let settings: ReturnType<typeof loadStoreConfig>;
      try {
        settings = loadStoreConfig(flags, process.env);
      } catch (err) {
        if (!(err instanceof ConfigError)) throw err;
        for (const problem of err.problems) process.stderr.write(`countersign archive import: ${problem}\n`);
        process.exitCode = 2;
        return;
      }
      if (settings.redis === undefined) {
        process.stderr.write(
          "countersign archive import: give the Redis store (--store redis://... or --redis-sentinels); " +
            "the memory store lives only inside a running server\n",
        );
        process.exitCode = 2;
        return;
      }
      const quiet = { info() {}, warn() {}, error() {} };
      const { store } = openRedisBackend(settings.redis, quiet, () => {});
      try {
        await store.ping();
        const report = await importArchives(store, files);
        for (const p of report.problems) process.stderr.write(`${p.file}:${p.line}: ${p.message}\n`);
        process.stdout.write(
          `imported ${report.restored} approvals, ${report.unchanged} already present, ` +
            `${report.problems.length} problems (${report.lines} lines in ${files.length} files)\n`,
        );
        if (report.problems.length > 0) process.exitCode = 1;
      } finally {
        await store.close();
      }
    });
}
