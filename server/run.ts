import { type Logger, pino } from "pino";
import type { ServeConfig } from "./config/config.js";
import { startServer, startSlackGatewayProcess } from "./main.js";

/** The `--url` a CLI command needs to reach this development server; none on the CLI's default URL. */
function connectCliFlags(connectUrl: string): string {
  return connectUrl === "http://127.0.0.1:8080" ? "" : ` --url ${connectUrl}`;
}

/**
 * Runs the server as `countersign serve` does: SIGHUP reloads the policies and reopens the audit file
 * (after log rotation), SIGINT / SIGTERM stop it.
 * In development mode it prints, for every new approval, a command that decides it.
 */
export async function runServer(config: ServeConfig): Promise<void> {
  const logger: Logger = pino({ level: config.logLevel, base: { service: "countersign" } });
  if (!config.components.api) return runSlackGateway(config, logger);
  let server: Awaited<ReturnType<typeof startServer>>;
  try {
    server = await startServer(config, { logger });
  } catch (err) {
    // startServer has closed everything it opened; exit at once all the same, so nothing that a
    // library keeps running (a reconnecting client, a timer) holds up a process that is not serving.
    logger.fatal({ err: (err as Error).message }, "countersign could not start");
    process.stderr.write(`countersign serve: ${(err as Error).message}\n`);
    process.exit(1);
  }
  if (config.developmentIdentity !== undefined) {
    process.stderr.write(
      `\nCountersign is running in development mode (plaintext, loopback only, every caller is "${config.developmentIdentity}").\n` +
        `  gRPC:    ${server.grpcAddress}\n  Connect: ${server.connectUrl}\n  Ops:     ${server.opsUrl}/readyz\n\n`,
    );
    server.store.subscribeAll((approval) => {
      if (approval.version !== 1 || approval.state !== "pending") return;
      const approver = approval.rules.approvers.users[0] ?? approval.rules.superApprovers[0] ?? "APPROVER";
      // Co-sign stages come first: the first stage's member acknowledges before anyone can approve.
      const stageMember = approval.rules.stages[0]?.members.users[0];
      const cli = connectCliFlags(server.connectUrl);
      process.stderr.write(
        `New approval ${approval.id} (${approval.action}). ${stageMember === undefined ? "Approve" : "Acknowledge, then approve"} it with:\n` +
          (stageMember === undefined
            ? ""
            : `  npm run -s countersign -- decide ${approval.id} acknowledge --as ${stageMember}${cli}\n`) +
          `  npm run -s countersign -- decide ${approval.id} approve --as ${approver} --reason "looks good"${cli}\n` +
          `or with curl:\n` +
          `  curl -s ${server.connectUrl}/countersign.v1.ApprovalService/SubmitDecision -H 'content-type: application/json' ` +
          `-d '{"id":"${approval.id}","approver":"${approver}","decision":"DECISION_APPROVE","reason":"looks good"}'\n`,
      );
    });
  }
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, "shutting down");
    server.close().then(
      () => {
        logger.info("stopped");
        process.exit(0);
      },
      (err: unknown) => {
        logger.error({ err }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGINT", () => stop("SIGINT"));
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGHUP", () => {
    server.reopenAuditLog();
    server.reloadPolicies().catch(() => {});
  });
}

/** Runs a Slack gateway in its own process (`--components slack`) until SIGINT / SIGTERM. */
async function runSlackGateway(config: ServeConfig, logger: Logger): Promise<void> {
  let gateway: Awaited<ReturnType<typeof startSlackGatewayProcess>>;
  try {
    gateway = await startSlackGatewayProcess(config, { logger });
  } catch (err) {
    logger.fatal({ err: (err as Error).message }, "the Slack gateway could not start");
    process.stderr.write(`countersign serve: ${(err as Error).message}\n`);
    process.exit(1);
  }
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, "shutting down");
    gateway.close().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGINT", () => stop("SIGINT"));
  process.on("SIGTERM", () => stop("SIGTERM"));
}
