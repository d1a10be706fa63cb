import { connect as http2Connect } from "node:http2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestPki, type TestPki } from "./support/certs.js";
import { startTestServer, type TestServer } from "./support/test-server.js";

/** Bytes no message decodes: field 1, length-delimited, says 5 bytes follow, and 1 does. */
const garbage = Buffer.from([0x0a, 0x05, 0x61]);

/** One enveloped message (gRPC, gRPC-Web and Connect streaming framing). */
function envelope(flags: number, data: Uint8Array): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt8(flags, 0);
  head.writeUInt32BE(data.length, 1);
  return Buffer.concat([head, data]);
}

/** The enveloped messages of a body. */
function envelopes(body: Buffer): { flags: number; data: Buffer }[] {
  const out: { flags: number; data: Buffer }[] = [];
  for (let at = 0; at + 5 <= body.length; ) {
    const length = body.readUInt32BE(at + 1);
    out.push({ flags: body.readUInt8(at), data: body.subarray(at + 5, at + 5 + length) });
    at += 5 + length;
  }
  return out;
}

interface Answer {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

let pki: TestPki;
let ts: TestServer;
beforeAll(async () => {
  pki = createTestPki();
  ts = await startTestServer({ pki });
});
afterAll(async () => {
  await ts?.close();
});

/** One HTTP/2 request over mutual TLS; the answer's headers and trailers merged. */
async function post(url: string, path: string, contentType: string, body: Buffer): Promise<Answer> {
  const session = http2Connect(url, { ca: pki.ca, cert: pki.requester.cert, key: pki.requester.key });
  try {
    return await new Promise<Answer>((resolve, reject) => {
      const stream = session.request({
        ":method": "POST",
        ":path": path,
        "content-type": contentType,
        te: "trailers",
      });
      const headers: Record<string, string> = {};
      let status = 0;
      const chunks: Buffer[] = [];
      stream.on("response", (h) => {
        status = Number(h[":status"]);
        for (const [k, v] of Object.entries(h)) headers[k] = String(v);
      });
      stream.on("trailers", (t) => {
        for (const [k, v] of Object.entries(t)) headers[k] = String(v);
      });
      stream.on("data", (chunk: Buffer) => chunks.push(chunk));
      stream.on("end", () => resolve({ status, headers, body: Buffer.concat(chunks) }));
      stream.on("error", reject);
      stream.end(body);
    });
  } finally {
    session.close();
  }
}

/** The gRPC status of a gRPC answer (trailers, or headers of a trailers-only answer). */
function grpcStatus(answer: Answer): { code: string | undefined; message: string } {
  return {
    code: answer.headers["grpc-status"],
    message: decodeURIComponent(answer.headers["grpc-message"] ?? ""),
  };
}

/** The gRPC status in a gRPC-Web answer's trailer frame. */
function grpcWebStatus(answer: Answer): { code: string | undefined; message: string } {
  const trailer = envelopes(answer.body).find((e) => (e.flags & 0x80) === 0x80);
  const fields = new Map(
    (trailer?.data.toString() ?? "")
      .split("\r\n")
      .filter((line) => line.includes(":"))
      .map((line) => {
        const colon = line.indexOf(":");
        return [line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim()] as const;
      }),
  );
  return { code: fields.get("grpc-status"), message: decodeURIComponent(fields.get("grpc-message") ?? "") };
}

/** The error of a Connect streaming answer's end-stream frame. */
function endStreamError(answer: Answer): { code?: string; message?: string } | undefined {
  const end = envelopes(answer.body).find((e) => (e.flags & 0x02) === 0x02);
  return end === undefined
    ? undefined
    : (JSON.parse(end.data.toString()) as { error?: { code: string } }).error;
}

const cannotDecode = (type: string) => new RegExp(`^cannot decode ${type.replaceAll(".", "\\.")}`);
const invalidArgument = "3";

describe("a request message that does not decode", () => {
  it("is INVALID_ARGUMENT naming the message type over gRPC, on both ports, unary and server streaming", async () => {
    const calls = [
      ["/countersign.v1.ApprovalService/CreateApproval", "countersign.v1.CreateApprovalRequest"],
      ["/countersign.v1.ApprovalService/WatchApproval", "countersign.v1.WatchApprovalRequest"],
    ] as const;
    for (const url of [`https://${ts.server.grpcAddress}`, ts.server.connectUrl]) {
      for (const [path, type] of calls) {
        const answer = await post(url, path, "application/grpc", envelope(0, garbage));
        expect({ url, path, status: answer.status }).toEqual({ url, path, status: 200 });
        const status = grpcStatus(answer);
        expect({ url, path, code: status.code }).toEqual({ url, path, code: invalidArgument });
        expect(status.message, `${url}${path}`).toMatch(cannotDecode(type));
      }
    }
  });

  it("is INVALID_ARGUMENT naming the problem over gRPC-Web, unary and server streaming", async () => {
    for (const path of [
      "/countersign.v1.ApprovalService/CreateApproval",
      "/countersign.v1.ApprovalService/WatchApproval",
    ]) {
      const answer = await post(
        ts.server.connectUrl,
        path,
        "application/grpc-web+proto",
        envelope(0, garbage),
      );
      expect(answer.status, path).toBe(200);
      const status = grpcWebStatus(answer);
      expect(status.code, path).toBe(invalidArgument);
      expect(status.message, path).toMatch(/^cannot decode countersign\.v1\.\w+Request: premature EOF/);
    }
  });

  it("is HTTP 400 invalid_argument naming the problem over Connect, binary and JSON", async () => {
    const binary = await post(
      ts.server.connectUrl,
      "/countersign.v1.ApprovalService/CreateApproval",
      "application/proto",
      garbage,
    );
    expect(binary.status).toBe(400);
    expect(JSON.parse(binary.body.toString())).toEqual({
      code: "invalid_argument",
      message: "cannot decode countersign.v1.CreateApprovalRequest: premature EOF",
    });
    const json = await post(
      ts.server.connectUrl,
      "/countersign.v1.ApprovalService/CreateApproval",
      "application/json",
      Buffer.from('{"action": "deploy.staging",'),
    );
    expect(json.status).toBe(400);
    const error = JSON.parse(json.body.toString()) as { code: string; message: string };
    expect(error.code).toBe("invalid_argument");
    expect(error.message).toMatch(
      /^cannot decode message countersign\.v1\.CreateApprovalRequest from JSON: /,
    );
  });

  it("ends a Connect server stream with invalid_argument naming the problem, binary and JSON", async () => {
    const binary = await post(
      ts.server.connectUrl,
      "/countersign.v1.ApprovalService/WatchApproval",
      "application/connect+proto",
      envelope(0, garbage),
    );
    expect(binary.status).toBe(200);
    expect(endStreamError(binary)).toEqual({
      code: "invalid_argument",
      message: "cannot decode countersign.v1.WatchApprovalRequest: premature EOF",
    });
    const json = await post(
      ts.server.connectUrl,
      "/countersign.v1.ApprovalService/WatchApproval",
      "application/connect+json",
      envelope(0, Buffer.from('{"id": ')),
    );
    expect(json.status).toBe(200);
    expect(endStreamError(json)).toMatchObject({
      code: "invalid_argument",
      message: expect.stringMatching(
        /^cannot decode message countersign\.v1\.WatchApprovalRequest from JSON: /,
      ),
    });
  });

  it("is INVALID_ARGUMENT on the Connect port's health and reflection services too", async () => {
    const health = await post(
      ts.server.connectUrl,
      "/grpc.health.v1.Health/Check",
      "application/grpc",
      envelope(0, garbage),
    );
    expect(grpcStatus(health)).toEqual({
      code: invalidArgument,
      message: "cannot decode grpc.health.v1.HealthCheckRequest: premature EOF",
    });
    for (const version of ["v1", "v1alpha"]) {
      const reflection = await post(
        ts.server.connectUrl,
        `/grpc.reflection.${version}.ServerReflection/ServerReflectionInfo`,
        "application/grpc",
        envelope(0, garbage),
      );
      expect(grpcStatus(reflection)).toEqual({
        code: invalidArgument,
        message: `cannot decode grpc.reflection.${version}.ServerReflectionRequest: premature EOF`,
      });
    }
  });

  it("ends a reflection stream with INVALID_ARGUMENT after answering the messages before it", async () => {
    const listServices = Buffer.from([0x3a, 0x01, 0x2a]); // list_services: "*"
    const answer = await post(
      ts.server.connectUrl,
      "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
      "application/grpc",
      Buffer.concat([envelope(0, listServices), envelope(0, garbage)]),
    );
    expect(envelopes(answer.body)).toHaveLength(1);
    expect(grpcStatus(answer)).toEqual({
      code: invalidArgument,
      message: "cannot decode grpc.reflection.v1.ServerReflectionRequest: premature EOF",
    });
  });

  it("leaves the port serving", async () => {
    const ok = await post(
      ts.server.connectUrl,
      "/countersign.v1.ApprovalService/CreateApproval",
      "application/json",
      Buffer.from(JSON.stringify({ action: "deploy.staging", title: "after garbage" })),
    );
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.body.toString())).toMatchObject({ approval: { state: "STATE_PENDING" } });
  });
});
