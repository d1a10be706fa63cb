import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type BenchProtocol, benchProtocols, openConnection } from "../../bench/transports.js";
import { BadRequestSchema } from "../../gen/google/rpc/error_details_pb.js";
import { createTestPki, type TestPki, testIdentities } from "../../test/support/certs.js";
import { startTestServer, type TestServer } from "../../test/support/test-server.js";

let pki: TestPki;
let withEcho: TestServer;
let withoutEcho: TestServer;

beforeAll(async () => {
  pki = createTestPki();
  [withEcho, withoutEcho] = await Promise.all([
    startTestServer({ pki, flags: { benchEcho: true, deciders: testIdentities.decider } }),
    startTestServer({ pki }),
  ]);
});
afterAll(async () => {
  await Promise.all([withEcho?.close(), withoutEcho?.close()]);
});

/** Opens a connection to `server` as the requester (each test closes its own). */
function connect(server: TestServer, protocol: BenchProtocol) {
  return openConnection(
    {
      grpcAddress: server.server.grpcAddress,
      connectUrl: server.server.connectUrl,
      ca: pki.ca,
    },
    protocol,
    pki.requester,
  );
}

describe.each(benchProtocols)("EchoService over %s (countersign serve --bench-echo)", (protocol) => {
  it("returns the payload and the identity the interceptors established from the certificate", async () => {
    const connection = connect(withEcho, protocol);
    try {
      const payload = new Uint8Array(300).map((_, i) => i % 251);
      const res = await connection.echo.echo({ payload });
      expect([...res.payload]).toEqual([...payload]);
      expect(res.identity).toBe(testIdentities.requester);
    } finally {
      connection.close();
    }
  });

  it("streams 10 copies by default, as many as asked up to 1000, and refuses more naming the field", async () => {
    const connection = connect(withEcho, protocol);
    try {
      const payload = new Uint8Array([1, 2, 3]);
      const sequences: number[] = [];
      for await (const m of connection.echo.echoStream({ payload })) {
        expect([...m.payload]).toEqual([...payload]);
        sequences.push(m.sequence);
      }
      expect(sequences).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);

      let count = 0;
      for await (const _ of connection.echo.echoStream({ payload, count: 1000 })) count++;
      expect(count).toBe(1000);

      const err = await (async () => {
        for await (const _ of connection.echo.echoStream({ payload, count: 1001 })) {
          // no message is expected
        }
      })().then(
        () => undefined,
        (e: unknown) => ConnectError.from(e),
      );
      expect(err?.code).toBe(Code.InvalidArgument);
      expect(err?.findDetails(BadRequestSchema)[0]?.fieldViolations.map((v) => v.field)).toEqual(["count"]);
    } finally {
      connection.close();
    }
  });

  it("is not served without --bench-echo", async () => {
    const connection = connect(withoutEcho, protocol);
    try {
      const err = await connection.echo.echo({ payload: new Uint8Array([1]) }).then(
        () => undefined,
        (e: unknown) => ConnectError.from(e),
      );
      expect(err?.code).toBe(Code.Unimplemented);
    } finally {
      connection.close();
    }
  });
});
