import { randomUUID } from "node:crypto";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { createMcpExpressApp } from "@modelcontextprotocol/sdk/server/express.js";
import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { isInitializeRequest } from "@modelcontextprotocol/sdk/types.js";
import type { Request, Response } from "express";

/** Sessions open at once; a new one beyond this is refused (503). */
const maxSessions = 100;
/** A session with no open request and no activity for this long is closed. */
const idleSessionMs = 30 * 60_000;

interface Session {
  transport: StreamableHTTPServerTransport;
  server: McpServer;
  open: number;
  lastActive: number;
}

/** A running Streamable HTTP endpoint. */
export interface McpHttpEndpoint {
  /** The MCP endpoint, e.g. `http://127.0.0.1:8765/mcp`. */
  url: string;
  /** Closes every session (their waits end) and stops listening. */
  close(): Promise<void>;
}

const jsonRpcError = (res: Response, status: number, code: number, message: string) =>
  res.status(status).json({ jsonrpc: "2.0", error: { code, message }, id: null });

/**
 * Serves MCP over Streamable HTTP at `/mcp` on a loopback address, one MCP server (from `createServer`)
 * per session. Requests whose Host header is not the loopback address are refused (DNS rebinding).
 */
export async function serveMcpHttp(
  listen: { host: string; port: number },
  createServer: () => McpServer,
): Promise<McpHttpEndpoint> {
  const hostName = listen.host.includes(":") ? `[${listen.host}]` : listen.host;
  const app = createMcpExpressApp({
    host: listen.host,
    allowedHosts: [...new Set([hostName, "localhost", "127.0.0.1", "[::1]"])],
  });
  const sessions = new Map<string, Session>();
  const track = (session: Session, res: Response) => {
    session.open++;
    res.on("close", () => {
      session.open--;
      session.lastActive = Date.now();
    });
  };
  const existing = (req: Request) => {
    const id = req.headers["mcp-session-id"];
    return typeof id === "string" ? sessions.get(id) : undefined;
  };

  app.post("/mcp", async (req: Request, res: Response) => {
    const session = existing(req);
    if (session !== undefined) {
      track(session, res);
      await session.transport.handleRequest(req, res, req.body);
      return;
    }
    if (req.headers["mcp-session-id"] !== undefined) {
      jsonRpcError(res, 404, -32001, "Session not found");
      return;
    }
    if (!isInitializeRequest(req.body)) {
      jsonRpcError(res, 400, -32000, "Bad Request: no valid session id, and not an initialize request");
      return;
    }
    if (sessions.size >= maxSessions) {
      jsonRpcError(res, 503, -32000, `Too many open sessions (${maxSessions})`);
      return;
    }
    const server = createServer();
    const transport: StreamableHTTPServerTransport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      onsessioninitialized: (id) => {
        sessions.set(id, { transport, server, open: 0, lastActive: Date.now() });
      },
    });
    transport.onclose = () => {
      if (transport.sessionId !== undefined) sessions.delete(transport.sessionId);
    };
    await server.connect(transport);
    await transport.handleRequest(req, res, req.body);
  });

  const getOrDelete = async (req: Request, res: Response) => {
    const session = existing(req);
    if (session === undefined) {
      jsonRpcError(res, 404, -32001, "Session not found");
      return;
    }
    track(session, res);
    await session.transport.handleRequest(req, res);
  };
  app.get("/mcp", getOrDelete);
  app.delete("/mcp", getOrDelete);

  const reaper = setInterval(() => {
    const cutoff = Date.now() - idleSessionMs;
    for (const session of sessions.values()) {
      if (session.open === 0 && session.lastActive < cutoff) void session.server.close().catch(() => {});
    }
  }, 60_000);
  reaper.unref();

  const http = await new Promise<Server>((resolve, reject) => {
    const listening = app.listen(listen.port, listen.host, (err?: Error) =>
      err === undefined ? resolve(listening) : reject(err),
    );
  });
  const { port } = http.address() as AddressInfo;
  return {
    url: `http://${hostName}:${port}/mcp`,
    async close() {
      clearInterval(reaper);
      await Promise.allSettled([...sessions.values()].map((session) => session.server.close()));
      http.closeAllConnections();
      await new Promise<void>((resolve) => http.close(() => resolve()));
    },
  };
}
