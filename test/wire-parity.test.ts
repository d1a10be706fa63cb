import { connect as http2Connect } from "node:http2";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import { beforeAll, describe, expect, it } from "vitest";
import { State } from "../gen/countersign/v1/approval_pb.js";
import { ApprovalService } from "../gen/countersign/v1/approval_service_pb.js";
import { Health, HealthCheckResponse_ServingStatus } from "../gen/grpc/health/v1/health_pb.js";
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

describe("the development server's plaintext Connect port", () => {
  it("speaks HTTP/1.1 and HTTP/2 with prior knowledge (h2c), for every protocol, on the same port", async () => {
    const ts = await startTestServer({ flags: { maxMessageBytes: "4096" } });
    try {
      expect(ts.server.connectUrl).toMatch(/^http:/);
      const tooBig = { action: "deploy.staging", title: "x", justification: "j".repeat(100_000) };
      const transports = connectPortTransports(ts, false);
      expect(transports.map((t) => t.name)).toContain("grpc over HTTP/2");
      for (const { name, transport } of transports) {
        const approvals = createClient(ApprovalService, transport);
        const ok = await approvals.createApproval(
          { action: "deploy.staging", title: name },
          { timeoutMs: 5000 },
        );
        expect(ok.approval?.state, name).toBe(State.PENDING);
        const err = await failure(approvals.createApproval(tooBig, { timeoutMs: 5000 }));
        expect({ name, code: Code[err.code] }).toEqual({ name, code: Code[Code.ResourceExhausted] });
        const again = await approvals.getApproval({ id: ok.approval?.id ?? "" }, { timeoutMs: 5000 });
        expect(again.approval?.title, name).toBe(name);
      }
    } finally {
      await ts.close();
    }
  });
});

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

describe("a gRPC client gets the same answers from both ports", () => {
  it("serves grpc.health.v1 on both, following readiness", async () => {
    const ts = await startTestServer({ pki });
    try {
      const nodeOptions = { ca: pki.ca, cert: pki.requester.cert, key: pki.requester.key };
      for (const baseUrl of [`https://${ts.server.grpcAddress}`, ts.server.connectUrl]) {
        const health = createClient(Health, createGrpcTransport({ baseUrl, nodeOptions }));
        expect((await health.check({ service: "" })).status, baseUrl).toBe(
          HealthCheckResponse_ServingStatus.SERVING,
        );
        const service = "countersign.v1.ApprovalService";
        let status = (await health.check({ service }).catch(() => undefined))?.status;
        for (
          let attempt = 0;
          status !== HealthCheckResponse_ServingStatus.SERVING && attempt < 100;
          attempt++
        ) {
          await new Promise((resolve) => setTimeout(resolve, 20));
          status = (await health.check({ service }).catch(() => undefined))?.status;
        }
        expect(status, baseUrl).toBe(HealthCheckResponse_ServingStatus.SERVING);
        const unknown = await failure(health.check({ service: "no.such.Service" }));
        expect(unknown.code, baseUrl).toBe(Code.NotFound);
        const watch = health.watch({ service })[Symbol.asyncIterator]();
        expect((await watch.next()).value?.status, baseUrl).toBe(HealthCheckResponse_ServingStatus.SERVING);
        await watch.return?.();
      }
    } finally {
      await ts.close();
    }
  });

  it("answers an unknown method with grpc-status 12 (UNIMPLEMENTED), not HTTP 404", async () => {
    const ts = await startTestServer({ pki });
    try {
      for (const url of [`https://${ts.server.grpcAddress}`, ts.server.connectUrl]) {
        const session = http2Connect(url, { ca: pki.ca, cert: pki.requester.cert, key: pki.requester.key });
        try {
          const answer = await new Promise<Record<string, unknown>>((resolve, reject) => {
            const stream = session.request({
              ":method": "POST",
              ":path": "/countersign.v1.ApprovalService/NoSuchMethod",
              "content-type": "application/grpc",
              te: "trailers",
            });
            let headers: Record<string, unknown> = {};
            stream.on("response", (h) => {
              headers = { ...h };
            });
            stream.on("trailers", (t) => {
              headers = { ...headers, ...t };
            });
            stream.on("end", () => resolve(headers));
            stream.on("error", reject);
            stream.resume();
            stream.end(Buffer.from([0, 0, 0, 0, 0]));
          });
          expect({ url, status: answer[":status"], grpc: answer["grpc-status"] }).toEqual({
            url,
            status: 200,
            grpc: "12",
          });
        } finally {
          session.close();
        }
      }
    } finally {
      await ts.close();
    }
  });
});
