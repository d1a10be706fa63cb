import { type Command, Option } from "commander";
import {
  ConfigError,
  loadServeConfig,
  type ServeConfig,
  type ServeFlags,
} from "../../server/config/config.js";

/** `countersign serve`: runs the server until SIGINT / SIGTERM. */
export function addServeCommand(program: Command): void {
  program
    .command("serve")
    .description("run the Countersign server (every flag may also be set by the environment variable shown)")
    .addOption(
      new Option(
        "--grpc-listen <host:port>",
        "gRPC address [COUNTERSIGN_GRPC_LISTEN] (default 127.0.0.1:50051)",
      ),
    )
    .addOption(
      new Option(
        "--connect-listen <host:port>",
        "Connect / gRPC-Web address [COUNTERSIGN_CONNECT_LISTEN] (default 127.0.0.1:8080)",
      ),
    )
    .addOption(
      new Option(
        "--ops-listen <host:port>",
        "/healthz, /readyz, /metrics [COUNTERSIGN_OPS_LISTEN] (default 127.0.0.1:9090)",
      ),
    )
    .addOption(new Option("--policy <file>", "policy file, YAML or JSON [COUNTERSIGN_POLICY]"))
    .addOption(
      new Option("--watch-policy", "reload the policy file when it changes [COUNTERSIGN_WATCH_POLICY]"),
    )
    .addOption(
      new Option(
        "--tls-cert <file>",
        "server certificate (PEM) [COUNTERSIGN_TLS_CERT]; without TLS: development mode",
      ),
    )
    .addOption(new Option("--tls-key <file>", "server private key (PEM) [COUNTERSIGN_TLS_KEY]"))
    .addOption(
      new Option("--tls-client-ca <file>", "CA of client certificates (PEM) [COUNTERSIGN_TLS_CLIENT_CA]"),
    )
    .addOption(
      new Option(
        "--require-client-cert",
        "refuse clients without a valid certificate [COUNTERSIGN_REQUIRE_CLIENT_CERT]",
      ),
    )
    .addOption(
      new Option(
        "--requesters <ids>",
        "identities allowed to request, comma-separated, or * [COUNTERSIGN_REQUESTERS] (default *)",
      ),
    )
    .addOption(
      new Option(
        "--deciders <ids>",
        "identities allowed to submit decisions (the Slack gateway) [COUNTERSIGN_DECIDERS]",
      ),
    )
    .addOption(
      new Option(
        "--identity-from <sources>",
        "where a client certificate's identity comes from: uri, dns, cn, comma-separated, first found wins [COUNTERSIGN_IDENTITY_FROM] (default uri)",
      ),
    )
    .addOption(
      new Option(
        "--heartbeat-interval <duration>",
        "keep-alive interval of idle watch streams [COUNTERSIGN_HEARTBEAT_INTERVAL] (default 15s)",
      ),
    )
    .addOption(
      new Option(
        "--store <store>",
        "approval store: memory, redis://host:port or rediss://host:port [COUNTERSIGN_STORE] (default memory)",
      ),
    )
    .addOption(
      new Option(
        "--redis-sentinels <host:port,...>",
        "Redis through Sentinel: the Sentinels to ask for the master [COUNTERSIGN_REDIS_SENTINELS]",
      ),
    )
    .addOption(
      new Option(
        "--redis-master-name <name>",
        "the master's name in Sentinel [COUNTERSIGN_REDIS_MASTER_NAME]",
      ),
    )
    .addOption(
      new Option(
        "--redis-timeout <duration>",
        "longest wait for a Redis connection and reply before UNAVAILABLE [COUNTERSIGN_REDIS_TIMEOUT] (default 2s)",
      ),
    )
    .addOption(
      new Option(
        "--redis-wait-replicas <n>",
        "replicas that must have a write before it is acknowledged [COUNTERSIGN_REDIS_WAIT_REPLICAS] (default 0)",
      ),
    )
    .addOption(
      new Option(
        "--redis-tls-ca <file>",
        "CA of the Redis server certificate, rediss:// [COUNTERSIGN_REDIS_TLS_CA]",
      ),
    )
    .addOption(
      new Option(
        "--redis-key-prefix <prefix>",
        "prefix of Countersign's Redis keys [COUNTERSIGN_REDIS_KEY_PREFIX] (default countersign:)",
      ),
    )
    .addOption(
      new Option(
        "--archive-dir <dir>",
        "JSONL archive of finished approvals; enables retention [COUNTERSIGN_ARCHIVE_DIR]",
      ),
    )
    .addOption(
      new Option(
        "--retention <duration>",
        "how long finished approvals stay before they are archived and purged [COUNTERSIGN_RETENTION] (default 7d)",
      ),
    )
    .addOption(
      new Option(
        "--max-message-bytes <n>",
        "largest request message [COUNTERSIGN_MAX_MESSAGE_BYTES] (default 1048576)",
      ),
    )
    .addOption(
      new Option(
        "--log-level <level>",
        "trace, debug, info, warn, error [COUNTERSIGN_LOG_LEVEL] (default info)",
      ),
    )
    .addOption(
      new Option(
        "--create-rate-limit <n>",
        "sustained creates per second per client, 0 disables [COUNTERSIGN_CREATE_RATE_LIMIT] (default 10)",
      ),
    )
    .addOption(
      new Option(
        "--create-burst <n>",
        "extra creates per client per 10 s [COUNTERSIGN_CREATE_BURST] (default 20)",
      ),
    )
    .addOption(
      new Option(
        "--trusted-proxies <ips>",
        "proxies whose x-forwarded-for is trusted, comma-separated [COUNTERSIGN_TRUSTED_PROXIES]",
      ),
    )
    .addOption(
      new Option(
        "--audit-file <file>",
        "append the audit log to this file instead of stdout [COUNTERSIGN_AUDIT_FILE]",
      ),
    )
    .addOption(
      new Option(
        "--audit-checkpoint-interval <duration>",
        "how often the audit log's head is checkpointed to the store and the log [COUNTERSIGN_AUDIT_CHECKPOINT_INTERVAL] (default 10s)",
      ),
    )
    .addOption(
      new Option(
        "--security-summary-interval <duration>",
        "refused calls of one peer after the first are counted and summarised once per interval [COUNTERSIGN_SECURITY_SUMMARY_INTERVAL] (default 60s)",
      ),
    )
    .addOption(
      new Option(
        "--max-clock-skew <duration>",
        "not ready while this host's clock is further than this from Redis's; 0: off [COUNTERSIGN_MAX_CLOCK_SKEW] (default 2s)",
      ),
    )
    .addOption(
      new Option(
        "--components <list>",
        "what runs here: api, slack or all, comma-separated [COUNTERSIGN_COMPONENTS] (default all)",
      ),
    )
    .addOption(
      new Option(
        "--slack-listen <host:port>",
        "Slack interactivity endpoint /slack/events [COUNTERSIGN_SLACK_LISTEN] (default 127.0.0.1:3000)",
      ),
    )
    .addOption(
      new Option(
        "--api-url <url>",
        "with --components slack: the API's gRPC URL, e.g. https://countersign:50051 [COUNTERSIGN_API_URL]",
      ),
    )
    .addOption(
      new Option(
        "--api-tls-cert <file>",
        "the gateway's client certificate (PEM) [COUNTERSIGN_API_TLS_CERT]",
      ),
    )
    .addOption(new Option("--api-tls-key <file>", "the gateway's client key (PEM) [COUNTERSIGN_API_TLS_KEY]"))
    .addOption(
      new Option("--api-tls-ca <file>", "CA of the API's server certificate (PEM) [COUNTERSIGN_API_TLS_CA]"),
    )
    .addOption(
      new Option(
        "--max-streams-per-identity <n>",
        "most watch streams one identity may have open [COUNTERSIGN_MAX_STREAMS_PER_IDENTITY] (default 1000)",
      ),
    )
    .addOption(
      new Option(
        "--max-streams <n>",
        "most watch streams open on this server [COUNTERSIGN_MAX_STREAMS] (default 10000)",
      ),
    )
    .addOption(
      new Option(
        "--max-connection-age <duration>",
        "connections older than this are asked to reconnect [COUNTERSIGN_MAX_CONNECTION_AGE] (default 1h)",
      ),
    )
    .addOption(
      new Option(
        "--max-connection-age-grace <duration>",
        "then closed after this grace [COUNTERSIGN_MAX_CONNECTION_AGE_GRACE] (default 1m)",
      ),
    )
    .addOption(
      new Option(
        "--handshake-timeout <duration>",
        "a connection must finish TLS and send a request within this [COUNTERSIGN_HANDSHAKE_TIMEOUT] (default 10s)",
      ),
    )
    .addOption(
      new Option(
        "--idle-timeout <duration>",
        "a connection with no call open this long is closed [COUNTERSIGN_IDLE_TIMEOUT] (default 5m)",
      ),
    )
    .addOption(
      new Option(
        "--max-connections <n>",
        "most connections per API port [COUNTERSIGN_MAX_CONNECTIONS] (default 10000)",
      ),
    )
    .addOption(
      new Option(
        "--max-connections-per-peer <n>",
        "most connections per API port from one address [COUNTERSIGN_MAX_CONNECTIONS_PER_PEER] (default 1000)",
      ),
    )
    .addOption(
      new Option(
        "--bench-echo",
        "also host countersign.bench.v1.EchoService, the floor of `npm run bench` [COUNTERSIGN_BENCH_ECHO]",
      ).hideHelp(),
    )
    .addHelpText("after", "\nSecrets: ADMIN_TOKEN (or ADMIN_TOKEN_FILE) enables the admin service.")
    .addHelpText("after", "REDIS_PASSWORD (or REDIS_PASSWORD_FILE) is the password of the Redis store.")
    .addHelpText(
      "after",
      "Slack: SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET (or *_FILE) enable the Slack gateway; SLACK_APP_TOKEN " +
        "selects Socket Mode; SLACK_API_URL overrides the Web API URL.",
    )
    .addHelpText(
      "after",
      "Tracing: OTEL_TRACES_EXPORTER=otlp (or OTEL_EXPORTER_OTLP_ENDPOINT) exports OpenTelemetry spans.",
    )
    .action(async (flags: ServeFlags) => {
      let config: ServeConfig;
      try {
        config = loadServeConfig(flags, process.env);
      } catch (err) {
        if (err instanceof ConfigError) {
          for (const problem of err.problems) process.stderr.write(`countersign serve: ${problem}\n`);
          process.exitCode = 2;
          return;
        }
        throw err;
      }
      // Loaded here, not at the top: the server's modules take about a second to load, which every
      // other command (`countersign request` in a CI step) would otherwise pay.
      const { runServer } = await import("../../server/run.js");
      await runServer(config);
    });
}
