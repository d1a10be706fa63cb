/**
 * The HTTP front of the interactivity endpoint. Before Bolt sees a request it: reads the body up to a cap
 * (never hashing more), verifies Slack's v0 signature and the ±300 s timestamp window (Bolt alone rejects
 * only old ones), refuses with 400, naming the field, a body that is not an interaction the gateway
 * handles, and claims the signature in the replay cache (the same signed request is accepted once; while
 * the shared cache cannot answer in time, this process's own memory of signatures answers alone, so a
 * click is still acknowledged within Slack's 3 s when Redis is down).
 * A request failing the signature, timestamp or replay check gets 401 (413 for an oversized body) and a
 * security event; no request gets a 5xx.
 * Bolt's HTTPReceiver, with its own verification off, then parses the verified body and runs the listeners.
 */
import type * as http from "node:http";
import type { Clock } from "../domain/clock.js";
import { type Claims, createMemoryClaims } from "../store/claims.js";
import type { SlackGatewayEventListener } from "./gateway-events.js";
import { interactionRequestProblem } from "./interactions.js";
import { slackTimestampToleranceSec, verifySlackSignature } from "./slack-signature.js";

/** The path Slack posts interactions (and events) to: Bolt's usual one. */
export const slackEventsPath = "/slack/events";

/** Options of `createSlackRequestHandler`. */
export interface SlackRequestHandlerOptions {
  signingSecret: string;
  /** Replay cache shared by the replicas: a claim per signature for the timestamp window. */
  claims: Claims;
  clock: Clock;
  onEvent: SlackGatewayEventListener;
  /** Hands a verified request, its body in `rawBody`, to Bolt. */
  next: (req: http.IncomingMessage & { rawBody: Buffer }, res: http.ServerResponse) => void;
  /** Largest body read. @default 262144 */
  maxBodyBytes?: number;
  /**
   * How long the shared replay cache may take before this process's own memory of signatures answers
   * alone. @default 1000
   */
  claimTimeoutMs?: number;
}

type BodyResult = { ok: true; body: Buffer } | { ok: false; status: number; reason: string };

/** Reads a request body, stopping as soon as it is larger than `max`. */
function readBody(req: http.IncomingMessage, max: number): Promise<BodyResult> {
  const declared = Number(req.headers["content-length"]);
  if (Number.isFinite(declared) && declared > max)
    return Promise.resolve({
      ok: false,
      status: 413,
      reason: `body is ${declared} bytes; the limit is ${max}`,
    });
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const finish = (result: BodyResult) => {
      if (done) return;
      done = true;
      req.off("data", onData);
      resolve(result);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > max) {
        finish({ ok: false, status: 413, reason: `body is over ${max} bytes` });
        req.pause();
        return;
      }
      chunks.push(chunk);
    };
    req.on("data", onData);
    req.once("end", () => finish({ ok: true, body: Buffer.concat(chunks, size) }));
    req.once("error", (err) =>
      finish({ ok: false, status: 400, reason: `cannot read the body: ${err.message}` }),
    );
  });
}

function header(req: http.IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? undefined : value;
}

function refuse(req: http.IncomingMessage, res: http.ServerResponse, status: number, reason: string): void {
  if (!res.headersSent) {
    res.writeHead(status, { "content-type": "text/plain; charset=utf-8", connection: "close" });
  }
  res.end(`${reason}\n`, () => {
    if (!req.complete) req.destroy();
  });
}

/** The request listener of the Slack HTTP server. */
export function createSlackRequestHandler(
  options: SlackRequestHandlerOptions,
): (req: http.IncomingMessage, res: http.ServerResponse) => void {
  const { signingSecret, claims, clock, onEvent } = options;
  const maxBodyBytes = options.maxBodyBytes ?? 256 * 1024;
  const claimTimeoutMs = options.claimTimeoutMs ?? 1_000;
  const seenHere = createMemoryClaims(() => clock.now());

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = new URL(req.url ?? "/", "http://localhost").pathname;
    if (path !== slackEventsPath) return refuse(req, res, 404, "not found");
    if (req.method !== "POST") return refuse(req, res, 405, "only POST");
    const remoteAddress = req.socket.remoteAddress ?? "";
    const read = await readBody(req, maxBodyBytes);
    if (!read.ok) {
      if (read.status === 413)
        onEvent({ type: "security", kind: "bad_signature", reason: read.reason, remoteAddress });
      return refuse(req, res, read.status, read.reason);
    }
    const verdict = verifySlackSignature({
      signingSecret,
      timestamp: header(req, "x-slack-request-timestamp"),
      signature: header(req, "x-slack-signature"),
      body: read.body,
      nowMs: clock.now(),
    });
    if (!verdict.ok) {
      onEvent({ type: "security", kind: verdict.kind, reason: verdict.reason, remoteAddress });
      return refuse(req, res, 401, verdict.reason);
    }
    const problem = interactionRequestProblem(header(req, "content-type"), read.body);
    if (problem !== undefined) return refuse(req, res, 400, problem);
    // Keep the signature until its timestamp leaves the window; a second request with it is a replay.
    const ttlMs = Math.max(
      1_000,
      (verdict.timestampSec + slackTimestampToleranceSec) * 1000 - clock.now() + 1_000,
    );
    const key = `slack-replay:${verdict.signature}`;
    // A replay if this process or the shared cache saw it; when the shared cache cannot answer in time,
    // this process's memory decides alone (a replay sent to another replica meanwhile gets through, and
    // its decision is a no-op: same interaction id).
    const firstHere = await seenHere.claimOnce(key, ttlMs);
    let timer: NodeJS.Timeout | undefined;
    let firstAnywhere: boolean | "timeout";
    try {
      firstAnywhere = await Promise.race([
        claims.claimOnce(key, ttlMs),
        new Promise<"timeout">((resolve) => {
          timer = setTimeout(() => resolve("timeout"), claimTimeoutMs);
        }),
      ]);
    } catch {
      firstAnywhere = "timeout";
    } finally {
      clearTimeout(timer);
    }
    const first = firstHere && firstAnywhere !== false;
    if (!first) {
      onEvent({
        type: "security",
        kind: "replay",
        reason: "this signed request was already received",
        remoteAddress,
      });
      return refuse(req, res, 401, "replayed request");
    }
    const verified = req as http.IncomingMessage & { rawBody: Buffer };
    verified.rawBody = read.body;
    options.next(verified, res);
  }

  return (req, res) => {
    handle(req, res).catch(() => refuse(req, res, 400, "bad request"));
  };
}
