import { randomUUID } from "node:crypto";
import { Decision } from "@countersign/sdk";
import type { Command } from "commander";
import { addOutputOption, approvalJson, type OutputFormat, summaryLine } from "./approval-output.js";
import {
  addConnectionOptions,
  type ConnectionFlags,
  connect,
  runCommand,
  UsageError,
} from "./client-connection.js";

interface DecideFlags extends ConnectionFlags {
  as: string;
  reason?: string;
  group: string[];
  output: OutputFormat;
}

const decisions: Record<string, Decision> = {
  approve: Decision.APPROVE,
  deny: Decision.DENY,
  acknowledge: Decision.ACKNOWLEDGE,
};

/**
 * `countersign decide ID approve|deny|acknowledge --as APPROVER`: submits one person's vote. Needs a
 * decider identity (the Slack gateway's certificate, or anyone on the development server).
 */
export function addDecideCommand(program: Command, env: NodeJS.ProcessEnv): void {
  const command = program
    .command("decide")
    .description(
      "vote on an approval as APPROVER (needs a decider identity: the development server, or the Slack gateway's certificate)",
    )
    .argument("<id>", "the approval id")
    .argument("<decision>", "approve, deny, or acknowledge (a co-sign stage)")
    .requiredOption("--as <approver>", "the person deciding (a Slack user id or e-mail)")
    .option("--reason <text>", "why (some policies require one to deny)")
    .option(
      "--group <id>",
      "a Slack user group the approver belongs to (repeatable)",
      (v: string, p: string[]) => [...p, v],
      [],
    )
    .addHelpText(
      "after",
      "\nExample:\n  countersign decide 01J9Z... approve --as alice --reason 'looks good'",
    );
  addOutputOption(command);
  addConnectionOptions(command);
  command.action((id: string, decisionText: string, flags: DecideFlags) =>
    runCommand(async () => {
      const decision = decisions[decisionText];
      if (decision === undefined)
        throw new UsageError(
          `decision ${JSON.stringify(decisionText)}: expected approve, deny or acknowledge`,
        );
      const { client } = connect(flags, env);
      const response = await client.approvals.submitDecision({
        id,
        approver: flags.as,
        approverGroups: flags.group,
        decision,
        reason: flags.reason ?? "",
        interactionId: `cli-${randomUUID()}`,
      });
      const approval = response.approval;
      if (approval === undefined) throw new Error("the server answered without the approval");
      if (!response.recorded)
        process.stderr.write(`countersign: ${flags.as}'s vote changed nothing (already recorded)\n`);
      process.stdout.write(`${flags.output === "json" ? approvalJson(approval) : summaryLine(approval)}\n`);
      return 0;
    }),
  );
}
