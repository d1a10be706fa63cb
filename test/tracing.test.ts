import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { context, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { InMemorySpanExporter, type ReadableSpan } from "@opentelemetry/sdk-trace-base";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Decision, State } from "../gen/countersign/v1/approval_pb.js";
import { ApprovalService } from "../gen/countersign/v1/approval_service_pb.js";
import { instrumentGrpc } from "../server/telemetry/grpc-instrumentation.js";
import { approvalIdAttribute, createClientTracingInterceptor } from "../server/telemetry/rpc-interceptors.js";
import type { TestPki } from "./support/certs.js";
import type { TestServer } from "./support/test-server.js";
import { waitFor } from "./support/wait.js";

// Nothing above loads grpc-js: the gRPC instrumentation must patch it before the server's modules load it,
// so they are imported (dynamically) only after `instrumentGrpc()`.

describe("tracing: the span tree of create → click → decision", () => {
  const exporter = new InMemorySpanExporter();
  let pki: TestPki;
  let ts: TestServer;
  let spans: ReadableSpan[];
  let approvalId: string;
  let rootTraceId: string;

  beforeAll(async () => {
    expect(instrumentGrpc()).toBe(true);
    const { createTestPki, testIdentities } = await import("./support/certs.js");
    const { startTestServer } = await import("./support/test-server.js");
    pki = createTestPki();
    ts = await startTestServer({ pki, spanExporter: exporter, flags: { deciders: testIdentities.decider } });

    const tracer = trace.getTracer("countersign-test");
    const requester = ts.clients(pki.requester, "grpc").approvals;
    // The Slack gateway's click arrives over Connect, with its trace context in `traceparent`.
    const gateway = createClient(
      ApprovalService,
      createConnectTransport({
        baseUrl: ts.server.connectUrl,
        httpVersion: "2",
        nodeOptions: { ca: pki.ca, cert: pki.decider.cert, key: pki.decider.key },
        interceptors: [createClientTracingInterceptor(tracer)],
      }),
    );
    const root = tracer.startSpan("approval flow");
    rootTraceId = root.spanContext().traceId;
    await context.with(trace.setSpan(context.active(), root), async () => {
      const created = await requester.createApproval({ action: "deploy.staging", title: "Deploy staging" });
      approvalId = created.approval?.id ?? "";
      const decided = await gateway.submitDecision({
        id: approvalId,
        approver: "U1",
        decision: Decision.APPROVE,
        interactionId: "click-1",
      });
      expect(decided.approval?.state).toBe(State.APPROVED);
    });
    root.end();
    // Server spans end when the response is sent, possibly after the client has it.
    const ended = () => exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === rootTraceId);
    await waitFor(
      () => ended().filter((s) => s.kind === SpanKind.SERVER).length >= 2,
      10_000,
      "server spans",
    );
    spans = ended();
  }, 60_000);

  afterAll(async () => {
    await ts?.close();
  });

  const parentOf = (span: ReadableSpan) =>
    spans.find((s) => s.spanContext().spanId === span.parentSpanContext?.spanId);
  const childrenOf = (span: ReadableSpan | undefined) =>
    spans.filter((s) => span !== undefined && s.parentSpanContext?.spanId === span.spanContext().spanId);
  const named = (name: string) => spans.filter((s) => s.name === name);

  it("continues the caller's trace on both transports", () => {
    const root = named("approval flow")[0];
    expect(root).toBeDefined();
    expect(spans.every((s) => s.spanContext().traceId === rootTraceId)).toBe(true);
    const rootChildren = childrenOf(root).map((s) => [s.kind, s.attributes["rpc.method"]]);
    expect(rootChildren).toEqual(
      expect.arrayContaining([
        [SpanKind.CLIENT, "CreateApproval"],
        [SpanKind.CLIENT, "SubmitDecision"],
      ]),
    );
  });

  it("create: gRPC client → gRPC server (instrumentation-grpc) → RPC span → store.create, with the approval id", () => {
    const rpc = named("countersign.v1.ApprovalService/CreateApproval")[0];
    expect(rpc?.attributes[approvalIdAttribute]).toBe(approvalId);
    expect(rpc?.events.map((e) => e.name)).toEqual(["approval.created"]);
    const grpcServer = rpc === undefined ? undefined : parentOf(rpc);
    expect(grpcServer?.kind).toBe(SpanKind.SERVER);
    expect(grpcServer?.attributes["rpc.system"]).toBe("grpc");
    const grpcClient = grpcServer === undefined ? undefined : parentOf(grpcServer);
    expect(grpcClient?.kind).toBe(SpanKind.CLIENT);
    expect(grpcClient === undefined ? undefined : parentOf(grpcClient)?.name).toBe("approval flow");
    const store = childrenOf(rpc).map((s) => [s.name, s.attributes[approvalIdAttribute]]);
    expect(store).toContainEqual(["store.create", approvalId]);
  });

  it("runs the scheduler's expiry in its own `scheduler expire` spans", async () => {
    await waitFor(
      () => exporter.getFinishedSpans().some((s) => s.name === "scheduler expire"),
      10_000,
      "a scheduler span",
    );
    const run = exporter.getFinishedSpans().find((s) => s.name === "scheduler expire");
    expect(run?.attributes["countersign.expired"]).toBe(0);
    expect(run?.parentSpanContext).toBeUndefined();
  });

  it("click → decision: Connect server span under the gateway's client span, store calls and the decision", () => {
    const server = named("countersign.v1.ApprovalService/SubmitDecision").find(
      (s) => s.kind === SpanKind.SERVER,
    );
    expect(server?.attributes).toMatchObject({
      "rpc.system": "connect_rpc",
      "rpc.method": "SubmitDecision",
      [approvalIdAttribute]: approvalId,
    });
    expect(server?.status.code).not.toBe(SpanStatusCode.ERROR);
    const client = server === undefined ? undefined : parentOf(server);
    expect(client?.kind).toBe(SpanKind.CLIENT);
    expect(client === undefined ? undefined : parentOf(client)?.name).toBe("approval flow");
    const store = childrenOf(server).map((s) => [s.name, s.attributes[approvalIdAttribute]]);
    expect(store).toEqual(
      expect.arrayContaining([
        ["store.get", approvalId],
        ["store.compareAndSet", approvalId],
      ]),
    );
    const events = server?.events.map((e) => [e.name, e.attributes?.decision ?? e.attributes?.outcome]);
    expect(events).toEqual([
      ["approval.vote", "approve"],
      ["approval.terminal", "approved"],
    ]);
  });
});

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes: { key: string; value: { stringValue?: string } }[];
}

describe("tracing: `countersign serve` with OTEL_* variables", () => {
  it("instruments gRPC before grpc-js loads, continues `traceparent`, and exports over OTLP", async () => {
    const { startServerProcess } = await import("./support/server-process.js");
    const { createGrpcTransport } = await import("@connectrpc/connect-node");
    const http = await import("node:http");
    const received: OtlpSpan[] = [];
    const collector = http.createServer((req, res) => {
      let body = "";
      req.setEncoding("utf8");
      req.on("data", (chunk: string) => {
        body += chunk;
      });
      req.on("end", () => {
        if (req.url === "/v1/traces") {
          const payload = JSON.parse(body) as {
            resourceSpans: { scopeSpans: { spans: OtlpSpan[] }[] }[];
          };
          for (const rs of payload.resourceSpans) for (const ss of rs.scopeSpans) received.push(...ss.spans);
        }
        res.writeHead(200, { "content-type": "application/json" }).end("{}");
      });
    });
    await new Promise<void>((resolve) => collector.listen(0, "127.0.0.1", resolve));
    const { port } = collector.address() as import("node:net").AddressInfo;
    const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
    const callerSpan = "00f067aa0ba902b7";
    const server = await startServerProcess(
      [
        "--policy",
        join(import.meta.dirname, "../examples/policies.yaml"),
        "--grpc-listen",
        "127.0.0.1:0",
        "--connect-listen",
        "127.0.0.1:0",
        "--ops-listen",
        "127.0.0.1:0",
      ],
      {
        env: {
          OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`,
          OTEL_SERVICE_NAME: "countersign-test",
        },
      },
    );
    try {
      const headers = { traceparent: `00-${traceId}-${callerSpan}-01` };
      const overGrpc = createClient(
        ApprovalService,
        createGrpcTransport({ baseUrl: `http://${server.grpcAddress}` }),
      );
      const overConnect = createClient(
        ApprovalService,
        createConnectTransport({ baseUrl: server.connectUrl, httpVersion: "1.1" }),
      );
      const a = await overGrpc.createApproval({ action: "deploy.production", title: "traced" }, { headers });
      await overConnect.getApproval({ id: a.approval?.id ?? "" }, { headers });
      // SIGTERM flushes the batch of spans before the process exits.
      expect((await server.stop()).code).toBe(0);
    } finally {
      collector.close();
    }
    const traced = received.filter((s) => s.traceId.toLowerCase() === traceId);
    const byName = (name: string) => traced.find((s) => s.name === name);
    const grpcServer = byName("grpc.countersign.v1.ApprovalService/CreateApproval");
    expect(grpcServer?.kind).toBe(2); // SERVER, from instrumentation-grpc
    expect(grpcServer?.parentSpanId).toBe(callerSpan);
    const create = byName("countersign.v1.ApprovalService/CreateApproval");
    expect(create?.parentSpanId).toBe(grpcServer?.spanId);
    expect(traced.some((s) => s.name === "store.create" && s.parentSpanId === create?.spanId)).toBe(true);
    const get = byName("countersign.v1.ApprovalService/GetApproval");
    expect(get?.kind).toBe(2); // SERVER, from the Connect interceptor
    expect(get?.parentSpanId).toBe(callerSpan);
  }, 60_000);
});

describe("tracing configuration from the standard OTEL_* variables", () => {
  it("is off by default, on for an OTLP endpoint or a named exporter, and names a bad exporter", async () => {
    const { tracingFromEnv } = await import("../server/config/config.js");
    expect(tracingFromEnv({})).toBeUndefined();
    expect(tracingFromEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318" })).toEqual({
      exporter: "otlp",
    });
    expect(tracingFromEnv({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "http://c:4318/v1/traces" })).toEqual({
      exporter: "otlp",
    });
    expect(tracingFromEnv({ OTEL_TRACES_EXPORTER: "console" })).toEqual({ exporter: "console" });
    expect(
      tracingFromEnv({ OTEL_TRACES_EXPORTER: "none", OTEL_EXPORTER_OTLP_ENDPOINT: "http://c" }),
    ).toBeUndefined();
    expect(tracingFromEnv({ OTEL_SDK_DISABLED: "true", OTEL_TRACES_EXPORTER: "otlp" })).toBeUndefined();
    const problems: string[] = [];
    tracingFromEnv({ OTEL_TRACES_EXPORTER: "zipkin" }, problems);
    expect(problems).toEqual(["OTEL_TRACES_EXPORTER=zipkin: supported exporters: otlp, console, none"]);
  });
});
