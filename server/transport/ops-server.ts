import * as http from "node:http";

/** A readiness check: resolves to undefined when ready, or to the reason it is not. */
export type ReadinessCheck = () => Promise<string | undefined>;

/** Options of `createOpsServer`. */
export interface OpsServerOptions {
  /** Each named check must pass for `/readyz` to answer 200. */
  readiness: Record<string, ReadinessCheck>;
  /** Reported by `/version`. */
  version: string;
}

/**
 * The operations endpoint: `/healthz` (the process is alive) and `/readyz` (every readiness check
 * passes), as JSON.
 */
export function createOpsServer(options: OpsServerOptions): http.Server {
  return http.createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { "content-type": "application/json", "cache-control": "no-store" });
      res.end(`${JSON.stringify(body)}\n`);
    };
    if (req.method !== "GET" && req.method !== "HEAD") {
      send(405, { error: "method not allowed" });
      return;
    }
    if (path === "/healthz") {
      send(200, { status: "ok" });
      return;
    }
    if (path === "/version") {
      send(200, { version: options.version });
      return;
    }
    if (path === "/readyz") {
      const entries = Object.entries(options.readiness);
      Promise.all(
        entries.map(async ([name, check]) => {
          try {
            return [name, (await check()) ?? "ok"] as const;
          } catch (err) {
            return [name, (err as Error).message] as const;
          }
        }),
      ).then(
        (results) => {
          const ready = results.every(([, r]) => r === "ok");
          send(ready ? 200 : 503, {
            status: ready ? "ready" : "not ready",
            checks: Object.fromEntries(results),
          });
        },
        () => send(503, { status: "not ready" }),
      );
      return;
    }
    send(404, { error: "not found", paths: ["/healthz", "/readyz", "/version"] });
  });
}
