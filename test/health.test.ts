import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Health, HealthCheckResponse_ServingStatus as Status } from "../gen/grpc/health/v1/health_pb.js";
import type { ApprovalStore } from "../server/store/approval-store.js";
import { createMemoryApprovalStore } from "../server/store/memory-approval-store.js";
import { startTestServer, type TestServer } from "./support/test-server.js";

/** A memory store whose reachability a test switches, as if Redis went away. */
function switchableStore(): { store: ApprovalStore; setDown(down: boolean): void } {
  const inner = createMemoryApprovalStore();
  let down = false;
  return {
    store: {
      ...inner,
      ping: async () => {
        if (down) throw new Error("connect ECONNREFUSED 127.0.0.1:6390");
      },
    },
    setDown: (value) => {
      down = value;
    },
  };
}

describe("health: /healthz, /readyz and grpc.health.v1", () => {
  let ts: TestServer;
  let health: ReturnType<typeof createClient<typeof Health>>;
  const switchable = switchableStore();

  beforeAll(async () => {
    ts = await startTestServer({ store: switchable.store });
    // connect-node's gRPC client against the grpc-js server: its aborted watches end at once.
    health = createClient(Health, createGrpcTransport({ baseUrl: `http://${ts.server.grpcAddress}` }));
  });

  afterAll(async () => {
    await ts?.close();
  });

  const get = async (path: string) => {
    const res = await fetch(`${ts.server.opsUrl}${path}`);
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };

  /** The next status the Watch stream reports that differs from `from`, within 20 s. */
  async function nextStatus(service: string, from: Status): Promise<Status> {
    const done = new AbortController();
    try {
      const signal = AbortSignal.any([done.signal, AbortSignal.timeout(20_000)]);
      for await (const res of health.watch({ service }, { signal })) {
        if (res.status !== from) return res.status;
      }
      throw new Error("the health watch ended");
    } finally {
      done.abort();
    }
  }

  it("/healthz answers while the process is alive; /readyz lists every check", async () => {
    expect(await get("/healthz")).toEqual({ status: 200, body: { status: "ok" } });
    expect(await get("/readyz")).toEqual({
      status: 200,
      body: { status: "ready", checks: { policy: "ok", store: "ok", audit: "ok" } },
    });
  });

  it("serves the overall status and each service's through grpc.health.v1", async () => {
    for (const service of ["", "countersign.v1.ApprovalService", "countersign.v1.AdminService"]) {
      expect((await health.check({ service })).status, service).toBe(Status.SERVING);
    }
  });

  it("follows readiness: the periodic check notices an unreachable store, /readyz its return", async () => {
    switchable.setDown(true);
    // Nobody asks /readyz: the periodic check (every 5 s) finds out.
    expect(await nextStatus("countersign.v1.ApprovalService", Status.SERVING)).toBe(Status.NOT_SERVING);
    expect((await health.check({ service: "" })).status).toBe(Status.NOT_SERVING);
    expect(await get("/readyz")).toEqual({
      status: 503,
      body: {
        status: "not ready",
        checks: { policy: "ok", store: "connect ECONNREFUSED 127.0.0.1:6390", audit: "ok" },
      },
    });
    const metrics = await (await fetch(`${ts.server.opsUrl}/metrics`)).text();
    expect(metrics).toMatch(/^countersign_store_up 0$/m);

    switchable.setDown(false);
    const back = nextStatus("", Status.NOT_SERVING);
    expect((await get("/readyz")).status).toBe(200);
    expect(await back).toBe(Status.SERVING);
    expect((await health.check({ service: "countersign.v1.AdminService" })).status).toBe(Status.SERVING);
  }, 60_000);

  it("answers 404 with the paths it serves", async () => {
    expect(await get("/nope")).toEqual({
      status: 404,
      body: { error: "not found", paths: ["/healthz", "/readyz", "/version", "/metrics"] },
    });
  });

  it("reports NOT_SERVING as soon as the server starts shutting down", async () => {
    const other = await startTestServer({});
    const client = createClient(
      Health,
      createGrpcTransport({ baseUrl: `http://${other.server.grpcAddress}` }),
    );
    const stop = new AbortController();
    const watch = client.watch(
      { service: "" },
      { signal: AbortSignal.any([stop.signal, AbortSignal.timeout(20_000)]) },
    );
    const statuses = watch[Symbol.asyncIterator]();
    expect((await statuses.next()).value?.status).toBe(Status.SERVING);
    const closing = other.close();
    expect((await statuses.next()).value?.status).toBe(Status.NOT_SERVING);
    stop.abort();
    await closing;
  });
});
