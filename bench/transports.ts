/**
 * The benchmark's clients: grpc-js against the gRPC port, connect-node (Connect protocol over HTTP/2)
 * against the Connect port, both with mutual TLS. Each `openConnection` is its own TCP + TLS connection.
 */
import { type Client, createClient } from "@connectrpc/connect";
import { createConnectTransport, Http2SessionManager } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { EchoService } from "../gen/countersign/bench/v1/echo_pb.js";
import { ApprovalService } from "../gen/countersign/v1/approval_service_pb.js";
import type { Pem } from "../test/support/certs.js";
import { createGrpcJsTransport } from "../test/support/grpc-js-transport.js";

/** The transports the benchmark compares. */
export type BenchProtocol = "grpc" | "connect";

/** Every protocol, in table order. */
export const benchProtocols: readonly BenchProtocol[] = ["grpc", "connect"];

/** Where the server under test listens, and the CA of its certificate. */
export interface BenchTarget {
  /** `host:port` of the gRPC server. */
  grpcAddress: string;
  /** `https://host:port` of the Connect server. */
  connectUrl: string;
  /** PEM of the CA that signed the server's certificate. */
  ca: string;
}

/** Typed clients over one connection. */
export interface BenchConnection {
  approvals: Client<typeof ApprovalService>;
  echo: Client<typeof EchoService>;
  /** Closes the connection (streams still open on it end). */
  close(): void;
}

/**
 * Opens a new connection to `target` over `protocol`, authenticated by the client certificate
 * `identity`. grpc-js channels normally share one connection per address; a local subchannel pool
 * gives each its own, as separate clients would have.
 */
export function openConnection(target: BenchTarget, protocol: BenchProtocol, identity: Pem): BenchConnection {
  if (protocol === "grpc") {
    const transport = createGrpcJsTransport({
      address: target.grpcAddress,
      credentials: grpc.credentials.createSsl(
        Buffer.from(target.ca),
        Buffer.from(identity.key),
        Buffer.from(identity.cert),
      ),
      channelOptions: {
        "grpc.use_local_subchannel_pool": 1,
        "grpc.max_receive_message_length": 4 * 1024 * 1024,
      },
    });
    return {
      approvals: createClient(ApprovalService, transport),
      echo: createClient(EchoService, transport),
      close: () => transport.close(),
    };
  }
  const sessionManager = new Http2SessionManager(
    target.connectUrl,
    {},
    {
      ca: target.ca,
      cert: identity.cert,
      key: identity.key,
    },
  );
  const transport = createConnectTransport({
    baseUrl: target.connectUrl,
    httpVersion: "2",
    sessionManager,
  });
  return {
    approvals: createClient(ApprovalService, transport),
    echo: createClient(EchoService, transport),
    close: () => sessionManager.abort(),
  };
}
