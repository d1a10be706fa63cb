#!/usr/bin/env node
// First: enables gRPC tracing before anything loads grpc-js, when OTEL_* variables ask for tracing.
import "./tracing-preload.js";
import { Command } from "commander";
import { version } from "../../server/version.js";
import { addAdminCommand } from "./admin-command.js";
import { addArchiveCommand } from "./archive-command.js";
import { addAuditCommand } from "./audit-command.js";
import { addCancelCommand } from "./cancel-command.js";
import { addDecideCommand } from "./decide-command.js";
import { addGetCommand } from "./get-command.js";
import { addMcpCommand } from "./mcp-command.js";
import { addPolicyCommand } from "./policy-command.js";
import { addProbeCommand } from "./probe-command.js";
import { addRequestCommand } from "./request-command.js";
import { addServeCommand } from "./serve-command.js";
import { addWatchCommand } from "./watch-command.js";

/** The `countersign` command line. */
export function createProgram(): Command {
  const program = new Command("countersign")
    .description("Countersign: human approval for risky actions, decided in Slack, streamed back over gRPC")
    .version(version, "-V, --version")
    .showHelpAfterError();
  addServeCommand(program);
  addRequestCommand(program, process.env);
  addWatchCommand(program, process.env);
  addGetCommand(program, process.env);
  addCancelCommand(program, process.env);
  addDecideCommand(program, process.env);
  addAdminCommand(program, process.env);
  addMcpCommand(program, process.env);
  addPolicyCommand(program);
  addArchiveCommand(program);
  addAuditCommand(program);
  addProbeCommand(program);
  return program;
}

createProgram()
  .parseAsync(process.argv)
  .catch((err: unknown) => {
    process.stderr.write(`countersign: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  });
