/**
 * Property-based tests over the hostile-input surfaces: the create validator (through the real service),
 * the policy loader, override governance and the grpc-js request decoder. Arbitrary input never crashes
 * the process and a bad request is always INVALID_ARGUMENT naming a field.
 *
 * `npm test` runs a short budget; `npm run fuzz` runs each property for FUZZ_SECONDS (default 60).
 */
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApprovalService } from "../gen/countersign/v1/approval_service_pb.js";
import { BadRequestSchema } from "../gen/google/rpc/error_details_pb.js";
import { systemClock } from "../server/domain/clock.js";
import { ValidationError } from "../server/domain/errors.js";
import { applyParamsEdit } from "../server/domain/governance.js";
import type { JsonObject } from "../server/domain/types.js";
import { createStaticPolicyHolder } from "../server/policy/policy-holder.js";
import { parsePolicyDocument } from "../server/policy/policy-loader.js";
import { createApprovalOperations } from "../server/services/approval-operations.js";
import { createApprovalService } from "../server/services/approval-service.js";
import { createMemoryApprovalStore } from "../server/store/memory-approval-store.js";
import { createIdentityInterceptor } from "../server/transport/interceptors.js";
import { startTestServer, type TestServer, testPolicy } from "./support/test-server.js";

const seconds = Number(process.env.FUZZ_SECONDS ?? "0");
/** Short in `npm test`; time-boxed per property in `npm run fuzz`. */
const budget: fc.Parameters<unknown> =
  seconds > 0 ? { numRuns: 10_000_000, interruptAfterTimeLimit: seconds * 1000 } : { numRuns: 150 };
const timeout = Math.max(30_000, seconds * 1000 * 2 + 30_000);

const json = fc.jsonValue({ maxDepth: 20 });
const text = fc.oneof(
  fc.string({ maxLength: 300 }),
  fc.string({ unit: "binary", maxLength: 50 }),
  fc.constant(""),
);

describe("CreateApproval with arbitrary input", () => {
  const policies = createStaticPolicyHolder(testPolicy);
  const operations = createApprovalOperations({
    store: createMemoryApprovalStore(),
    policies,
    clock: systemClock,
  });
  const transport = createRouterTransport(
    ({ service }) => service(ApprovalService, createApprovalService({ operations })),
    {
      router: {
        interceptors: [
          createIdentityInterceptor({ developmentIdentity: "fuzz", requesters: "any", deciders: [] }),
        ],
      },
    },
  );
  const client = createClient(ApprovalService, transport);

  it(
    "answers OK or INVALID_ARGUMENT naming the fields, never anything else",
    async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.record({
            action: fc.oneof(text, fc.constantFrom("deploy.staging", "deploy.production.x", "db.migrate")),
            title: text,
            justification: text,
            params: fc.dictionary(fc.string({ maxLength: 20 }), json, { maxKeys: 30 }),
            idempotencyKey: text,
            onBehalfOf: text,
            origin: fc.record({
              repo: text,
              branch: text,
              pullRequest: text,
              runId: text,
              links: fc.array(fc.record({ label: text, url: fc.oneof(fc.webUrl(), text) }), {
                maxLength: 25,
              }),
            }),
            rerequestOf: fc.oneof(fc.constant(""), text),
          }),
          async (req) => {
            try {
              const res = await client.createApproval(req as never);
              expect(res.approval?.id).toBeTruthy();
            } catch (err) {
              const ce = ConnectError.from(err);
              expect([Code.InvalidArgument, Code.AlreadyExists]).toContain(ce.code);
              if (ce.code === Code.InvalidArgument) {
                const fields = ce
                  .findDetails(BadRequestSchema)
                  .flatMap((d) => d.fieldViolations.map((v) => v.field));
                expect(fields.length).toBeGreaterThan(0);
              }
            }
          },
        ),
        budget,
      );
    },
    timeout,
  );
});

describe("the policy loader with arbitrary documents", () => {
  it(
    "never throws; reports problems with paths or compiles",
    () => {
      const policyLike = fc.record({
        version: fc.oneof(fc.constant(1), json),
        defaults: fc.oneof(json, fc.record({ timeout: text, channel: text, unknown_action: text })),
        policies: fc.array(
          fc.dictionary(
            fc.constantFrom(
              "name",
              "match",
              "approvers",
              "required_approvals",
              "timeout",
              "stages",
              "overrides",
              "x",
            ),
            json,
          ),
          { maxLength: 5 },
        ),
      });
      fc.assert(
        fc.property(
          fc.oneof(
            text,
            json.map((v) => JSON.stringify(v)),
            policyLike.map((v) => JSON.stringify(v)),
          ),
          (doc) => {
            const result = parsePolicyDocument(doc);
            if (!result.ok) {
              expect(result.problems.length).toBeGreaterThan(0);
              for (const p of result.problems) expect(typeof p.path).toBe("string");
            }
          },
        ),
        budget,
      );
    },
    timeout,
  );
});

describe("override governance with arbitrary edits", () => {
  it(
    "either applies the edit or throws a ValidationError naming edited_params fields",
    () => {
      const rules = {
        keys: ["version", "replicas"],
        maxKeys: 1,
        maxDiffBytes: 64,
        requestKeys: [],
        schema: {
          type: "object",
          properties: { version: { type: "string", pattern: "^v[0-9]+" }, replicas: { type: "integer" } },
        },
      } as const;
      fc.assert(
        fc.property(
          fc.dictionary(fc.string({ maxLength: 10 }), json, { maxKeys: 8 }),
          fc.dictionary(fc.string({ maxLength: 10 }), json, { maxKeys: 8 }),
          (current, edited) => {
            try {
              applyParamsEdit(current as JsonObject, edited as JsonObject, rules as never, "U1", 0);
            } catch (err) {
              expect(err).toBeInstanceOf(ValidationError);
              for (const v of (err as ValidationError).violations)
                expect(v.field.startsWith("edited_params")).toBe(true);
            }
          },
        ),
        budget,
      );
    },
    timeout,
  );
});

describe("the grpc-js server with undecodable requests", () => {
  let ts: TestServer;
  let client: grpc.Client;
  beforeAll(async () => {
    ts = await startTestServer({});
    client = new grpc.Client(ts.server.grpcAddress, grpc.credentials.createInsecure());
  });
  afterAll(async () => {
    client?.close();
    await ts?.close();
  });

  it(
    "answers arbitrary bytes with INVALID_ARGUMENT (or OK when they happen to decode) and keeps serving",
    async () => {
      await fc.assert(
        fc.asyncProperty(fc.uint8Array({ maxLength: 512 }), async (bytes) => {
          const status = await new Promise<number>((resolve) => {
            client.makeUnaryRequest(
              "/countersign.v1.ApprovalService/CreateApproval",
              (b: Uint8Array) => Buffer.from(b),
              (b: Buffer) => b,
              bytes,
              new grpc.Metadata(),
              {},
              (err: grpc.ServiceError | null) => resolve(err ? err.code : 0),
            );
          });
          expect([grpc.status.OK, grpc.status.INVALID_ARGUMENT, grpc.status.ALREADY_EXISTS]).toContain(
            status,
          );
        }),
        seconds > 0 ? budget : { numRuns: 60 },
      );
    },
    timeout,
  );
});
