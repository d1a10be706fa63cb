import * as http from "node:http";
import * as http2 from "node:http2";
import type { Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import { type ConnectRouter, createContextValues, type Interceptor } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import {
  type ConnectionGuardEvent,
  type ConnectionGuardLimits,
  guardConnections,
} from "./connection-guard.js";
import { type HostedService, maxMetadataBytes } from "./grpc-server.js";
import { type HealthStatus, healthService } from "./health-service.js";
import { peerKey } from "./peer.js";
import { reflectionServices } from "./reflection-service.js";
import type { TlsMaterial } from "./tls.js";
import { answerUndecodableAsInvalidArgument } from "./undecodable-requests.js";

/** Options of `createConnectServer`. */
export interface ConnectServerOptions {
  services: HostedService[];
  interceptors: Interceptor[];
  /** TLS material; plaintext HTTP/1.1 and h2c (development mode only) without it. */
  tls?: TlsMaterial;
  /**
   * Served as `grpc.health.v1` (without the interceptors, like on the gRPC port, and like server
   * reflection, which the port always serves).
   */
  health?: HealthStatus;
  /** Largest request message accepted, in bytes. */
  readMaxBytes: number;
  /** Connection caps and timeouts (none without). */
  limits?: ConnectionGuardLimits;
  /** Called for every connection the limits refuse or close. */
  onConnectionEvent?: (event: ConnectionGuardEvent, address: string) => void;
}

/** Any of the server kinds we create. */
export type ConnectHttpServer = http.Server | http2.Http2SecureServer;

/**
 * Stops accepting connections, lets requests in flight finish for up to `graceMs`, then closes every
 * connection (which ends open streams).
 */
export function closeConnectServer(server: ConnectHttpServer, graceMs: number): Promise<void> {
  return new Promise((resolve) => {
    const force = setTimeout(() => {
      for (const session of sessionsOf(server)) session.destroy();
      if (server instanceof http.Server) server.closeAllConnections();
    }, graceMs);
    server.close(() => {
      clearTimeout(force);
      resolve();
    });
    for (const session of sessionsOf(server)) session.close();
    if (server instanceof http.Server) server.closeIdleConnections();
  });
}

const sessions = new WeakMap<ConnectHttpServer, Set<http2.Http2Session>>();

function sessionsOf(server: ConnectHttpServer): Set<http2.Http2Session> {
  return sessions.get(server) ?? new Set();
}

/**
 * The connect-node server: Connect, gRPC-Web and gRPC over HTTP/1.1 and HTTP/2 (one TLS port with ALPN,
 * or one plaintext port with h2c), hosting the same `ServiceImpl`s and interceptors as the grpc-js server,
 * `grpc.health.v1` with `health`, and server reflection (`grpc.reflection.v1` and `v1alpha`; bidirectional
 * streaming, so over HTTP/2 only).
 */
export function createConnectServer(options: ConnectServerOptions): ConnectHttpServer {
  const handler = connectNodeAdapter({
    routes: (router: ConnectRouter) => {
      for (const { service, impl } of options.services)
        router.service(service, impl, { interceptors: options.interceptors });
      const unintercepted: HostedService[] = [];
      if (options.health !== undefined) unintercepted.push(healthService(options.health));
      // Server reflection over every service the port serves (not itself, like the gRPC port's).
      unintercepted.push(
        ...reflectionServices([...options.services, ...unintercepted].map((hosted) => hosted.service)),
      );
      for (const { service, impl } of unintercepted) router.service(service, impl);
      router.handlers.splice(
        0,
        router.handlers.length,
        ...router.handlers.map(answerUndecodableAsInvalidArgument),
      );
    },
    fallback: notFound,
    readMaxBytes: options.readMaxBytes,
    contextValues: (req) => {
      const values = createContextValues();
      const socket = ("stream" in req ? req.stream.session?.socket : undefined) ?? req.socket;
      const address = socket?.remoteAddress ?? "";
      // For HTTP/2 the socket is a proxy: read properties directly (no `in` checks).
      const tlsSocket = socket as Partial<TLSSocket> | undefined;
      if (tlsSocket?.authorized === true && tlsSocket.getPeerCertificate !== undefined) {
        const certificate = tlsSocket.getPeerCertificate();
        values.set(peerKey, certificate.raw ? { certificate, address } : { address });
      } else {
        values.set(peerKey, { address });
      }
      return values;
    },
  });
  // connect-node answers an oversized message without reading the rest of the request. Over HTTP/1.1
  // the unread body would stall the connection (and the next request a client sends on it): close it
  // after the answer instead.
  const serve = (
    req: http.IncomingMessage | http2.Http2ServerRequest,
    res: http.ServerResponse | http2.Http2ServerResponse,
  ) => {
    if (req.httpVersionMajor === 1) {
      const response = res as http.ServerResponse;
      const writeHead = response.writeHead.bind(response) as (...args: unknown[]) => http.ServerResponse;
      response.writeHead = ((...args: unknown[]) => {
        if (!req.complete) response.shouldKeepAlive = false;
        return writeHead(...args);
      }) as typeof response.writeHead;
    }
    handler(req, res);
  };
  const guard = (server: ConnectHttpServer) => {
    if (options.limits !== undefined) guardConnections(server, options.limits, options.onConnectionEvent);
    return server;
  };
  if (options.tls === undefined) return guard(cleartextServer(serve));
  const tls = options.tls;
  const server = http2.createSecureServer(
    {
      ...tls.secureContextOptions(),
      allowHTTP1: true,
      maxSendHeaderBlockLength: maxMetadataBytes,
      settings: { maxHeaderListSize: maxMetadataBytes },
      requestCert: tls.files.clientCa !== undefined,
      rejectUnauthorized: tls.files.requireClientCert,
    },
    serve,
  );
  tls.onReload((contextOptions) => server.setSecureContext(contextOptions));
  const open = new Set<http2.Http2Session>();
  sessions.set(server, open);
  server.on("session", (session: http2.Http2Session) => {
    open.add(session);
    session.once("close", () => open.delete(session));
  });
  return guard(server);
}

/**
 * A plaintext server speaking HTTP/1.1 and HTTP/2 with prior knowledge (h2c) on one port: a connection
 * that opens with the HTTP/2 preface goes to an HTTP/2 server, any other to the HTTP/1.1 server
 * (Node's cleartext HTTP/2 server has no `allowHTTP1`). Its HTTP/2 sessions are closed with it.
 */
function cleartextServer(
  serve: http.RequestListener & ((req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void),
): http.Server {
  const server = http.createServer(serve);
  const h2 = http2.createServer(
    { maxSendHeaderBlockLength: maxMetadataBytes, settings: { maxHeaderListSize: maxMetadataBytes } },
    serve,
  );
  const open = new Set<http2.Http2Session>();
  sessions.set(server, open);
  h2.on("session", (session: http2.Http2Session) => {
    open.add(session);
    session.once("close", () => open.delete(session));
  });
  const http1 = server.listeners("connection") as ((socket: Socket) => void)[];
  server.removeAllListeners("connection");
  server.on("connection", (socket: Socket) => {
    socket.once("data", (chunk: Buffer) => {
      socket.pause();
      socket.unshift(chunk);
      const http2Preface = chunk
        .subarray(0, preface.length)
        .equals(preface.subarray(0, Math.min(chunk.length, preface.length)));
      if (http2Preface) {
        h2.emit("connection", socket);
      } else {
        for (const listener of http1) listener.call(server, socket);
        socket.resume();
      }
    });
  });
  return server;
}

/** The start of the HTTP/2 client connection preface ("PRI * HTTP/2.0"). */
const preface = Buffer.from("PRI * HTTP/2.0");

/**
 * Answers a request for a method the server does not have: UNIMPLEMENTED in the request's protocol
 * (a gRPC or gRPC-Web trailers-only answer, as the gRPC port gives), HTTP 404 otherwise (Connect's
 * mapping of UNIMPLEMENTED).
 */
const notFound: NonNullable<Parameters<typeof connectNodeAdapter>[0]["fallback"]> = (req, res) => {
  const contentType = req.headers["content-type"] ?? "";
  const grpc = /^application\/grpc(-web)?(\+|;|$)/.exec(contentType);
  if (grpc === null) {
    res.writeHead(404);
    res.end();
    return;
  }
  res.writeHead(200, {
    "content-type": grpc[1] === undefined ? "application/grpc" : "application/grpc-web+proto",
    "grpc-status": "12",
    "grpc-message": encodeURIComponent(`unknown method ${req.url ?? ""}`),
  });
  res.end();
};
