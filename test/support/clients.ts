import { type Client, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { AdminService } from "../../gen/countersign/v1/admin_service_pb.js";
import { ApprovalService } from "../../gen/countersign/v1/approval_service_pb.js";
import type { Pem } from "./certs.js";
import { createGrpcJsTransport } from "./grpc-js-transport.js";

/** The transports the tests drive every RPC through. */
export type Protocol = "grpc" | "connect" | "grpc-web";

/** Typed clients of both services over one transport. */
export interface TestClients {
  approvals: Client<typeof ApprovalService>;
  admin: Client<typeof AdminService>;
}

/** Makes clients for any identity and protocol against one server; `close()` closes the grpc-js channels. */
export interface ClientFactory {
  clients(
    identity: Pem | undefined,
    protocol: Protocol,
    options?: { ca?: string; headers?: Record<string, string> },
  ): TestClients;
  close(): void;
}

/**
 * Clients for a server at these addresses: grpc-js for "grpc" (an independent gRPC implementation),
 * connect-node for "connect" and "grpc-web". With `ca`, TLS is used and `identity` is the client
 * certificate; without, plaintext (development mode).
 */
export function createClientFactory(target: {
  grpcAddress: string;
  connectUrl: string;
  ca?: string | undefined;
}): ClientFactory {
  const channels: { close(): void }[] = [];
  return {
    clients(identity, protocol, options = {}) {
      const ca = options.ca ?? target.ca;
      let transport: Transport;
      if (protocol === "grpc") {
        const credentials =
          ca === undefined
            ? grpc.credentials.createInsecure()
            : grpc.credentials.createSsl(
                Buffer.from(ca),
                identity ? Buffer.from(identity.key) : null,
                identity ? Buffer.from(identity.cert) : null,
              );
        const t = createGrpcJsTransport({ address: target.grpcAddress, credentials });
        channels.push(t);
        transport = t;
      } else {
        const nodeOptions =
          ca === undefined ? {} : { ca, ...(identity ? { cert: identity.cert, key: identity.key } : {}) };
        // Plaintext (development mode): HTTP/1.1, as curl sends it; with TLS, HTTP/2 (ALPN).
        const common = {
          baseUrl: target.connectUrl,
          httpVersion: ca === undefined ? ("1.1" as const) : ("2" as const),
          nodeOptions,
        };
        transport = protocol === "connect" ? createConnectTransport(common) : createGrpcWebTransport(common);
      }
      const extra = options.headers;
      if (extra !== undefined) {
        const inner = transport;
        const merge = (h: ConstructorParameters<typeof Headers>[0]) => {
          const headers = new Headers(h);
          for (const [k, v] of Object.entries(extra)) headers.set(k, v);
          return headers;
        };
        transport = {
          unary: (m, s, t, h, i, c) => inner.unary(m, s, t, merge(h), i, c),
          stream: (m, s, t, h, i, c) => inner.stream(m, s, t, merge(h), i, c),
        };
      }
      return {
        approvals: createClient(ApprovalService, transport),
        admin: createClient(AdminService, transport),
      };
    },
    close() {
      for (const c of channels) c.close();
    },
  };
}
