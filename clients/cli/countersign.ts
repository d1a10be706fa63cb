#!/usr/bin/env node
import { Command } from "commander";
import { addPolicyCommand } from "./policy-command.js";
import { addServeCommand } from "./serve-command.js";
import { version } from "../../server/version.js";

/** The `countersign` command line. */
export function createProgram(): Command {
  const program = new Command("countersign")
    .description("Countersign: human approval for risky actions, decided in Slack, streamed back over gRPC")
    .version(version, "-V, --version")
    .showHelpAfterError();
  addServeCommand(program);
  addPolicyCommand(program);
  return program;
}

createProgram()
  .parseAsync(process.argv)
  .catch((err: unknown) => {
    process.stderr.write(`countersign: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  });
