import type { Command } from "commander";
import { addOutputOption, approvalJson, type OutputFormat, summaryLine } from "./approval-output.js";
import { addConnectionOptions, type ConnectionFlags, connect, runCommand } from "./client-connection.js";

interface CancelFlags extends ConnectionFlags {
  reason?: string;
  output: OutputFormat;
}

/** `countersign cancel ID`: withdraws a pending approval you requested. */
export function addCancelCommand(program: Command, env: NodeJS.ProcessEnv): void {
  const command = program
    .command("cancel")
    .description("withdraw a pending approval you requested")
    .argument("<id>", "the approval id")
    .option("--reason <text>", "why (shown to approvers)");
  addOutputOption(command);
  addConnectionOptions(command);
  command.action((id: string, flags: CancelFlags) =>
    runCommand(async () => {
      const approval = await connect(flags, env)
        .client.getHandle(id)
        .cancel(flags.reason === undefined ? {} : { reason: flags.reason });
      process.stdout.write(`${flags.output === "json" ? approvalJson(approval) : summaryLine(approval)}\n`);
      return 0;
    }),
  );
}
