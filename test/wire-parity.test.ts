import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { State } from "../gen/countersign/v1/approval_pb.js";
import { ApprovalService } from "../gen/countersign/v1/approval_service_pb.js";
import { createTestPki, type TestPki } from "./support/certs.js";
import { startTestServer, type TestServer } from "./support/test-server.js";

let pki: TestPki;
beforeAll(() => {
  pki = createTestPki();
});

type Factory = typeof createConnectTransport;
const protocolFactories: [string, Factory][] = [
  ["connect", createConnectTransport],
  ["grpc-web", createGrpcWebTransport],
  ["grpc", createGrpcTransport as Factory],
];

/** A transport of each protocol and HTTP version to the Connect port (TLS with ALPN, or plaintext). */
function connectPortTransports(ts: TestServer, tls: boolean): { name: string; transport: Transport }[] {
  const nodeOptions = tls ? { ca: pki.ca, cert: pki.requester.cert, key: pki.requester.key } : {};
  const out: { name: string; transport: Transport }[] = [];
  for (const [protocol, create] of protocolFactories) {
    for (const httpVersion of ["1.1", "2"] as const) {
      // gRPC needs HTTP/2 (trailers).
      if (protocol === "grpc" && httpVersion === "1.1") continue;
      out.push({
        name: `${protocol} over HTTP/${httpVersion}${tls ? " (TLS)" : ""}`,
        transport: create({ baseUrl: ts.server.connectUrl, httpVersion, nodeOptions }),
      });
    }
  }
  return out;
}

async function failure(call: Promise<unknown>): Promise<ConnectError> {
  try {
    await call;
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error("the call succeeded");
}

describe("oversized messages on the Connect port", () => {
  it("are RESOURCE_EXHAUSTED with a message on every protocol and HTTP version, and the port keeps serving", async () => {
    const ts = await startTestServer({ pki, flags: { maxMessageBytes: "4096" } });
    try {
      const tooBig = { action: "deploy.staging", title: "x", justification: "j".repeat(100_000) };
      for (const { name, transport } of connectPortTransports(ts, true)) {
        const approvals = createClient(ApprovalService, transport);
        const err = await failure(approvals.createApproval(tooBig, { timeoutMs: 5000 }));
        expect({ name, code: Code[err.code] }).toEqual({ name, code: Code[Code.ResourceExhausted] });
        expect(err.rawMessage, name).toMatch(/readMaxBytes 4096/);
        // The same client (and its pooled connection) goes on working.
        const ok = await approvals.createApproval(
          { action: "deploy.staging", title: `still serving ${name}` },
          { timeoutMs: 5000 },
        );
        expect(ok.approval?.state, name).toBe(State.PENDING);
      }
    } finally {
      await ts.close();
    }
  });
});
