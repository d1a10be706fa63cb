import { randomUUID } from "node:crypto";
import type { JsonObject } from "@bufbuild/protobuf";
import {
  AbortedError,
  type Approval,
  type ApprovalHandle,
  type CountersignClient,
  DeadlineExceededError,
  isFinalState,
  RpcError,
} from "@countersign/sdk";
import { McpServer, type ToolCallback } from "@modelcontextprotocol/sdk/server/mcp.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { z } from "zod";
import { version } from "../../server/version.js";
import { describeError } from "./client-connection.js";
import { approvalResult, approvalResultSchema, approvalText, progressText } from "./mcp-approval-result.js";

/** Options of `createApprovalMcpServer`. */
export interface ApprovalMcpServerOptions {
  /** The Countersign client; its certificate is the identity every approval is requested under. */
  client: CountersignClient;
  /** Cancel an approval when the MCP client cancels the call that waits for it (or the server stops). */
  cancelOnInterrupt: boolean;
  /**
   * How often a waiting call sends a progress notification when nothing changed (for clients with an
   * idle timeout), in milliseconds; 0 for only on changes. @default 15000
   */
  progressIntervalMs?: number;
  /** Where the server reports what it did (stderr: stdout is the MCP channel). */
  log: (line: string) => void;
  /** Why the server is stopping, once it is (its waits then end for that reason, not the client's). */
  stopping?: () => string | undefined;
  /** Told when a tool call starts and ends, so a shutdown can wait for cancellations to finish. */
  track?: (call: Promise<unknown>) => void;
}

/**
 * Params are data: a key named `__proto__` is a key like any other, as on every other path into the API.
 * zod builds a record by assignment, which would drop such a key without a word, so it is carried through
 * validation under an unguessable name and given back its own name afterwards.
 */
const protoKey = "__proto__";
const protoMarker = `\u0000${randomUUID()}`;
const renameKeys = (value: object, from: string, to: string) =>
  Object.fromEntries(Object.entries(value).map(([k, v]) => [k === from ? to : k, v]));
const jsonObject = z
  .preprocess(
    (v) =>
      typeof v === "object" && v !== null && !Array.isArray(v) && Object.hasOwn(v, protoKey)
        ? renameKeys(v, protoKey, protoMarker)
        : v,
    z.record(z.string(), z.unknown()),
  )
  .transform((params) => renameKeys(params, protoMarker, protoKey))
  // Required, as the record it wraps (a preprocess alone would accept a missing value).
  .nonoptional();

/** The longest wait one call may ask for (a day); longer waits use wait_for_approval again. */
const maxWaitSeconds = 86_400;

const requestApprovalInput = z.strictObject({
  action: z
    .string()
    .min(1)
    .describe("the action to approve, as the policies name it, e.g. agent.shell or deploy.production"),
  title: z.string().min(1).describe("one-line summary shown to the approvers"),
  justification: z.string().describe("why you want to do it, for the approvers"),
  params: jsonObject.describe(
    "the exact parameters of the action as a JSON object; approvers see them and may edit them, and the result gives the final ones",
  ),
  idempotency_key: z
    .string()
    .min(1)
    .optional()
    .describe("makes retries safe: the same key returns the same approval instead of a new one"),
  on_behalf_of: z
    .string()
    .min(1)
    .optional()
    .describe("the person you act for (a Slack user id or e-mail); they cannot approve it themselves"),
  wait: z
    .boolean()
    .default(true)
    .describe("wait for the decision (true) or return at once with the pending approval (false)"),
  timeout_seconds: z
    .number()
    .int()
    .min(1)
    .max(maxWaitSeconds)
    .optional()
    .describe(
      "with wait: stop waiting after this many seconds and return the approval still pending (default: until decided or expired)",
    ),
});

const idInput = z.string().min(1).describe("the approval id, as request_approval returned it");

const waitForApprovalInput = z.strictObject({
  id: idInput,
  timeout_seconds: z
    .number()
    .int()
    .min(1)
    .max(maxWaitSeconds)
    .describe("stop waiting after this many seconds and return the approval as it stands"),
});

const getApprovalInput = z.strictObject({ id: idInput });

const cancelApprovalInput = z.strictObject({
  id: idInput,
  reason: z.string().min(1).describe("why you withdraw the request (shown to the approvers)"),
});

type Extra = Parameters<ToolCallback<typeof getApprovalInput>>[1];

/** A tool result for an approval: the plain-text summary and the structured content. */
function resultFor(approval: Approval, created?: boolean): CallToolResult {
  return {
    content: [{ type: "text", text: approvalText(approval) }],
    structuredContent: approvalResult(approval, created),
  };
}

/** A tool error: the call failed, and the text says why in words that say what to do. */
function errorResult(err: unknown): CallToolResult {
  return { content: [{ type: "text", text: describeError(err) }], isError: true };
}

/**
 * Sends MCP progress notifications for a call that waits, when the client gave a progress token: on every
 * change of the approval, on every reconnection, and every `intervalMs` while nothing changes.
 */
function createProgressReporter(extra: Extra, intervalMs: number) {
  const token = extra._meta?.progressToken;
  let sent = 0;
  let message: string | undefined;
  let timer: NodeJS.Timeout | undefined;
  const send = () => {
    if (token === undefined || message === undefined) return;
    sent++;
    extra
      .sendNotification({
        method: "notifications/progress",
        params: { progressToken: token, progress: sent, message },
      })
      .catch(() => {
        // The client has gone; the wait ends through extra.signal.
      });
  };
  if (token !== undefined && intervalMs > 0) timer = setInterval(send, intervalMs);
  return {
    report(text: string) {
      message = text;
      send();
    },
    stop() {
      clearInterval(timer);
    },
  };
}

/**
 * Creates the MCP server with the approval tools — request_approval, wait_for_approval, get_approval and
 * cancel_approval — as a client of the Countersign API. Connect it to a transport (stdio, Streamable HTTP).
 */
export function createApprovalMcpServer(options: ApprovalMcpServerOptions): McpServer {
  const { client, log } = options;
  const progressIntervalMs = options.progressIntervalMs ?? 15_000;
  const server = new McpServer(
    { name: "countersign", version },
    {
      instructions:
        "Countersign asks humans to approve an action before you take it. Call request_approval before a risky " +
        "action and proceed only when the result says APPROVED, with exactly the params it returns.",
    },
  );

  /** Runs a tool body; any error becomes a tool error, and the call is tracked for shutdown. */
  const tool =
    <A>(body: (args: A, extra: Extra) => Promise<CallToolResult>) =>
    (args: A, extra: Extra): Promise<CallToolResult> => {
      const call = body(args, extra).catch(errorResult);
      options.track?.(call);
      return call;
    };

  /**
   * Waits for the decision, reporting progress. The time running out returns the approval as it stands; the
   * client cancelling the call ends the wait (and, with cancelOnInterrupt, cancels the approval).
   */
  const waitForDecision = async (
    handle: ApprovalHandle,
    timeoutSeconds: number | undefined,
    extra: Extra,
  ): Promise<Approval> => {
    const progress = createProgressReporter(extra, progressIntervalMs);
    try {
      return await handle.waitForDecision({
        signal: extra.signal,
        ...(timeoutSeconds === undefined ? {} : { timeoutMs: timeoutSeconds * 1000 }),
        onUpdate: (approval) => {
          if (!isFinalState(approval.state)) progress.report(progressText(approval));
        },
        onReconnect: (event) => {
          const why = event.error instanceof RpcError ? event.error.rawMessage : event.error.message;
          progress.report(`connection lost (${why}); reconnecting in ${event.delayMs} ms`);
        },
      });
    } catch (err) {
      if (err instanceof DeadlineExceededError && timeoutSeconds !== undefined && !extra.signal.aborted)
        return await handle.get();
      if (err instanceof AbortedError && extra.signal.aborted) {
        const stopping = options.stopping?.();
        const given = typeof extra.signal.reason === "string" ? `: ${extra.signal.reason}` : "";
        const why =
          stopping === undefined
            ? `the agent's MCP client cancelled the wait${given}`
            : `countersign mcp stopped (${stopping})`;
        if (options.cancelOnInterrupt) {
          const cancelled = await handle.cancel({ reason: why, timeoutMs: 10_000 });
          log(`${why}; cancelled approval ${handle.id}`);
          return cancelled;
        }
        log(`${why}; approval ${handle.id} is left pending`);
      }
      throw err;
    } finally {
      progress.stop();
    }
  };

  server.registerTool(
    "request_approval",
    {
      title: "Request human approval",
      description:
        "Ask a human to approve an action before you take it. With wait (the default), holds the call until " +
        "the approval is decided, sending progress notifications meanwhile. The result says APPROVED (proceed " +
        "with exactly the returned params), or DENIED, EXPIRED or CANCELLED (do not proceed), or PENDING (not " +
        "approved yet: call wait_for_approval).",
      inputSchema: requestApprovalInput,
      outputSchema: approvalResultSchema,
      annotations: {
        readOnlyHint: false,
        destructiveHint: false,
        idempotentHint: false,
        openWorldHint: true,
      },
    },
    tool(async (args: z.infer<typeof requestApprovalInput>, extra) => {
      const handle = await client.requestApproval(
        {
          action: args.action,
          title: args.title,
          justification: args.justification,
          params: args.params as JsonObject,
          ...(args.idempotency_key === undefined ? {} : { idempotencyKey: args.idempotency_key }),
          ...(args.on_behalf_of === undefined ? {} : { onBehalfOf: args.on_behalf_of }),
        },
        { signal: extra.signal },
      );
      log(
        `requested approval ${handle.id} (${handle.approval.action}, policy ${handle.approval.policyName})` +
          (handle.created ? "" : " (idempotency key matched an existing approval)"),
      );
      if (!args.wait || isFinalState(handle.approval.state))
        return resultFor(handle.approval, handle.created);
      const final = await waitForDecision(handle, args.timeout_seconds, extra);
      return resultFor(final, handle.created);
    }),
  );

  server.registerTool(
    "wait_for_approval",
    {
      title: "Wait for an approval's decision",
      description:
        "Wait up to timeout_seconds for the decision on an approval, then return it as it stands. For clients " +
        "whose tool calls cannot stay open long: call it again while the result says PENDING.",
      inputSchema: waitForApprovalInput,
      outputSchema: approvalResultSchema,
      annotations: { readOnlyHint: true, openWorldHint: true },
    },
    tool(async (args: z.infer<typeof waitForApprovalInput>, extra) => {
      const handle = client.getHandle(args.id);
      // Fails fast (unknown id, unreachable server) before the wait starts.
      const current = await handle.get({ signal: extra.signal });
      if (isFinalState(current.state)) return resultFor(current);
      return resultFor(await waitForDecision(handle, args.timeout_seconds, extra));
    }),
  );

  server.registerTool(
    "get_approval",
    {
      title: "Get an approval",
      description: "Return an approval as it stands now, without waiting.",
      inputSchema: getApprovalInput,
      outputSchema: approvalResultSchema,
      annotations: { readOnlyHint: true, openWorldHint: true },
    },
    tool(async (args: z.infer<typeof getApprovalInput>, extra) =>
      resultFor(await client.getHandle(args.id).get({ signal: extra.signal })),
    ),
  );

  server.registerTool(
    "cancel_approval",
    {
      title: "Cancel an approval",
      description:
        "Withdraw a pending approval you requested (e.g. you no longer need to take the action). Fails if it is already decided.",
      inputSchema: cancelApprovalInput,
      outputSchema: approvalResultSchema,
      annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: true },
    },
    tool(async (args: z.infer<typeof cancelApprovalInput>, extra) => {
      const cancelled = await client.getHandle(args.id).cancel({ reason: args.reason, signal: extra.signal });
      log(`cancelled approval ${cancelled.id}`);
      return resultFor(cancelled);
    }),
  );

  return server;
}
