import type * as http from "node:http";
import type * as http2 from "node:http2";
import type { Socket } from "node:net";

/** The caps and timeouts a `guardConnections` applies. */
export interface ConnectionGuardLimits {
  /** From accept to the first request (TLS handshake, HTTP/2 preface and the first headers). */
  handshakeTimeoutMs: number;
  /** A connection with no request open for this long is closed. */
  idleTimeoutMs: number;
  /** Connections older than this are asked to go away, then closed after the grace. */
  maxConnectionAgeMs: number;
  maxConnectionAgeGraceMs: number;
  /** Connections open at once, in all and per peer address. */
  maxConnections: number;
  maxConnectionsPerPeer: number;
}

/** Why the guard closed or refused a connection. */
export type ConnectionGuardEvent =
  | "refused_total"
  | "refused_peer"
  | "handshake_timeout"
  | "idle"
  | "max_age";

interface Tracked {
  address: string;
  socket: Socket;
  /** The TLS socket over `socket`, once the handshake is done (destroying `socket` alone does not end it). */
  tlsSocket?: Socket;
  /** The HTTP/2 session, once there is one (closed gracefully, with GOAWAY). */
  session?: http2.Http2Session;
  requests: number;
  deadline?: NodeJS.Timeout;
  idle?: NodeJS.Timeout;
  age?: NodeJS.Timeout;
  grace?: NodeJS.Timeout;
}

/** Open connections of a guarded server, for metrics and tests. */
export interface ConnectionGuard {
  /** Connections open now. */
  open(): number;
}

const keyOf = (socket: { remoteAddress?: string | undefined; remotePort?: number | undefined }) =>
  `${socket.remoteAddress ?? ""}|${socket.remotePort ?? 0}`;

/**
 * Guards a Node HTTP/1.1 or HTTP/2 (TLS) server (the Connect server, and the HTTP/2 server grpc-js runs) against clients that hold connections without using
 * them: a connection over the total or per-address cap is closed at accept; one that has not sent its
 * first request within the handshake timeout (plain TCP that never starts TLS, a TLS or HTTP/2 client
 * that dribbles bytes) is destroyed; one with no request open for the idle timeout is closed; and one
 * older than the maximum age is asked to go away (HTTP/2 GOAWAY, so calls in flight finish) and destroyed
 * after the grace. Every timer is cleared when its connection closes.
 */
export function guardConnections(
  server: http.Server | http2.Http2SecureServer,
  limits: ConnectionGuardLimits,
  onEvent: (event: ConnectionGuardEvent, address: string) => void = () => {},
): ConnectionGuard {
  const tracked = new Map<string, Tracked>();
  const perPeer = new Map<string, number>();

  const destroy = (t: Tracked) => {
    t.session?.destroy();
    t.tlsSocket?.destroy();
    t.socket.destroy();
  };
  /** GOAWAY (calls in flight finish), or at once on HTTP/1.1 when idle; destroyed after `graceMs`. */
  const goAway = (t: Tracked, event: ConnectionGuardEvent, graceMs: number) => {
    onEvent(event, t.address);
    if (t.session !== undefined && !t.session.closed) t.session.close();
    else if (t.requests === 0) destroy(t);
    clearTimeout(t.grace);
    t.grace = setTimeout(() => destroy(t), graceMs).unref();
  };
  const startIdle = (t: Tracked) => {
    clearTimeout(t.idle);
    t.idle = setTimeout(() => goAway(t, "idle", limits.handshakeTimeoutMs), limits.idleTimeoutMs).unref();
  };

  server.on("connection", (socket: Socket) => {
    const address = socket.remoteAddress ?? "";
    const fromPeer = perPeer.get(address) ?? 0;
    if (tracked.size >= limits.maxConnections || fromPeer >= limits.maxConnectionsPerPeer) {
      onEvent(tracked.size >= limits.maxConnections ? "refused_total" : "refused_peer", address);
      socket.destroy();
      return;
    }
    const key = keyOf(socket);
    const t: Tracked = { address, socket, requests: 0 };
    tracked.set(key, t);
    perPeer.set(address, fromPeer + 1);
    t.deadline = setTimeout(() => {
      onEvent("handshake_timeout", address);
      destroy(t);
    }, limits.handshakeTimeoutMs).unref();
    t.age = setTimeout(
      () => goAway(t, "max_age", limits.maxConnectionAgeGraceMs),
      limits.maxConnectionAgeMs,
    ).unref();
    socket.once("close", () => {
      clearTimeout(t.deadline);
      clearTimeout(t.idle);
      clearTimeout(t.age);
      clearTimeout(t.grace);
      tracked.delete(key);
      const left = (perPeer.get(address) ?? 1) - 1;
      if (left === 0) perPeer.delete(address);
      else perPeer.set(address, left);
    });
  });

  server.on("secureConnection", (tlsSocket: Socket) => {
    const t = tracked.get(keyOf(tlsSocket));
    if (t !== undefined) t.tlsSocket = tlsSocket;
  });

  server.on("session", (session: http2.Http2Session) => {
    const t = tracked.get(keyOf(session.socket));
    if (t !== undefined) t.session = session;
  });

  /** A call started on the connection of `socket`; `done` is its end. */
  const callStarted = (
    socket: { remoteAddress?: string | undefined; remotePort?: number | undefined },
    done: (listener: () => void) => void,
  ) => {
    const t = tracked.get(keyOf(socket));
    if (t === undefined) return;
    clearTimeout(t.deadline);
    clearTimeout(t.idle);
    t.requests++;
    done(() => {
      t.requests--;
      if (t.requests === 0) startIdle(t);
    });
  };
  // HTTP/2 calls are streams (grpc-js serves them without the compatibility API); HTTP/1.1 calls are
  // requests. A `request` listener is added only to a server that already serves requests: on a bare
  // HTTP/2 server it would turn on Node's compatibility layer, which answers every stream itself.
  server.on("stream", (stream: http2.ServerHttp2Stream) =>
    callStarted(stream.session?.socket ?? {}, (listener) => stream.once("close", listener)),
  );
  if (server.listenerCount("request") > 0)
    server.on(
      "request",
      (
        req: http.IncomingMessage | http2.Http2ServerRequest,
        res: http.ServerResponse | http2.Http2ServerResponse,
      ) => {
        if (req.httpVersionMajor !== 1) return;
        callStarted(req.socket, (listener) => res.once("close", listener));
      },
    );

  return { open: () => tracked.size };
}
