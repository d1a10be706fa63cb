import { toJsonString } from "@bufbuild/protobuf";
import { timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import {
  type Approval,
  type CountersignClient,
  Decision,
  GetStatsResponseSchema,
  ListApprovalsResponseSchema,
  ReloadPoliciesResponseSchema,
  State,
} from "@countersign/sdk";
import type { Command } from "commander";
import { visibleText } from "../../server/domain/display-text.js";
import { formatDuration, parseDuration } from "../../server/policy/duration.js";
import {
  addOutputOption,
  approvalJson,
  detailLines,
  type OutputFormat,
  stateName,
  summaryLine,
} from "./approval-output.js";
import {
  addAdminTokenOption,
  addConnectionOptions,
  type ConnectionFlags,
  connect,
  runCommand,
  UsageError,
} from "./client-connection.js";

interface AdminFlags extends ConnectionFlags {
  adminToken?: string;
  output: OutputFormat;
}

const states: Record<string, State> = {
  pending: State.PENDING,
  approved: State.APPROVED,
  denied: State.DENIED,
  expired: State.EXPIRED,
  cancelled: State.CANCELLED,
};

/** A point in time: an ISO 8601 date/time, or a duration meaning that long ago (`24h`). */
function timeFlag(flag: string, text: string | undefined, now: number) {
  if (text === undefined) return undefined;
  try {
    return timestampFromMs(now - parseDuration(text));
  } catch {
    const ms = Date.parse(text);
    if (Number.isNaN(ms))
      throw new UsageError(
        `${flag} ${JSON.stringify(text)}: expected an ISO 8601 time or a duration ago (24h)`,
      );
    return timestampFromMs(ms);
  }
}

/** An admin subcommand with the connection options, the admin token and --output. */
function adminCommand(
  admin: Command,
  name: string,
  description: string,
  env: NodeJS.ProcessEnv,
  body: (
    client: CountersignClient,
    args: string[],
    flags: AdminFlags & Record<string, unknown>,
  ) => Promise<number>,
): Command {
  const command = admin.command(name).description(description);
  addOutputOption(command);
  addConnectionOptions(command);
  addAdminTokenOption(command);
  command.action((...params: unknown[]) => {
    // commander passes the arguments, then the options, then the command.
    const flags = params.at(-2) as AdminFlags & Record<string, unknown>;
    const args = params.slice(0, -2) as string[];
    return runCommand(() => body(connect(flags, env, { admin: true }).client, args, flags));
  });
  return command;
}

function printApproval(approval: Approval | undefined, output: OutputFormat): number {
  if (approval === undefined) throw new Error("the server answered without the approval");
  process.stdout.write(`${output === "json" ? approvalJson(approval) : summaryLine(approval)}\n`);
  return 0;
}

function decisionArg(text: string): Decision {
  if (text === "approve") return Decision.APPROVE;
  if (text === "deny") return Decision.DENY;
  throw new UsageError(`decision ${JSON.stringify(text)}: expected approve or deny`);
}

/**
 * `countersign admin list|get|resolve|cancel|reload-policies|stats`: the AdminService, authenticated with
 * the admin token (`--admin-token`, `ADMIN_TOKEN` or `ADMIN_TOKEN_FILE`).
 */
export function addAdminCommand(program: Command, env: NodeJS.ProcessEnv): void {
  const admin = program
    .command("admin")
    .description("operator commands (AdminService); need the admin token: ADMIN_TOKEN or --admin-token");

  adminCommand(admin, "list", "list approvals, newest first", env, async (client, _args, flags) => {
    const now = Date.now();
    const state = flags.state === undefined ? State.UNSPECIFIED : states[String(flags.state)];
    if (state === undefined)
      throw new UsageError(
        `--state ${JSON.stringify(flags.state)}: expected ${Object.keys(states).join(", ")}`,
      );
    const pageSize = flags.limit === undefined ? 0 : Number(flags.limit);
    if (flags.limit !== undefined && !(Number.isInteger(pageSize) && pageSize >= 1 && pageSize <= 500))
      throw new UsageError("--limit must be a whole number from 1 to 500");
    const after = timeFlag("--since", flags.since as string | undefined, now);
    const before = timeFlag("--until", flags.until as string | undefined, now);
    let pageToken = (flags.pageToken as string | undefined) ?? "";
    for (;;) {
      const page = await client.admin.listApprovals({
        state,
        action: (flags.action as string | undefined) ?? "",
        requester: (flags.requester as string | undefined) ?? "",
        pageSize,
        pageToken,
        ...(after === undefined ? {} : { createTimeAfter: after }),
        ...(before === undefined ? {} : { createTimeBefore: before }),
      });
      if (flags.output === "json") {
        if (flags.all === true) for (const a of page.approvals) process.stdout.write(`${approvalJson(a)}\n`);
        else process.stdout.write(`${visibleText(toJsonString(ListApprovalsResponseSchema, page))}\n`);
      } else {
        for (const a of page.approvals) {
          const created =
            a.createTime === undefined ? "-" : new Date(timestampMs(a.createTime)).toISOString();
          process.stdout.write(
            `${visibleText(a.id)}  ${stateName(a.state).padEnd(9)}  ${visibleText(a.action)}  ${visibleText(a.requester)}  ${created}  ${visibleText(a.title)}\n`,
          );
        }
      }
      pageToken = page.nextPageToken;
      if (pageToken === "") return 0;
      if (flags.all !== true) {
        if (flags.output !== "json")
          process.stderr.write(`more approvals: add --page-token ${pageToken}, or --all\n`);
        return 0;
      }
    }
  })
    .option("--state <state>", "only this state: pending, approved, denied, expired, cancelled")
    .option("--action <action>", "only this action")
    .option("--requester <identity>", "only approvals requested by this identity")
    .option("--since <time>", "created at or after: ISO 8601 time, or a duration ago (24h)")
    .option("--until <time>", "created before: ISO 8601 time, or a duration ago")
    .option("--limit <n>", "approvals per page, 1–500 (default 50)")
    .option("--page-token <token>", "continue from a previous page")
    .option("--all", "follow every page");

  adminCommand(admin, "get", "print any approval", env, async (client, [id], flags) => {
    const { approval } = await client.admin.getApproval({ id: id ?? "" });
    if (approval === undefined) throw new Error("the server answered without the approval");
    process.stdout.write(
      flags.output === "json" ? `${approvalJson(approval)}\n` : `${detailLines(approval).join("\n")}\n`,
    );
    return 0;
  }).argument("<id>", "the approval id");

  adminCommand(
    admin,
    "resolve",
    "approve or deny a pending approval as a break-glass override (audited as such)",
    env,
    async (client, [id, decision], flags) => {
      const response = await client.admin.resolveApproval({
        id: id ?? "",
        decision: decisionArg(decision ?? ""),
        reason: String(flags.reason),
        admin: (flags.as as string | undefined) ?? "",
      });
      return printApproval(response.approval, flags.output);
    },
  )
    .argument("<id>", "the approval id")
    .argument("<decision>", "approve or deny")
    .requiredOption("--reason <text>", "why the override is needed (mandatory)")
    .option("--as <admin>", "who is acting, recorded as the decider (default: admin)");

  adminCommand(admin, "cancel", "cancel any pending approval", env, async (client, [id], flags) => {
    const response = await client.admin.cancelApproval({
      id: id ?? "",
      reason: String(flags.reason),
      admin: (flags.as as string | undefined) ?? "",
    });
    return printApproval(response.approval, flags.output);
  })
    .argument("<id>", "the approval id")
    .requiredOption("--reason <text>", "why (mandatory)")
    .option("--as <admin>", "who is acting (default: admin)");

  adminCommand(
    admin,
    "reload-policies",
    "re-read the server's policy file; an invalid file keeps the current policies (exit status 1)",
    env,
    async (client, _args, flags) => {
      const result = await client.admin.reloadPolicies({ dryRun: flags.dryRun === true });
      if (flags.output === "json")
        process.stdout.write(`${visibleText(toJsonString(ReloadPoliciesResponseSchema, result))}\n`);
      else if (flags.dryRun === true)
        process.stdout.write(
          `valid: ${result.policyCount} policies, sha256 ${result.candidateSha256} (dry run: not applied)\n`,
        );
      else
        process.stdout.write(
          `${result.applied ? "applied" : "unchanged"}: ${result.policyCount} policies, sha256 ${result.sha256}\n`,
        );
      return 0;
    },
  ).option("--dry-run", "validate the file on disk without applying it");

  adminCommand(
    admin,
    "stats",
    "counts by state and the oldest pending approval",
    env,
    async (client, _a, flags) => {
      const stats = await client.admin.getStats({});
      if (flags.output === "json") {
        process.stdout.write(`${visibleText(toJsonString(GetStatsResponseSchema, stats))}\n`);
        return 0;
      }
      for (const count of stats.counts)
        process.stdout.write(`${stateName(count.state).padEnd(9)}  ${count.count}\n`);
      if (stats.oldestPendingAge !== undefined) {
        const ageMs = Number(stats.oldestPendingAge.seconds) * 1000;
        process.stdout.write(`oldest pending: ${stats.oldestPendingId} (${formatDuration(ageMs)} old)\n`);
      }
      return 0;
    },
  );
}
