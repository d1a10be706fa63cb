import { create } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createRouterTransport } from "@connectrpc/connect";
import {
  AbortedError,
  AlreadyExistsError,
  type Approval,
  ApprovalCancelledError,
  ApprovalDeniedError,
  ApprovalExpiredError,
  ApprovalSchema,
  ApprovalService,
  type CountersignClient,
  type CountersignClientOptions,
  CountersignError,
  createCountersignClient,
  DeadlineExceededError,
  Decision,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  PermissionDeniedError,
  type ReconnectEvent,
  RpcError,
  State,
  TlsError,
  UnauthenticatedError,
  UnavailableError,
} from "@countersign/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createManualClock } from "../server/domain/clock.js";
import { createTestPki, type Pem, type TestPki, testIdentities } from "./support/certs.js";
import { createTcpProxy, type TcpProxy } from "./support/tcp-proxy.js";
import { type Protocol, startTestServer, type TestServer } from "./support/test-server.js";
import { waitFor } from "./support/wait.js";

const protocols: Protocol[] = ["grpc", "connect", "grpc-web"];
const adminToken = "sdk-test-admin-token-0123456789";
const policy = `
version: 1
defaults: { channel: C0, timeout: 30m, unknown_action: deny }
policies:
  - name: deploy
    match: "deploy.*"
    approvers: { users: [alice, bob] }
    required_approvals: 1
  - name: short
    match: "short.*"
    approvers: { users: [alice] }
    timeout: 60s
`;
/** Fast retries, so the reconnect tests take milliseconds rather than seconds. */
const fastReconnect = { initialDelayMs: 20, maxDelayMs: 200 };

let pki: TestPki;
let ts: TestServer;
const clock = createManualClock(Date.now());

beforeAll(async () => {
  pki = createTestPki();
  ts = await startTestServer({
    pki,
    policy,
    clock,
    flags: { deciders: testIdentities.decider },
    env: { ADMIN_TOKEN: adminToken },
  });
});
afterAll(async () => {
  await ts?.close();
});

/** The URL a protocol is served on: gRPC by grpc-js, Connect and gRPC-Web by connect-node. */
function urlFor(protocol: Protocol, address?: string): string {
  if (address !== undefined) return `https://${address}`;
  return protocol === "grpc" ? `https://${ts.server.grpcAddress}` : ts.server.connectUrl;
}

function client(
  identity: Pem | undefined,
  protocol: Protocol,
  options: Partial<CountersignClientOptions> & { address?: string } = {},
): CountersignClient {
  const { address, ...rest } = options;
  return createCountersignClient({
    baseUrl: urlFor(protocol, address),
    protocol,
    tls: { ca: pki.ca, ...(identity === undefined ? {} : { cert: identity.cert, key: identity.key }) },
    reconnect: fastReconnect,
    ...rest,
  });
}

/** The error a promise rejects with; fails the test if it resolves. */
async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error("expected a rejection, but the promise resolved");
}

/** A promise and the function that resolves it, to wait on a callback. */
function signal<T = void>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve: (value: T) => void = () => {};
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

describe.each(protocols)("SDK over %s with mutual TLS", (protocol) => {
  const requester = () => client(pki.requester, protocol);
  const decider = () => client(pki.decider, protocol);

  it("requests, streams the pending state, and resolves to the approval when approved", async () => {
    const sdk = requester();
    const handle = await sdk.requestApproval({
      action: "deploy.api",
      title: `Deploy api over ${protocol}`,
      params: { service: "api", version: "v42" },
    });
    expect(handle.created).toBe(true);
    expect(handle.approval.state).toBe(State.PENDING);
    expect(handle.approval.requester).toBe(testIdentities.requester);
    expect(handle.id).toBe(handle.approval.id);

    const seen: State[] = [];
    const final = await handle.waitForDecision({
      onUpdate: (a) => {
        seen.push(a.state);
        // Decide only once the waiter has the pending state: the decision is pushed over the stream.
        if (a.state === State.PENDING)
          void decider().approvals.submitDecision({
            id: handle.id,
            approver: "alice",
            decision: Decision.APPROVE,
            reason: "looks good",
          });
      },
    });
    expect(seen).toEqual([State.PENDING, State.APPROVED]);
    expect(final.state).toBe(State.APPROVED);
    expect(final.decidedBy).toBe("alice");
    expect(final.reason).toBe("looks good");
    expect(final.params).toEqual({ service: "api", version: "v42" });
  });

  it("requireApproval resolves only when approved", async () => {
    const approved = await requester().requireApproval(
      { action: "deploy.web", title: "ship" },
      {
        onRequested: (handle) =>
          void decider().approvals.submitDecision({
            id: handle.id,
            approver: "bob",
            decision: Decision.APPROVE,
          }),
      },
    );
    expect(approved.state).toBe(State.APPROVED);
    expect(approved.decidedBy).toBe("bob");
  });

  it("requireApproval throws ApprovalDeniedError with the approver and reason", async () => {
    const err = await rejection(
      requester().requireApproval(
        { action: "deploy.db", title: "drop table" },
        {
          onUpdate: (a) => {
            if (a.state === State.PENDING)
              void decider().approvals.submitDecision({
                id: a.id,
                approver: "alice",
                decision: Decision.DENY,
                reason: "not on a Friday",
              });
          },
        },
      ),
    );
    expect(err).toBeInstanceOf(ApprovalDeniedError);
    const denied = err as ApprovalDeniedError;
    expect(denied.approver).toBe("alice");
    expect(denied.reason).toBe("not on a Friday");
    expect(denied.approval.state).toBe(State.DENIED);
    expect(denied.message).toContain("denied by alice: not on a Friday");
  });

  it("requireApproval throws ApprovalCancelledError when the requester cancels", async () => {
    const sdk = requester();
    const err = await rejection(
      sdk.requireApproval(
        { action: "deploy.cache", title: "flush" },
        {
          onUpdate: (a) => {
            if (a.state === State.PENDING) void sdk.getHandle(a.id).cancel({ reason: "changed my mind" });
          },
        },
      ),
    );
    expect(err).toBeInstanceOf(ApprovalCancelledError);
    expect((err as ApprovalCancelledError).approver).toBe(testIdentities.requester);
    expect((err as ApprovalCancelledError).reason).toBe("changed my mind");
  });

  it("requireApproval throws ApprovalExpiredError when nobody decides in time (injected clock)", async () => {
    const err = await rejection(
      requester().requireApproval(
        { action: "short.task", title: "quick one" },
        {
          onUpdate: (a) => {
            if (a.state === State.PENDING) clock.advance(61_000);
          },
        },
      ),
    );
    expect(err).toBeInstanceOf(ApprovalExpiredError);
    expect((err as ApprovalExpiredError).approver).toBe("system");
    expect((err as ApprovalExpiredError).approval.state).toBe(State.EXPIRED);
  });
});

describe.each(protocols)("reconnecting over %s", (protocol) => {
  let proxy: TcpProxy;
  beforeAll(async () => {
    proxy = await createTcpProxy({
      target: protocol === "grpc" ? ts.server.grpcAddress : new URL(ts.server.connectUrl).host,
    });
  });
  afterAll(async () => {
    await proxy?.close();
  });

  it("resumes a wait after the connection is cut and receives the decision made meanwhile", async () => {
    const sdk = client(pki.requester, protocol, { address: proxy.address });
    const handle = await sdk.requestApproval({ action: "deploy.api", title: "through a flaky network" });
    const reconnects: ReconnectEvent[] = [];
    const seen: State[] = [];
    const cut = signal();
    const waiting = handle.waitForDecision({
      onUpdate: (a) => {
        seen.push(a.state);
        cut.resolve();
      },
      onReconnect: (event) => reconnects.push(event),
    });
    await cut.promise;
    // The network goes away: open connections are cut and new ones are refused.
    proxy.setMode("refuse");
    expect(proxy.dropConnections()).toBeGreaterThan(0);
    await waitFor(() => reconnects.length >= 2, 15_000, "a reconnect attempt refused");
    // Decided while the waiter cannot reach the server.
    await client(pki.decider, protocol).approvals.submitDecision({
      id: handle.id,
      approver: "alice",
      decision: Decision.APPROVE,
      reason: "approved during the outage",
    });
    proxy.setMode("forward");
    const final = await waiting;
    expect(final.state).toBe(State.APPROVED);
    expect(final.reason).toBe("approved during the outage");
    // The pending snapshot sent again after the reconnect is not repeated.
    expect(seen).toEqual([State.PENDING, State.APPROVED]);
    for (const event of reconnects) {
      expect(event.error).toBeInstanceOf(UnavailableError);
      expect(event.delayMs).toBeLessThanOrEqual(fastReconnect.maxDelayMs);
    }
    expect(reconnects.map((e) => e.attempt).slice(0, 2)).toEqual([1, 2]);
  });

  it("retries a create refused by a network outage, without making two approvals", async () => {
    proxy.setMode("refuse");
    const refusedBefore = proxy.stats().refused;
    const sdk = client(pki.requester, protocol, {
      address: proxy.address,
      reconnect: { initialDelayMs: 200, maxDelayMs: 400 },
    });
    const key = `create-retry-${protocol}`;
    const creating = sdk.requestApproval(
      { action: "deploy.api", title: "retried create", idempotencyKey: key },
      { maxAttempts: 20 },
    );
    await waitFor(() => proxy.stats().refused > refusedBefore, 15_000, "the first create refused");
    proxy.setMode("forward");
    const handle = await creating;
    expect(handle.created).toBe(true);
    const again = await client(pki.requester, protocol).requestApproval({
      action: "deploy.api",
      title: "retried create",
      idempotencyKey: key,
    });
    expect(again.created).toBe(false);
    expect(again.id).toBe(handle.id);
  });
});

describe("reconnecting to the development server (plaintext HTTP/1.1)", () => {
  it("resumes a Connect wait after the connection is cut", async () => {
    const dev = await startTestServer({ policy });
    const proxy = await createTcpProxy({ target: new URL(dev.server.connectUrl).host });
    try {
      const sdk = createCountersignClient({ baseUrl: `http://${proxy.address}`, reconnect: fastReconnect });
      const handle = await sdk.requestApproval({ action: "deploy.api", title: "dev" });
      expect(handle.approval.requester).toBe("local-dev");
      const reconnects: ReconnectEvent[] = [];
      const cut = signal();
      const waiting = handle.waitForDecision({
        onUpdate: () => cut.resolve(),
        onReconnect: (event) => reconnects.push(event),
      });
      await cut.promise;
      proxy.setMode("refuse");
      proxy.dropConnections();
      await waitFor(() => reconnects.length >= 2, 15_000, "a reconnect attempt refused");
      await createCountersignClient({ baseUrl: dev.server.connectUrl }).approvals.submitDecision({
        id: handle.id,
        approver: "bob",
        decision: Decision.APPROVE,
      });
      proxy.setMode("forward");
      expect((await waiting).state).toBe(State.APPROVED);
    } finally {
      await proxy.close();
      await dev.close();
    }
  });
});

describe("reconnecting, in process", () => {
  /** A client whose ApprovalService is `watch`, in process: each call of WatchApproval is one attempt. */
  function inProcess(watch: (attempt: number) => AsyncIterable<Approval>, maxAttempts?: number) {
    let attempt = 0;
    const transport = createRouterTransport(({ service }) => {
      service(ApprovalService, {
        async *watchApproval() {
          attempt++;
          for await (const approval of watch(attempt)) yield { approval };
        },
      });
    });
    return createCountersignClient({
      transport,
      reconnect: { ...fastReconnect, ...(maxAttempts === undefined ? {} : { maxAttempts }) },
    });
  }
  const snapshot = (state: State, version: bigint) =>
    create(ApprovalSchema, {
      id: "01INPROCESS",
      action: "deploy.x",
      state,
      version,
      createTime: timestampNow(),
    });

  it("does not repeat a snapshot already seen, and counts failed attempts only in a row", async () => {
    const sdk = inProcess(async function* (attempt) {
      yield snapshot(State.PENDING, 1n);
      if (attempt < 3) throw new ConnectError("replica going away", Code.Unavailable);
      yield snapshot(State.PENDING, 2n);
      yield snapshot(State.APPROVED, 3n);
    });
    const versions: bigint[] = [];
    const reconnects: ReconnectEvent[] = [];
    const final = await sdk.getHandle("01INPROCESS").waitForDecision({
      onUpdate: (a) => versions.push(a.version),
      onReconnect: (e) => reconnects.push(e),
    });
    expect(final.state).toBe(State.APPROVED);
    expect(versions).toEqual([1n, 2n, 3n]);
    // Each attempt received a snapshot before failing, so each retry is the first in a row.
    expect(reconnects.map((e) => e.attempt)).toEqual([1, 1]);
  });

  it("gives up after maxAttempts failures in a row with the last error", async () => {
    const reconnects: ReconnectEvent[] = [];
    const sdk = inProcess(async function* () {
      yield* [];
      throw new ConnectError("store down", Code.Unavailable);
    }, 3);
    const err = await rejection(
      sdk.getHandle("01INPROCESS").waitForDecision({ onReconnect: (e) => reconnects.push(e) }),
    );
    expect(err).toBeInstanceOf(UnavailableError);
    expect((err as UnavailableError).rawMessage).toBe("store down");
    expect(reconnects.map((e) => e.attempt)).toEqual([1, 2]);
  });

  it("watches again when a stream ends before the decision", async () => {
    const sdk = inProcess(async function* (attempt) {
      yield snapshot(State.PENDING, 1n);
      if (attempt === 2) yield snapshot(State.DENIED, 2n);
    });
    const reconnects: ReconnectEvent[] = [];
    const final = await sdk
      .getHandle("01INPROCESS")
      .waitForDecision({ onReconnect: (e) => reconnects.push(e) });
    expect(final.state).toBe(State.DENIED);
    expect(reconnects).toHaveLength(1);
    expect(reconnects[0]?.error.message).toContain("ended before a decision");
  });
});

describe("aborting and time limits", () => {
  it("stops waiting when the signal aborts and leaves the approval pending", async () => {
    const sdk = client(pki.requester, "connect");
    const handle = await sdk.requestApproval({ action: "deploy.api", title: "abort me" });
    const abort = new AbortController();
    const err = await rejection(
      handle.waitForDecision({ signal: abort.signal, onUpdate: () => abort.abort() }),
    );
    expect(err).toBeInstanceOf(AbortedError);
    expect((err as AbortedError).message).toContain(handle.id);
    expect((await handle.get()).state).toBe(State.PENDING);
  });

  it("stops retrying when the signal aborts during the backoff", async () => {
    const proxy = await createTcpProxy({ target: ts.server.grpcAddress });
    try {
      const sdk = client(pki.requester, "grpc", {
        address: proxy.address,
        reconnect: { initialDelayMs: 60_000, maxDelayMs: 60_000 },
      });
      const handle = await sdk.requestApproval({ action: "deploy.api", title: "abort in backoff" });
      const abort = new AbortController();
      const waiting = handle.waitForDecision({
        signal: abort.signal,
        onUpdate: () => {
          proxy.setMode("refuse");
          proxy.dropConnections();
        },
        onReconnect: () => abort.abort(),
      });
      const started = Date.now();
      expect(await rejection(waiting)).toBeInstanceOf(AbortedError);
      // The backoff was a minute: the abort ended it long before.
      expect(Date.now() - started).toBeLessThan(30_000);
    } finally {
      await proxy.close();
    }
  });

  it("gives up after timeoutMs with DeadlineExceededError", async () => {
    const handle = await client(pki.requester, "grpc-web").requestApproval({
      action: "deploy.api",
      title: "time limit",
    });
    const err = await rejection(handle.waitForDecision({ timeoutMs: 300 }));
    expect(err).toBeInstanceOf(DeadlineExceededError);
    expect((await handle.get()).state).toBe(State.PENDING);
  });

  it("rejects a call whose signal is already aborted", async () => {
    const err = await rejection(
      client(pki.requester, "grpc").requestApproval(
        { action: "deploy.api", title: "never sent" },
        { signal: AbortSignal.abort() },
      ),
    );
    expect(err).toBeInstanceOf(AbortedError);
  });
});

describe.each(protocols)("typed errors over %s", (protocol) => {
  it("maps every status to its error class, with field violations", async () => {
    const sdk = client(pki.requester, protocol);
    const invalid = await rejection(
      sdk.requestApproval({
        action: "bad action!",
        title: "",
        origin: { links: [{ label: "x", url: "ftp://x" }] },
      }),
    );
    expect(invalid).toBeInstanceOf(InvalidArgumentError);
    expect(invalid).toBeInstanceOf(RpcError);
    expect(invalid).toBeInstanceOf(CountersignError);
    expect((invalid as InvalidArgumentError).fieldViolations.map((v) => v.field)).toEqual([
      "action",
      "title",
      "origin.links[0].url",
    ]);

    const missing = await rejection(sdk.getHandle("01NOSUCHAPPROVAL").get());
    expect(missing).toBeInstanceOf(NotFoundError);
    const reconnects: ReconnectEvent[] = [];
    const watchMissing = await rejection(
      sdk.getHandle("01NOSUCHAPPROVAL").waitForDecision({ onReconnect: (e) => reconnects.push(e) }),
    );
    expect(watchMissing).toBeInstanceOf(NotFoundError);
    expect(reconnects).toEqual([]);

    const key = `conflict-${protocol}`;
    const first = await sdk.requestApproval({ action: "deploy.api", title: "one", idempotencyKey: key });
    expect(
      await rejection(sdk.requestApproval({ action: "deploy.api", title: "two", idempotencyKey: key })),
    ).toBeInstanceOf(AlreadyExistsError);

    const selfDecide = await rejection(
      sdk.approvals.submitDecision({ id: first.id, approver: "alice", decision: Decision.APPROVE }),
    );
    expect(selfDecide).toBeInstanceOf(PermissionDeniedError);

    await first.cancel();
    expect(await rejection(first.cancel())).toBeInstanceOf(FailedPreconditionError);

    expect(await rejection(sdk.admin.getStats({}))).toBeInstanceOf(UnauthenticatedError);
    const admin = client(pki.requester, protocol, { adminToken });
    const stats = await admin.admin.getStats({});
    expect(stats.counts.length).toBeGreaterThan(0);
  });

  it("says when the server cannot be reached", async () => {
    const closed = await createTcpProxy({ target: "127.0.0.1:1" });
    const address = closed.address;
    await closed.close();
    const err = await rejection(
      client(pki.requester, protocol, { address }).requestApproval(
        { action: "deploy.api", title: "nobody home" },
        { maxAttempts: 1 },
      ),
    );
    expect(err).toBeInstanceOf(UnavailableError);
    expect((err as UnavailableError).message).toContain(`cannot reach https://${address}`);
    expect((err as UnavailableError).message).toContain("ECONNREFUSED");
  });

  it("says which side of the TLS handshake failed", async () => {
    const noCert = await rejection(client(undefined, protocol).getHandle("01ABC").get());
    expect(noCert).toBeInstanceOf(TlsError);
    expect((noCert as TlsError).message).toContain("requires a client certificate");

    const untrusted = await rejection(
      client(pki.requester, protocol, {
        tls: { ca: pki.foreignCa, cert: pki.requester.cert, key: pki.requester.key },
      })
        .getHandle("01ABC")
        .get(),
    );
    expect(untrusted).toBeInstanceOf(TlsError);
    expect((untrusted as TlsError).reason).toBe("SELF_SIGNED_CERT_IN_CHAIN");
    expect((untrusted as TlsError).message).toContain("is not trusted");

    // A certificate from another CA: the server hangs up after the handshake.
    const foreign = await rejection(client(pki.foreign, protocol).getHandle("01ABC").get());
    expect(foreign).toBeInstanceOf(UnavailableError);
    expect((foreign as UnavailableError).message).toContain("client certificate");
  });
});

describe("never an approval on error", () => {
  it("requireApproval rejects when the request is invalid, and when the approval is unknown", async () => {
    const sdk = client(pki.requester, "connect");
    const outcomes: (Approval | unknown)[] = [];
    outcomes.push(await rejection(sdk.requireApproval({ action: "", title: "" })));
    outcomes.push(await rejection(sdk.getHandle("01NOSUCHAPPROVAL").waitForDecision()));
    expect(outcomes[0]).toBeInstanceOf(InvalidArgumentError);
    expect(outcomes[1]).toBeInstanceOf(NotFoundError);
  });

  it("rejects options that cannot work, naming the problem", () => {
    expect(() => createCountersignClient({})).toThrow(/baseUrl is required/);
    expect(() => createCountersignClient({ baseUrl: "127.0.0.1:8080" })).toThrow(/is not a URL/);
    expect(() => createCountersignClient({ baseUrl: "ftp://127.0.0.1" })).toThrow(/https:\/\/ or http:\/\//);
    expect(() =>
      createCountersignClient({ baseUrl: "http://127.0.0.1:8080", protocol: "soap" as "grpc" }),
    ).toThrow(/protocol "soap" is not one of grpc, connect, grpc-web/);
    expect(() => createCountersignClient({ baseUrl: "http://127.0.0.1:8080", tls: { ca: "x" } })).toThrow(
      /TLS settings need an https:\/\/ baseUrl/,
    );
    expect(() =>
      createCountersignClient({ baseUrl: "http://127.0.0.1:8080", reconnect: { initialDelayMs: -1 } }),
    ).toThrow(/reconnect.initialDelayMs/);
  });
});
