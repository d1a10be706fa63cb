/**
 * How the gateway reaches ApprovalService: in process (the default, when the API runs in the same
 * process) through connect's router transport with the same ServiceImpl and interceptors as every other
 * client; or over gRPC with mutual TLS when the gateway runs as its own process.
 */
import { readFile } from "node:fs/promises";
import {
  createRouterTransport,
  type Interceptor,
  type ServiceImpl,
  type Transport,
} from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { ApprovalService } from "../../gen/countersign/v1/approval_service_pb.js";
import { type Caller, callerKey } from "../services/caller.js";
import { peerKey } from "../transport/peer.js";

/** Options of `createInProcessTransport`. */
export interface InProcessTransportOptions {
  /** This process's ApprovalService implementation. */
  service: ServiceImpl<typeof ApprovalService>;
  /** The server's interceptors, in the server's order. */
  interceptors: Interceptor[];
  /** The gateway's identity: recorded as `submitted_by` on its votes. @default "slack-gateway (in process)" */
  identity?: string;
}

/**
 * A transport to this process's ApprovalService. The calls run the server's interceptors; the in-process
 * peer has no certificate, so the identity interceptor leaves the caller set here (the gateway, with the
 * decider role) unless development mode assigns its own identity. No certificate can claim this caller.
 */
export function createInProcessTransport(options: InProcessTransportOptions): Transport {
  const caller: Caller = {
    identity: options.identity ?? "slack-gateway (in process)",
    roles: new Set(["decider"]),
  };
  const inProcessPeer: Interceptor = (next) => async (req) => {
    req.contextValues.set(peerKey, { address: "in-process" });
    req.contextValues.set(callerKey, caller);
    return next(req);
  };
  return createRouterTransport((router) => router.service(ApprovalService, options.service), {
    router: { interceptors: [inProcessPeer, ...options.interceptors] },
  });
}

/** Options of `createRemoteTransport`. */
export interface RemoteTransportOptions {
  /** The API's gRPC base URL, e.g. `https://countersign.internal:50051`. */
  url: string;
  /** The gateway's client certificate and key, and the CA of the server's certificate (PEM files). */
  tls?: { cert: string; key: string; ca?: string };
}

/**
 * A gRPC transport (HTTP/2, mutual TLS with the gateway's client certificate) to a Countersign API in
 * another process; `close()` ends its connection.
 * @throws Error naming a TLS file that cannot be read
 */
export async function createRemoteTransport(
  options: RemoteTransportOptions,
): Promise<{ transport: Transport; close(): void }> {
  const read = async (path: string, what: string) => {
    try {
      return await readFile(path);
    } catch (err) {
      throw new Error(`cannot read the API client ${what} ${path}: ${(err as Error).message}`);
    }
  };
  const tls = options.tls;
  const nodeOptions =
    tls === undefined
      ? {}
      : {
          cert: await read(tls.cert, "certificate"),
          key: await read(tls.key, "key"),
          ...(tls.ca === undefined ? {} : { ca: await read(tls.ca, "CA") }),
        };
  const sessionManager = new Http2SessionManager(options.url, { pingIntervalMs: 30_000 }, nodeOptions);
  const transport = createGrpcTransport({ baseUrl: options.url, sessionManager });
  return { transport, close: () => sessionManager.abort() };
}
