import type { Command } from "commander";
import { addOutputOption, approvalJson, detailLines, type OutputFormat } from "./approval-output.js";
import { addConnectionOptions, type ConnectionFlags, connect, runCommand } from "./client-connection.js";

interface GetFlags extends ConnectionFlags {
  output: OutputFormat;
}

/** `countersign get ID`: prints an approval. */
export function addGetCommand(program: Command, env: NodeJS.ProcessEnv): void {
  const command = program.command("get").description("print an approval").argument("<id>", "the approval id");
  addOutputOption(command);
  addConnectionOptions(command);
  command.action((id: string, flags: GetFlags) =>
    runCommand(async () => {
      const approval = await connect(flags, env).client.getHandle(id).get();
      process.stdout.write(
        flags.output === "json" ? `${approvalJson(approval)}\n` : `${detailLines(approval).join("\n")}\n`,
      );
      return 0;
    }),
  );
}
