import { type Command, Option } from "commander";
import {
  ConfigError,
  loadServeConfig,
  type ServeConfig,
  type ServeFlags,
} from "../../server/config/config.js";
import { runServer } from "../../server/run.js";

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
        "/healthz, /readyz [COUNTERSIGN_OPS_LISTEN] (default 127.0.0.1:9090)",
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
        "--heartbeat-interval <duration>",
        "keep-alive interval of idle watch streams [COUNTERSIGN_HEARTBEAT_INTERVAL] (default 15s)",
      ),
    )
    .addOption(new Option("--store <store>", "approval store: memory [COUNTERSIGN_STORE] (default memory)"))
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
    .addHelpText("after", "\nSecrets: ADMIN_TOKEN (or ADMIN_TOKEN_FILE) enables the admin service.")
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
      await runServer(config);
    });
}
