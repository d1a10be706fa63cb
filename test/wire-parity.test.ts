import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { State } from "../gen/countersign/v1/approval_pb.js";
import { ApprovalService } from "../gen/countersign/v1/approval_service_pb.js";
import { parsePrometheusText } from "../server/telemetry/prometheus-text.js";
import { createTestPki, type TestPki } from "./support/certs.js";
import type { Protocol } from "./support/clients.js";
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

describe("a watch ended by the client's deadline", () => {
  it("is counted as deadline_exceeded on every protocol", async () => {
    const ts = await startTestServer({ pki });
    try {
      const handled = async (code: string) => {
        const res = await fetch(`${ts.server.opsUrl}/metrics`);
        return parsePrometheusText(await res.text()).value("countersign_rpc_handled_total", {
          service: "countersign.v1.ApprovalService",
          method: "WatchApproval",
          code,
        });
      };
      const protocols: Protocol[] = ["grpc", "connect", "grpc-web"];
      for (const protocol of protocols) {
        const { approvals } = ts.clients(pki.requester, protocol);
        const created = await approvals.createApproval({ action: "deploy.staging", title: protocol });
        const err = await failure(
          (async () => {
            for await (const _ of approvals.watchApproval(
              { id: created.approval?.id ?? "" },
              { timeoutMs: 300 },
            )) {
              // Only the deadline ends this watch.
            }
          })(),
        );
        expect(err.code, protocol).toBe(Code.DeadlineExceeded);
      }
      // The server counts a stream when it ends, shortly after the client gave up on it.
      let counted = await handled("deadline_exceeded");
      for (let attempt = 0; counted < protocols.length && attempt < 100; attempt++) {
        await new Promise((resolve) => setTimeout(resolve, 20));
        counted = await handled("deadline_exceeded");
      }
      expect(counted).toBe(protocols.length);
      expect(await handled("canceled")).toBe(0);
      expect(await handled("ok")).toBe(0);
    } finally {
      await ts.close();
    }
  });
});
