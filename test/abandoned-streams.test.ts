import { readFileSync, statSync, watch, writeFileSync } from "node:fs";
import * as http2 from "node:http2";
import { join } from "node:path";
import { type TLSSocket, connect as tlsConnect } from "node:tls";
import { create, toBinary } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WatchApprovalRequestSchema } from "../gen/countersign/v1/approval_service_pb.js";
import { createTestPki, type TestPki } from "./support/certs.js";
import { createClientFactory } from "./support/clients.js";
import { pollUntil } from "./support/redis.js";
import { type ServerProcess, startServerProcess } from "./support/server-process.js";

/**
 * The abandoned-streams drill (issue 16): WatchApproval streams opened over both transports and then
 * dropped without a cancel (their sockets destroyed). 1 000 in the suite; `npm run drills` runs 10 000
 * (`DRILL_STREAMS`).
 */
const streams = Number(process.env.DRILL_STREAMS ?? "1000");
/** Streams per HTTP/2 connection (the servers' default concurrent-stream limit is 100 or more). */
const perConnection = 100;

let pki: TestPki;
let server: ServerProcess;
let memoryFile: string;
beforeAll(async () => {
  pki = createTestPki();
  const dir = join(pki.paths.ca, "..");
  const policy = join(dir, "policies.yaml");
  writeFileSync(
    policy,
    "version: 1\ndefaults: { channel: C0, timeout: 1h }\npolicies:\n  - { name: p, match: 'a.*', approvers: { users: [U1] } }\n",
  );
  memoryFile = join(dir, "memory.json");
  server = await startServerProcess(
    [
      ...["--policy", policy, "--grpc-listen", "127.0.0.1:0", "--connect-listen", "127.0.0.1:0"],
      ...[
        "--ops-listen",
        "127.0.0.1:0",
        "--tls-cert",
        pki.paths.serverCert,
        "--tls-key",
        pki.paths.serverKey,
      ],
      ...["--tls-client-ca", pki.paths.ca, "--require-client-cert", "--create-rate-limit", "0"],
      ...["--max-streams-per-identity", String(streams * 2), "--max-streams", String(streams * 2)],
      ...["--heartbeat-interval", "1h", "--audit-file", join(dir, "audit.jsonl")],
    ],
    {
      env: {
        // The benchmark's preload: SIGUSR2 runs a full GC and writes heapUsed to BENCH_MEMORY_FILE.
        NODE_OPTIONS: `--expose-gc --import ${join(import.meta.dirname, "../bench/server-preload.mjs")}`,
        BENCH_MEMORY_FILE: memoryFile,
      },
      timeoutMs: 60_000,
    },
  );
}, 90_000);
afterAll(async () => {
  await server?.stop();
});

/** The server's heap after a full GC, as the preload reports it on SIGUSR2. */
async function heapUsed(): Promise<number> {
  const before = (() => {
    try {
      return statSync(memoryFile).mtimeMs;
    } catch {
      return 0;
    }
  })();
  const written = new Promise<void>((resolve, reject) => {
    const watcher = watch(join(memoryFile, ".."), () => {
      try {
        if (statSync(memoryFile).mtimeMs === before) return;
      } catch {
        return;
      }
      clearTimeout(timer);
      watcher.close();
      resolve();
    });
    const timer = setTimeout(() => {
      watcher.close();
      reject(new Error("the server did not report its memory"));
    }, 20_000);
  });
  server.child.kill("SIGUSR2");
  await written;
  return (JSON.parse(readFileSync(memoryFile, "utf8")) as { heapUsed: number }).heapUsed;
}

async function gauge(): Promise<number> {
  const text = await (await fetch(`${server.opsUrl}/metrics`)).text();
  const line = text
    .split("\n")
    .find((l) => l.startsWith('countersign_watch_streams_active{method="WatchApproval"}'));
  return Number(line?.split(" ").at(-1) ?? "0");
}

/** A gRPC request message: the 5-byte frame header and the protobuf bytes. */
function grpcFrame(bytes: Uint8Array): Buffer {
  const frame = Buffer.alloc(5 + bytes.length);
  frame.writeUInt32BE(bytes.length, 1);
  frame.set(bytes, 5);
  return frame;
}

/**
 * Opens `count` WatchApproval streams (gRPC framing) on `perConnection`-stream HTTP/2 connections to
 * `url`, resolves once each has its first message, and returns their TLS sockets (to destroy, as a
 * client that vanishes would: no RST_STREAM, no GOAWAY).
 */
async function openStreams(url: string, id: string, count: number): Promise<TLSSocket[]> {
  const body = grpcFrame(toBinary(WatchApprovalRequestSchema, create(WatchApprovalRequestSchema, { id })));
  const sockets: TLSSocket[] = [];
  const opened: Promise<void>[] = [];
  for (let i = 0; i < count; i += perConnection) {
    const target = new URL(url);
    const session = http2.connect(url, {
      createConnection: () => {
        const socket = tlsConnect({
          host: target.hostname,
          port: Number(target.port),
          ca: pki.ca,
          cert: pki.requester.cert,
          key: pki.requester.key,
          servername: "localhost",
          ALPNProtocols: ["h2"],
        });
        socket.on("error", () => {});
        sockets.push(socket);
        return socket;
      },
    });
    session.on("error", () => {});
    for (let j = 0; j < Math.min(perConnection, count - i); j++) {
      const stream = session.request({
        ":method": "POST",
        ":path": "/countersign.v1.ApprovalService/WatchApproval",
        "content-type": "application/grpc",
        te: "trailers",
      });
      stream.on("error", () => {});
      stream.end(body);
      opened.push(
        new Promise((resolve, reject) => {
          stream.once("data", () => resolve());
          stream.once("close", () => reject(new Error(`a stream closed before its snapshot (${url})`)));
        }),
      );
    }
  }
  await Promise.all(opened);
  return sockets;
}

describe("abandoned watch streams", () => {
  it(`${streams} streams over both transports dropped without a cancel: the gauge returns to 0, memory to within 10 %, calls served throughout`, async () => {
    const factory = createClientFactory({
      grpcAddress: server.grpcAddress,
      connectUrl: server.connectUrl,
      ca: pki.ca,
    });
    const grpcUrl = `https://${server.grpcAddress}`;
    try {
      const client = factory.clients(pki.requester, "connect").approvals;
      const id = (await client.createApproval({ action: "a.watched", title: "watched" })).approval?.id ?? "";

      // Warm up (code paths, pools), abandon, and measure the floor.
      for (const s of [
        ...(await openStreams(grpcUrl, id, 100)),
        ...(await openStreams(server.connectUrl, id, 100)),
      ])
        s.destroy();
      await pollUntil(async () => (await gauge()) === 0, 30_000, "the warm-up streams to end");
      const floor = await heapUsed();

      // Legitimate calls, one after another, for as long as the drill runs.
      let serving = true;
      let served = 0;
      const legit = (async () => {
        const other = factory.clients(pki.requester, "grpc").approvals;
        while (serving) {
          const got = await other.getApproval({ id });
          if (got.approval?.id !== id) throw new Error("a legitimate call was answered wrongly");
          served++;
        }
      })();

      const half = Math.ceil(streams / 2);
      const sockets = [
        ...(await openStreams(grpcUrl, id, half)),
        ...(await openStreams(server.connectUrl, id, streams - half)),
      ];
      expect(await gauge()).toBe(streams);
      const servedWhileOpen = served;
      for (const s of sockets) s.destroy();
      await pollUntil(async () => (await gauge()) === 0, 60_000, "every abandoned stream to end");
      serving = false;
      await legit;
      expect(served).toBeGreaterThan(servedWhileOpen);
      expect(servedWhileOpen).toBeGreaterThan(0);

      const after = await heapUsed();
      expect(after, `heap ${floor} before, ${after} after`).toBeLessThan(floor * 1.1);
    } finally {
      factory.close();
    }
  }, 300_000);
});
