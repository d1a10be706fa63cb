import type { Command } from "commander";
import { isLoopback, type ListenAddress, parseListen } from "../../server/config/config.js";
import {
  addConnectionOptions,
  type ConnectionFlags,
  connect,
  durationFlag,
  runCommand,
  UsageError,
} from "./client-connection.js";

interface McpFlags extends ConnectionFlags {
  httpListen?: string;
  cancelOnInterrupt?: boolean;
  progressInterval: string;
}

/**
 * Failed reconnections in a row after which a wait gives up with a tool error naming the URL (with the
 * SDK's backoff, capped at 10 s, a few minutes without the server).
 */
const maxReconnectAttempts = 30;
/** How long a shutdown waits for calls to finish (cancellations with --cancel-on-interrupt). */
const shutdownGraceMs = 15_000;

function httpListenFlag(text: string): ListenAddress {
  const problems: string[] = [];
  const address = parseListen("http-listen", text, problems);
  if (problems.length > 0) throw new UsageError(problems.join("; "));
  if (!isLoopback(address.host))
    throw new UsageError(
      `--http-listen ${address.host}: the MCP endpoint has no authentication of its own, so it listens only on loopback (127.0.0.1, ::1 or localhost)`,
    );
  return address;
}

/**
 * `countersign mcp`: an MCP server with the approval tools (request_approval, wait_for_approval,
 * get_approval, cancel_approval) over stdio, or over Streamable HTTP on loopback with `--http-listen`.
 * It is a client of the API: its client certificate is the identity of every approval it requests.
 */
export function addMcpCommand(program: Command, env: NodeJS.ProcessEnv): void {
  const command = program
    .command("mcp")
    .description(
      "serve the approval tools to AI agents over the Model Context Protocol (stdio, or Streamable HTTP with --http-listen)",
    )
    .option(
      "--http-listen <host:port>",
      "serve MCP over Streamable HTTP at http://host:port/mcp instead of stdio (loopback only)",
    )
    .option(
      "--cancel-on-interrupt",
      "cancel an approval when the MCP client cancels the call waiting for it, or the server stops",
    )
    .option(
      "--progress-interval <duration>",
      "while a call waits, send a progress notification at least this often (0s: only on changes)",
      "15s",
    )
    .addHelpText(
      "after",
      "\nstdout is the MCP channel; what the server does is logged to stderr. See docs/agents.md for the\n" +
        "tools and ready-to-paste client configuration.\n\n" +
        "Example (the agent's identity is its client certificate):\n" +
        "  COUNTERSIGN_URL=https://countersign.internal:8443 COUNTERSIGN_CA=ca.pem \\\n" +
        "  COUNTERSIGN_CERT=agent.pem COUNTERSIGN_KEY=agent-key.pem countersign mcp",
    );
  addConnectionOptions(command);
  command.action((flags: McpFlags) =>
    runCommand(async () => {
      const progressIntervalMs = durationFlag("--progress-interval", flags.progressInterval) ?? 15_000;
      const listen = flags.httpListen === undefined ? undefined : httpListenFlag(flags.httpListen);
      const { client, url } = connect(flags, env, { reconnect: { maxAttempts: maxReconnectAttempts } });
      // Loaded here, so that the other commands do not load the MCP SDK.
      const { createApprovalMcpServer } = await import("./mcp-tools.js");
      const log = (line: string) => process.stderr.write(`countersign mcp: ${line}\n`);
      const calls = new Set<Promise<unknown>>();
      let stopReason: string | undefined;
      const createServer = () =>
        createApprovalMcpServer({
          client,
          cancelOnInterrupt: flags.cancelOnInterrupt === true,
          progressIntervalMs,
          log,
          stopping: () => stopReason,
          track: (call) => {
            calls.add(call);
            void call.finally(() => calls.delete(call));
          },
        });

      let stop: () => Promise<void>;
      const stopped = new Promise<string>((resolve) => {
        process.once("SIGINT", () => resolve("SIGINT"));
        process.once("SIGTERM", () => resolve("SIGTERM"));
        if (listen === undefined) process.stdin.once("end", () => resolve("the client closed stdin"));
      });
      if (listen === undefined) {
        const { StdioServerTransport } = await import("@modelcontextprotocol/sdk/server/stdio.js");
        const server = createServer();
        await server.connect(new StdioServerTransport());
        stop = () => server.close();
        log(`serving the approval tools on stdio; Countersign at ${url}`);
      } else {
        const { serveMcpHttp } = await import("./mcp-http.js");
        const endpoint = await serveMcpHttp(listen, createServer);
        stop = endpoint.close;
        log(`serving the approval tools at ${endpoint.url} (Streamable HTTP); Countersign at ${url}`);
      }

      stopReason = await stopped;
      log(`stopping (${stopReason})`);
      await stop();
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.allSettled(calls),
        new Promise((resolve) => {
          timer = setTimeout(resolve, shutdownGraceMs);
        }),
      ]);
      clearTimeout(timer);
      return 0;
    }),
  );
}
