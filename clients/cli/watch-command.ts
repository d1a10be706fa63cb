import type { Command } from "commander";
import { addOutputOption, type OutputFormat } from "./approval-output.js";
import {
  addConnectionOptions,
  type ConnectionFlags,
  connect,
  durationFlag,
  runCommand,
} from "./client-connection.js";
import { waitForOutcome } from "./wait-for-outcome.js";

interface WatchFlags extends ConnectionFlags {
  timeout?: string;
  output: OutputFormat;
}

/**
 * `countersign watch ID`: prints the approval's state and every change until it is decided, then exits
 * with its outcome (0 approved, 10 denied, 11 expired, 12 cancelled).
 */
export function addWatchCommand(program: Command, env: NodeJS.ProcessEnv): void {
  const command = program
    .command("watch")
    .description(
      "print an approval's state and every change until it is decided; exit with its outcome:\n" +
        "0 approved, 10 denied, 11 expired, 12 cancelled, 1 error, 130 interrupted",
    )
    .argument("<id>", "the approval id")
    .option("--timeout <duration>", "give up after this long, e.g. 30m (exit status 1)");
  addOutputOption(command);
  addConnectionOptions(command);
  command.action((id: string, flags: WatchFlags) =>
    runCommand(async () => {
      const timeoutMs = durationFlag("--timeout", flags.timeout);
      const { client, url } = connect(flags, env);
      return waitForOutcome(client.getHandle(id), {
        output: flags.output,
        url,
        cancelOnInterrupt: false,
        everyUpdate: true,
        ...(timeoutMs === undefined ? {} : { timeoutMs }),
      });
    }),
  );
}
