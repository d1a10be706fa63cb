import { execFile } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { create, type DescMessage, fromBinary, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as v1 from "../gen/grpc/reflection/v1/reflection_pb.js";
import * as v1alpha from "../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { createTestPki, type TestPki } from "./support/certs.js";
import { startTestServer, type TestServer } from "./support/test-server.js";

const run = promisify(execFile);
const buf = join(import.meta.dirname, "../node_modules/.bin/buf");

type Request = MessageInitShape<typeof v1.ServerReflectionRequestSchema>;

/**
 * Sends `requests` on one `ServerReflectionInfo` stream with a grpc-js client (the C-core-compatible
 * HTTP/2 gRPC client) and returns the answers, in order.
 */
async function reflect(
  address: string,
  credentials: grpc.ChannelCredentials,
  version: "v1" | "v1alpha",
  requests: Request[],
): Promise<v1.ServerReflectionResponse[]> {
  const schemas = version === "v1" ? v1 : v1alpha;
  const requestSchema: DescMessage = schemas.ServerReflectionRequestSchema;
  const client = new grpc.Client(address, credentials);
  try {
    return await new Promise((resolve, reject) => {
      const call = client.makeBidiStreamRequest(
        `/grpc.reflection.${version}.ServerReflection/ServerReflectionInfo`,
        (value: Request) => Buffer.from(toBinary(requestSchema, create(requestSchema, value as never))),
        (bytes: Buffer) =>
          // v1alpha's answers have v1's shape: read them as v1 to compare them.
          fromBinary(v1.ServerReflectionResponseSchema, bytes),
      );
      const answers: v1.ServerReflectionResponse[] = [];
      call.on("data", (answer: v1.ServerReflectionResponse) => answers.push(answer));
      call.on("error", reject);
      call.on("end", () => resolve(answers));
      for (const request of requests) call.write(request);
      call.end();
    });
  } finally {
    client.close();
  }
}

/** What a client learns from an answer: file names and decoded descriptors, services, or the error. */
function observed(answer: v1.ServerReflectionResponse) {
  const response = answer.messageResponse;
  switch (response.case) {
    case "fileDescriptorResponse": {
      const files = response.value.fileDescriptorProto.map((bytes) =>
        fromBinary(FileDescriptorProtoSchema, bytes),
      );
      return {
        first: files[0]?.name,
        files: files.map((f) => f.name).sort(),
        // Each file's declarations, as a client resolves them.
        declarations: files
          .map((f) => ({
            name: f.name,
            messages: f.messageType.map(
              (m) => `${m.name}(${m.field.map((x) => `${x.name}=${x.number}`).join(",")})`,
            ),
            enums: f.enumType.map((e) => `${e.name}(${e.value.map((v) => v.name).join(",")})`),
            services: f.service.map((s) => `${s.name}(${s.method.map((m) => m.name).join(",")})`),
            dependencies: [...f.dependency].sort(),
          }))
          .sort((a, b) => a.name.localeCompare(b.name)),
      };
    }
    case "listServicesResponse":
      return { services: response.value.service.map((s) => s.name).sort() };
    case "errorResponse":
      return { error: response.value.errorCode, message: response.value.errorMessage };
    case "allExtensionNumbersResponse":
      return { base: response.value.baseTypeName, numbers: response.value.extensionNumber };
    case undefined:
      return { none: true };
  }
}

/** Queries both ports answer alike. */
const sameOnBothPorts: Request[] = [
  { host: "", messageRequest: { case: "listServices", value: "*" } },
  { host: "", messageRequest: { case: "fileByFilename", value: "countersign/v1/approval_service.proto" } },
  { host: "", messageRequest: { case: "fileByFilename", value: "grpc/health/v1/health.proto" } },
  { host: "", messageRequest: { case: "fileByFilename", value: "google/protobuf/struct.proto" } },
  { host: "", messageRequest: { case: "fileContainingSymbol", value: "countersign.v1.ApprovalService" } },
  {
    host: "",
    messageRequest: { case: "fileContainingSymbol", value: "countersign.v1.AdminService.GetStats" },
  },
  { host: "", messageRequest: { case: "fileContainingSymbol", value: "countersign.v1.Approval" } },
  { host: "", messageRequest: { case: "fileContainingSymbol", value: "countersign.v1.Approval.id" } },
  { host: "", messageRequest: { case: "fileContainingSymbol", value: "countersign.v1.State" } },
  { host: "", messageRequest: { case: "fileContainingSymbol", value: "countersign.v1.State.STATE_PENDING" } },
  { host: "", messageRequest: { case: "fileContainingSymbol", value: "grpc.health.v1.Health" } },
  { host: "", messageRequest: { case: "fileContainingSymbol", value: "google.protobuf.Timestamp" } },
  { host: "", messageRequest: { case: "fileContainingSymbol", value: "google.protobuf.Duration" } },
  { host: "", messageRequest: { case: "fileContainingSymbol", value: "no.such.Symbol" } },
  { host: "", messageRequest: { case: "fileByFilename", value: "no/such/file.proto" } },
  {
    host: "",
    messageRequest: {
      case: "fileContainingExtension",
      value: { containingType: "countersign.v1.Approval", extensionNumber: 1000 },
    },
  },
  { host: "", messageRequest: { case: "allExtensionNumbersOfType", value: "no.such.Message" } },
];

describe("server reflection on both ports", () => {
  let pki: TestPki;
  let ts: TestServer;
  let tlsArgs: string[];
  let credentials: grpc.ChannelCredentials;
  beforeAll(async () => {
    pki = createTestPki();
    ts = await startTestServer({ pki });
    const dir = mkdtempSync(join(tmpdir(), "countersign-reflection-"));
    writeFileSync(join(dir, "client.pem"), pki.requester.cert);
    writeFileSync(join(dir, "client-key.pem"), pki.requester.key);
    tlsArgs = [
      "--cacert",
      pki.paths.ca,
      "--cert",
      join(dir, "client.pem"),
      "--key",
      join(dir, "client-key.pem"),
    ];
    credentials = grpc.credentials.createSsl(
      Buffer.from(pki.ca),
      Buffer.from(pki.requester.key),
      Buffer.from(pki.requester.cert),
    );
  });
  afterAll(async () => {
    await ts?.close();
  });

  const ports = () => ({
    grpc: ts.server.grpcAddress,
    connect: new URL(ts.server.connectUrl).host,
  });

  it("gives a grpc-js client the same answers from the gRPC and the Connect port, v1 and v1alpha", async () => {
    for (const version of ["v1", "v1alpha"] as const) {
      const answers = {
        grpc: await reflect(ports().grpc, credentials, version, sameOnBothPorts),
        connect: await reflect(ports().connect, credentials, version, sameOnBothPorts),
      };
      const seen = answers.connect.map(observed);
      const expected = answers.grpc.map(observed);
      expect(seen).toHaveLength(sameOnBothPorts.length);
      for (const [i, answer] of seen.entries()) {
        const grpcAnswer = expected[i];
        if ("files" in answer && grpcAnswer !== undefined && "files" in grpcAnswer) {
          // The same file first and the same declarations in every file. The Connect port sends every
          // transitive import, the gRPC port (@grpc/reflection) sometimes fewer (it follows type
          // references), which clients then ask for by name.
          expect(answer.first, version).toBe(grpcAnswer.first);
          expect(answer.declarations, version).toEqual(expect.arrayContaining(grpcAnswer.declarations ?? []));
          for (const file of answer.declarations ?? [])
            expect(answer.files, file.name).toEqual(expect.arrayContaining(file.dependencies));
        } else {
          expect(answer, `${version} ${JSON.stringify(sameOnBothPorts[i])}`).toEqual(grpcAnswer);
        }
      }
      expect(seen[0]).toEqual({
        services: ["countersign.v1.AdminService", "countersign.v1.ApprovalService", "grpc.health.v1.Health"],
      });
      // The file first, then its imports.
      expect(seen[1]).toMatchObject({
        first: "countersign/v1/approval_service.proto",
        files: [
          "countersign/v1/approval.proto",
          "countersign/v1/approval_rules.proto",
          "countersign/v1/approval_service.proto",
          "google/protobuf/duration.proto",
          "google/protobuf/struct.proto",
          "google/protobuf/timestamp.proto",
        ],
      });
      expect(seen.slice(-4)).toEqual([
        { error: grpc.status.NOT_FOUND, message: "Symbol not found: no.such.Symbol" },
        { error: grpc.status.NOT_FOUND, message: "Proto file not found: no/such/file.proto" },
        {
          error: grpc.status.NOT_FOUND,
          message: "Extension not found for symbol countersign.v1.Approval at field 1000",
        },
        { error: grpc.status.NOT_FOUND, message: "Extensions not found for symbol no.such.Message" },
      ]);
      // Every answer echoes its request.
      for (const [i, answer] of answers.connect.entries())
        expect(answer.originalRequest?.messageRequest.case).toBe(sameOnBothPorts[i]?.messageRequest?.case);
    }
  });

  it("answers a message's extension numbers on the Connect port: none, for a message without extensions", async () => {
    const [answer] = await reflect(ports().connect, credentials, "v1", [
      { host: "", messageRequest: { case: "allExtensionNumbersOfType", value: "countersign.v1.Approval" } },
    ]);
    expect(answer && observed(answer)).toEqual({ base: "countersign.v1.Approval", numbers: [] });
  });

  it("lets `buf curl --reflect` (v1 and v1alpha) list the services and call one on either port", async () => {
    for (const url of [`https://${ports().grpc}`, ts.server.connectUrl]) {
      for (const reflectProtocol of ["grpc-v1", "grpc-v1alpha"]) {
        const args = ["curl", "--protocol", "grpc", "--reflect-protocol", reflectProtocol, ...tlsArgs];
        const listed = await run(buf, [...args, "--list-services", url]);
        expect(listed.stdout.trim().split("\n").sort(), `${url} ${reflectProtocol}`).toEqual([
          "countersign.v1.AdminService",
          "countersign.v1.ApprovalService",
          "grpc.health.v1.Health",
        ]);
        const methods = await run(buf, [...args, "--list-methods", url]);
        expect(methods.stdout, url).toContain("countersign.v1.ApprovalService/WatchApproval");
      }
      const created = await run(buf, [
        "curl",
        "--protocol",
        "grpc",
        ...tlsArgs,
        "-d",
        JSON.stringify({ action: "deploy.staging", title: `buf curl to ${url}` }),
        `${url}/countersign.v1.ApprovalService/CreateApproval`,
      ]);
      expect(JSON.parse(created.stdout).approval.state, url).toBe("STATE_PENDING");
    }
  });
});

describe("server reflection on the development server's plaintext Connect port", () => {
  it("is served over h2c", async () => {
    const dev = await startTestServer({});
    try {
      const listed = await run(buf, [
        "curl",
        "--protocol",
        "grpc",
        "--http2-prior-knowledge",
        "--list-services",
        dev.server.connectUrl,
      ]);
      expect(listed.stdout.trim().split("\n").sort()).toEqual([
        "countersign.v1.AdminService",
        "countersign.v1.ApprovalService",
        "grpc.health.v1.Health",
      ]);
      const health = await run(buf, [
        "curl",
        "--protocol",
        "grpc",
        "--http2-prior-knowledge",
        `${dev.server.connectUrl}/grpc.health.v1.Health/Check`,
      ]);
      expect(JSON.parse(health.stdout)).toEqual({ status: "SERVING" });
    } finally {
      await dev.close();
    }
  });
});
