import * as http from "node:http";

/**
 * A readiness check: resolves to undefined when ready, to the reason it is not, or to a `ReadinessNote`:
 * something operators should see that does not make the server unready.
 */
export type ReadinessCheck = () => Promise<string | undefined | ReadinessNote>;

/** What a check reports without failing readiness (shown in `/readyz` in place of "ok"). */
export interface ReadinessNote {
  note: string;
}

/** The outcome of the readiness checks: each check's "ok" or reason. */
export interface ReadinessResult {
  ready: boolean;
  checks: Record<string, string>;
}

/** Runs every readiness check; a check that throws reports its message. */
export async function evaluateReadiness(checks: Record<string, ReadinessCheck>): Promise<ReadinessResult> {
  const results = await Promise.all(
    Object.entries(checks).map(async ([name, check]) => {
      try {
        const result = (await check()) ?? "ok";
        if (typeof result !== "string") return [name, result.note, true] as const;
        return [name, result, result === "ok"] as const;
      } catch (err) {
        return [name, (err as Error).message, false] as const;
      }
    }),
  );
  return {
    ready: results.every(([, , passed]) => passed),
    checks: Object.fromEntries(results.map(([name, text]) => [name, text])),
  };
}

/** Options of `createOpsServer`. */
export interface OpsServerOptions {
  /** Each named check must pass for `/readyz` to answer 200. */
  readiness: Record<string, ReadinessCheck>;
  /** Called with the result of every `/readyz` evaluation (gRPC health follows it). */
  onReadiness?: (result: ReadinessResult) => void;
  /** More GET routes by path, e.g. `/metrics`. */
  routes?: Record<string, http.RequestListener>;
  /** Reported by `/version`. */
  version: string;
}

/**
 * The operations endpoint: `/healthz` (the process is alive) and `/readyz` (every readiness check
 * passes), as JSON, and the extra `routes` (`/metrics`).
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
      evaluateReadiness(options.readiness).then(
        (result) => {
          options.onReadiness?.(result);
          send(result.ready ? 200 : 503, {
            status: result.ready ? "ready" : "not ready",
            checks: result.checks,
          });
        },
        () => send(503, { status: "not ready" }),
      );
      return;
    }
    const route = path === undefined ? undefined : options.routes?.[path];
    if (route !== undefined) {
      route(req, res);
      return;
    }
    send(404, {
      error: "not found",
      paths: ["/healthz", "/readyz", "/version", ...Object.keys(options.routes ?? {})],
    });
  });
}
