import * as http2 from "node:http2";
import { type Socket, connect as tcpConnect } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { State } from "../gen/countersign/v1/approval_pb.js";
import { createTestPki, type TestPki, testIdentities } from "./support/certs.js";
import type { Protocol } from "./support/clients.js";
import { startTestServer, type TestServer } from "./support/test-server.js";
import { waitFor } from "./support/wait.js";

let pki: TestPki;
beforeAll(() => {
  pki = createTestPki();
});

async function metric(ts: TestServer, line: RegExp): Promise<number> {
  const text = await (await fetch(`${ts.server.opsUrl}/metrics`)).text();
  const match = text.split("\n").find((l) => line.test(l));
  return Number(match?.split(" ").at(-1) ?? Number.NaN);
}

/** `host` and `port` of a `host:port` or URL. */
function endpoint(address: string): { host: string; port: number } {
  const url = new URL(address.includes("://") ? address : `tcp://${address}`);
  return { host: url.hostname, port: Number(url.port) };
}

/** Resolves with how long after `since` the socket (or session) closed; rejects after `timeoutMs`. */
function closed(
  what: string,
  emitter: Socket | http2.ClientHttp2Session,
  since: number,
  timeoutMs: number,
): Promise<number> {
  return new Promise((resolve, reject) => {
    if (emitter.destroyed) {
      resolve(Date.now() - since);
      return;
    }
    const timer = setTimeout(
      () => reject(new Error(`${what}: not closed within ${timeoutMs} ms`)),
      timeoutMs,
    );
    emitter.once("close", () => {
      clearTimeout(timer);
      resolve(Date.now() - since);
    });
  });
}

describe("watch stream caps", () => {
  let ts: TestServer;
  beforeAll(async () => {
    ts = await startTestServer({
      pki,
      flags: { deciders: testIdentities.decider, maxStreamsPerIdentity: "20", maxStreams: "30" },
    });
  });
  afterAll(async () => {
    await ts?.close();
  });

  /** Opens a watch stream; resolves once its snapshot arrived, with a way to cancel it and its outcome. */
  async function watch(identity: TestPki["requester"], protocol: Protocol, id: string) {
    const abort = new AbortController();
    const messages = ts.clients(identity, protocol).approvals.watchApproval({ id }, { signal: abort.signal });
    const iterator = messages[Symbol.asyncIterator]();
    const first = await iterator.next();
    const outcome = (async () => {
      try {
        for (let m = await iterator.next(); m.done !== true; m = await iterator.next());
        return "ended";
      } catch (err) {
        return ConnectError.from(err).code;
      }
    })();
    return { first: first.value, cancel: () => abort.abort(), outcome };
  }

  async function refused(
    identity: TestPki["requester"],
    protocol: Protocol,
    id: string,
  ): Promise<ConnectError> {
    try {
      const { cancel } = await watch(identity, protocol, id);
      cancel();
    } catch (err) {
      return ConnectError.from(err);
    }
    throw new Error("the stream opened");
  }

  it("refuses streams over the per-identity and the total cap with RESOURCE_EXHAUSTED, on both transports", async () => {
    const { approvals } = ts.clients(pki.requester, "grpc");
    const id =
      (await approvals.createApproval({ action: "deploy.staging", title: "watched" })).approval?.id ?? "";
    const mine = await Promise.all(
      Array.from({ length: 20 }, (_, i) => watch(pki.requester, i % 2 === 0 ? "grpc" : "connect", id)),
    );
    expect(mine.every((s) => s.first?.approval?.state === State.PENDING)).toBe(true);
    for (const protocol of ["grpc", "connect", "grpc-web"] as const) {
      const err = await refused(pki.requester, protocol, id);
      expect(err.code, protocol).toBe(Code.ResourceExhausted);
      expect(err.rawMessage).toBe(
        `identity "${testIdentities.requester}" has 20 streams open; the limit is 20 per client (--max-streams-per-identity): end some before opening more`,
      );
    }
    // Unary calls are not streams: still served.
    expect((await approvals.getApproval({ id })).approval?.id).toBe(id);

    // Another identity fills the server up to its total.
    const theirs = await Promise.all(Array.from({ length: 10 }, () => watch(pki.decider, "connect", id)));
    const total = await refused(pki.decider, "grpc", id);
    expect(total.code).toBe(Code.ResourceExhausted);
    expect(total.rawMessage).toBe(
      "the server has 30 streams open, its limit (--max-streams); retry later or on another replica",
    );
    expect(await metric(ts, /^countersign_streams_refused_total\{scope="identity"\}/)).toBe(3);
    expect(await metric(ts, /^countersign_streams_refused_total\{scope="total"\}/)).toBe(1);

    // Ending streams gives their places back.
    for (const s of mine.slice(0, 5)) s.cancel();
    await Promise.all(mine.slice(0, 5).map((s) => s.outcome));
    const again = await (async () => {
      // The server releases a place when it sees the cancel, a moment after the client does.
      for (let attempt = 0; attempt < 100; attempt++) {
        try {
          return await watch(pki.requester, "grpc", id);
        } catch {
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      }
      throw new Error("no place was given back");
    })();
    expect(again.first?.approval?.id).toBe(id);
    for (const s of [...mine.slice(5), ...theirs, again]) s.cancel();
  }, 60_000);
});

describe("maximum connection age", () => {
  it("ends a connection past its age after the grace, on both transports; the client reconnects", async () => {
    const ts = await startTestServer({
      pki,
      flags: { deciders: testIdentities.decider, maxConnectionAge: "1s", maxConnectionAgeGrace: "1s" },
    });
    try {
      const { approvals } = ts.clients(pki.requester, "grpc");
      const id =
        (await approvals.createApproval({ action: "deploy.staging", title: "aged" })).approval?.id ?? "";
      const started = Date.now();
      const outcomes = await Promise.all(
        (["grpc", "connect"] as const).map(async (protocol) => {
          try {
            for await (const _ of ts.clients(pki.requester, protocol).approvals.watchApproval({ id })) {
              // heartbeats and snapshot
            }
            return "ended";
          } catch (err) {
            return ConnectError.from(err).code;
          }
        }),
      );
      expect(Date.now() - started).toBeLessThan(10_000);
      expect(outcomes.every((o) => o === Code.Unavailable || o === Code.Canceled || o === "ended")).toBe(
        true,
      );
      expect((await approvals.getApproval({ id })).approval?.id).toBe(id);
    } finally {
      await ts.close();
    }
  }, 30_000);
});

describe("slow and idle peers", () => {
  let ts: TestServer;
  beforeAll(async () => {
    ts = await startTestServer({
      pki,
      flags: {
        deciders: testIdentities.decider,
        handshakeTimeout: "1s",
        idleTimeout: "1s",
        maxConnectionsPerPeer: "500",
        maxConnections: "5000",
      },
    });
  });
  afterAll(async () => {
    await ts?.close();
  });

  const ports = () => ({ grpc: endpoint(ts.server.grpcAddress), connect: endpoint(ts.server.connectUrl) });

  it("closes plain TCP that never starts TLS, and TLS or HTTP/2 that dribbles or opens no stream, within seconds", async () => {
    for (const [name, { host, port }] of Object.entries(ports())) {
      const since = Date.now();
      const silent = tcpConnect({ host, port });
      silent.on("error", () => {});
      // A ClientHello that arrives one byte at a time.
      const dribbler = tcpConnect({ host, port });
      dribbler.on("error", () => {});
      const hello = Buffer.from("16030100c8010000c40303", "hex");
      let sent = 0;
      const dribble = setInterval(() => {
        if (sent < hello.length && !dribbler.destroyed) dribbler.write(hello.subarray(sent, ++sent));
      }, 100);
      // A complete HTTP/2 connection that never opens a stream.
      const idle = http2.connect(`https://${host}:${port}`, {
        ca: pki.ca,
        cert: pki.requester.cert,
        key: pki.requester.key,
        servername: "localhost",
      });
      idle.on("error", () => {});
      // An HTTP/2 connection that made one call and then stays open with none.
      const used = http2.connect(`https://${host}:${port}`, {
        ca: pki.ca,
        cert: pki.requester.cert,
        key: pki.requester.key,
        servername: "localhost",
      });
      used.on("error", () => {});
      const call = used.request({
        ":method": "POST",
        ":path": "/countersign.v1.ApprovalService/GetApproval",
      });
      call.on("error", () => {});
      call.end();
      call.resume();
      const answered = new Promise<number>((resolve) => call.once("close", () => resolve(Date.now())));
      try {
        const times = await Promise.all([
          closed(`${name}: silent TCP`, silent, since, 10_000),
          closed(`${name}: dribbled ClientHello`, dribbler, since, 10_000),
          closed(`${name}: HTTP/2 without a stream`, idle, since, 10_000),
        ]);
        for (const ms of times) expect(ms, name).toBeLessThan(5_000);
        const idleSince = await answered;
        expect(await closed(`${name}: HTTP/2 idle after a call`, used, idleSince, 10_000), name).toBeLessThan(
          5_000,
        );
      } finally {
        clearInterval(dribble);
        for (const s of [silent, dribbler]) s.destroy();
        idle.destroy();
        used.destroy();
      }
    }
    for (const name of ["grpc", "connect"]) {
      expect(
        await metric(
          ts,
          new RegExp(`^countersign_connections_closed_total\\{port="${name}",reason="handshake_timeout"\\}`),
        ),
        name,
      ).toBe(3);
      expect(
        await metric(
          ts,
          new RegExp(`^countersign_connections_closed_total\\{port="${name}",reason="idle"\\}`),
        ),
        name,
      ).toBe(1);
    }
  }, 60_000);

  it("closes a TLS client that dribbles the HTTP/2 preface a byte at a time, on both ports", async () => {
    for (const { host, port } of Object.values(ports())) {
      const since = Date.now();
      const tls = tlsConnect({
        host,
        port,
        ca: pki.ca,
        cert: pki.requester.cert,
        key: pki.requester.key,
        servername: "localhost",
        ALPNProtocols: ["h2"],
      });
      tls.on("error", () => {});
      const preface = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
      let sent = 0;
      const slowPreface = setInterval(() => {
        if (tls.encrypted && sent < preface.length && !tls.destroyed)
          tls.write(preface.subarray(sent, ++sent));
      }, 100);
      try {
        expect(await closed(`${port}: dribbled HTTP/2 preface`, tls, since, 10_000)).toBeLessThan(5_000);
      } finally {
        clearInterval(slowPreface);
        tls.destroy();
      }
    }
    for (const name of ["grpc", "connect"])
      expect(
        await metric(
          ts,
          new RegExp(`^countersign_connections_closed_total\\{port="${name}",reason="handshake_timeout"\\}`),
        ),
        name,
      ).toBe(4);
  }, 30_000);

  it("holds 1 000 connections per port from one address, caps that address, and still serves a real client", async () => {
    // Long enough for all of them to be accepted (on a busy machine) before the first is closed.
    const guarded = await startTestServer({
      pki,
      flags: { handshakeTimeout: "5s", maxConnectionsPerPeer: "500", maxConnections: "5000" },
    });
    const grpc = endpoint(guarded.server.grpcAddress);
    const connect = endpoint(guarded.server.connectUrl);
    const held: Socket[] = [];
    try {
      const opened = await Promise.all(
        [grpc, connect].flatMap(({ host, port }) =>
          Array.from(
            { length: 1000 },
            () =>
              new Promise<Socket>((resolve) => {
                const socket = tcpConnect({ host, port, localAddress: "127.0.0.2" });
                socket.on("error", () => {});
                held.push(socket);
                socket.once("connect", () => resolve(socket));
                socket.once("close", () => resolve(socket));
              }),
          ),
        ),
      );
      expect(opened).toHaveLength(2000);
      // Each port refused everything past its per-address cap at once.
      await waitFor(
        () =>
          held.slice(0, 1000).filter((s) => s.destroyed).length >= 500 &&
          held.slice(1000).filter((s) => s.destroyed).length >= 500,
        5_000,
        "the connections over the per-address cap to be refused",
      );
      // A client with a valid certificate (another address) is served on both ports meanwhile.
      for (const protocol of ["grpc", "connect", "grpc-web"] as const) {
        const got = await guarded
          .clients(pki.requester, protocol)
          .approvals.createApproval({ action: "deploy.staging", title: `through ${protocol}` });
        expect(got.approval?.state).toBe(State.PENDING);
      }
      for (const name of ["grpc", "connect"])
        expect(
          await metric(
            guarded,
            new RegExp(`^countersign_connections_closed_total\\{port="${name}",reason="refused_peer"\\}`),
          ),
          name,
        ).toBe(500);
      // And every held connection is closed by the server within the handshake timeout.
      await waitFor(() => held.every((s) => s.destroyed), 15_000, "every held connection closed");
    } finally {
      for (const s of held) s.destroy();
      await guarded.close();
    }
  }, 60_000);
});
