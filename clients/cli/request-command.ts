import { readFileSync } from "node:fs";
import type { JsonObject } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import type { ApprovalRequest } from "@countersign/sdk";
import type { Command } from "commander";
import { addOutputOption, approvalJson, type OutputFormat } from "./approval-output.js";
import {
  addConnectionOptions,
  type ConnectionFlags,
  connect,
  durationFlag,
  runCommand,
  UsageError,
} from "./client-connection.js";
import { waitForOutcome } from "./wait-for-outcome.js";

interface RequestFlags extends ConnectionFlags {
  action: string;
  title?: string;
  justification?: string;
  param: string[];
  paramsJson?: string;
  onBehalfOf?: string;
  idempotencyKey?: string;
  repo?: string;
  branch?: string;
  pullRequest?: string;
  runId?: string;
  link: string[];
  expiresIn?: string;
  rerequestOf?: string;
  wait?: boolean;
  timeout?: string;
  cancelOnInterrupt?: boolean;
  output: OutputFormat;
}

const collect = (value: string, previous: string[]) => [...previous, value];

/** `key=value` → [key, value]; the value may contain `=`. */
function keyValue(flag: string, text: string): [string, string] {
  const at = text.indexOf("=");
  if (at <= 0) throw new UsageError(`${flag} ${JSON.stringify(text)}: expected key=value`);
  return [text.slice(0, at), text.slice(at + 1)];
}

function readParams(path: string): JsonObject {
  let text: string;
  try {
    text = readFileSync(path === "-" ? 0 : path, "utf8");
  } catch (err) {
    throw new UsageError(`cannot read --params-json ${path}: ${(err as NodeJS.ErrnoException).code ?? err}`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`--params-json ${path}: not JSON (${(err as Error).message})`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value))
    throw new UsageError(`--params-json ${path}: must hold a JSON object, e.g. {"service": "api"}`);
  return value as JsonObject;
}

/** The CreateApproval request the flags describe. */
function requestFromFlags(flags: RequestFlags): ApprovalRequest {
  // Prototype-free: every --param key is an own key of params, `__proto__` as much as any other.
  const params = Object.assign(
    Object.create(null) as JsonObject,
    flags.paramsJson === undefined ? {} : readParams(flags.paramsJson),
  );
  for (const text of flags.param) {
    const [key, value] = keyValue("--param", text);
    params[key] = value;
  }
  const links = flags.link.map((text) => {
    const [label, url] = keyValue("--link", text);
    return { label, url };
  });
  const origin = {
    ...(flags.repo === undefined ? {} : { repo: flags.repo }),
    ...(flags.branch === undefined ? {} : { branch: flags.branch }),
    ...(flags.pullRequest === undefined ? {} : { pullRequest: flags.pullRequest }),
    ...(flags.runId === undefined ? {} : { runId: flags.runId }),
    ...(links.length === 0 ? {} : { links }),
  };
  const expiresIn = durationFlag("--expires-in", flags.expiresIn);
  return {
    action: flags.action,
    title: flags.title ?? flags.action,
    ...(flags.justification === undefined ? {} : { justification: flags.justification }),
    ...(Object.keys(params).length === 0 ? {} : { params }),
    ...(flags.onBehalfOf === undefined ? {} : { onBehalfOf: flags.onBehalfOf }),
    ...(flags.idempotencyKey === undefined ? {} : { idempotencyKey: flags.idempotencyKey }),
    ...(Object.keys(origin).length === 0 ? {} : { origin }),
    ...(expiresIn === undefined ? {} : { overrides: { timeout: durationFromMs(expiresIn) } }),
    ...(flags.rerequestOf === undefined ? {} : { rerequestOf: flags.rerequestOf }),
  };
}

/**
 * `countersign request`: asks for approval; with `--wait`, waits for the decision and exits with its
 * outcome (0 approved, 10 denied, 11 expired, 12 cancelled, 1 error, 130 interrupted).
 */
export function addRequestCommand(program: Command, env: NodeJS.ProcessEnv): void {
  const command = program
    .command("request")
    .description(
      "ask for approval of an action; with --wait, wait for the decision and exit with its outcome:\n" +
        "0 approved, 10 denied, 11 expired, 12 cancelled, 1 error, 130 interrupted",
    )
    .requiredOption("--action <action>", "the action to approve, e.g. deploy.production")
    .option("--title <text>", "one-line summary shown to approvers (default: the action)")
    .option("--justification <text>", "why it should be approved")
    .option("--param <key=value>", "a parameter of the action (repeatable; values are strings)", collect, [])
    .option("--params-json <file>", "parameters as a JSON object from a file (- for stdin); --param wins")
    .option(
      "--on-behalf-of <person>",
      "the person it is for (a Slack user id or e-mail); they cannot approve it",
    )
    .option("--idempotency-key <key>", "makes retries safe: the same key returns the same approval")
    .option("--repo <repo>", "origin: source repository")
    .option("--branch <branch>", "origin: branch or ref")
    .option("--pull-request <pr>", "origin: pull request number or URL")
    .option("--run-id <id>", "origin: CI run id")
    .option("--link <label=url>", "origin: a link shown to approvers (repeatable)", collect, [])
    .option(
      "--expires-in <duration>",
      "a shorter deadline than the policy's, e.g. 15m (if the policy allows it)",
    )
    .option("--rerequest-of <id>", "asks again for a denied or expired approval")
    .option("--wait", "wait for the decision and exit with its outcome")
    .option("--timeout <duration>", "with --wait: give up after this long, e.g. 30m (exit status 1)")
    .option("--cancel-on-interrupt", "with --wait: cancel the approval on Ctrl-C, SIGTERM or --timeout")
    .addHelpText(
      "after",
      "\nWithout --output json, stdout is the approval id (without --wait) or the outcome line (with --wait);\n" +
        "progress goes to stderr. Ctrl-C leaves the approval pending unless --cancel-on-interrupt.\n\n" +
        "Example:\n  countersign request --action deploy.production --title 'Deploy api v42' \\\n" +
        "    --param service=api --param version=v42 --wait --timeout 30m",
    );
  addOutputOption(command);
  addConnectionOptions(command);
  command.action((flags: RequestFlags) =>
    runCommand(async () => {
      const request = requestFromFlags(flags);
      const timeoutMs = durationFlag("--timeout", flags.timeout);
      if (flags.wait !== true && (timeoutMs !== undefined || flags.cancelOnInterrupt === true))
        throw new UsageError("--timeout and --cancel-on-interrupt go with --wait");
      const { client, url } = connect(flags, env);
      const handle = await client.requestApproval(request);
      const { approval } = handle;
      if (flags.wait !== true) {
        process.stdout.write(`${flags.output === "json" ? approvalJson(approval) : approval.id}\n`);
        return 0;
      }
      const onInterrupt = flags.cancelOnInterrupt === true ? "cancels it" : "leaves it pending";
      process.stderr.write(
        `requested approval ${approval.id} (${approval.action}, policy ${approval.policyName}); ` +
          `waiting for a decision (Ctrl-C ${onInterrupt})\n`,
      );
      return waitForOutcome(handle, {
        output: flags.output,
        url,
        cancelOnInterrupt: flags.cancelOnInterrupt === true,
        everyUpdate: false,
        ...(timeoutMs === undefined ? {} : { timeoutMs }),
      });
    }),
  );
}
