/**
 * Property-based tests over the hostile-input surfaces: the create validator (through the real service),
 * the policy loader, override governance, the grpc-js request decoder and the Slack interactivity
 * endpoint. Arbitrary input never crashes the process and a bad request is always INVALID_ARGUMENT naming
 * a field (on the Slack endpoint: a 4xx saying what is wrong).
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
import { slackActions } from "../server/slack/blocks.js";
import { slackViews } from "../server/slack/modals.js";
import { createMemoryApprovalStore } from "../server/store/memory-approval-store.js";
import { createIdentityInterceptor } from "../server/transport/interceptors.js";
import { type SlackTestbed, startSlackTestbed } from "./support/fake-slack.js";
import { blockActionPayload, interactionBody, postSigned } from "./support/slack-signing.js";
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

describe("the Slack interactivity endpoint with arbitrary requests", () => {
  let bed: SlackTestbed;
  let approvalId: string;
  beforeAll(async () => {
    bed = await startSlackTestbed();
    const { approvals } = bed.ts.clients(undefined, "connect");
    const created = await approvals.createApproval({ action: "deploy.production", title: "fuzz target" });
    approvalId = created.approval?.id ?? "";
  });
  afterAll(async () => {
    await bed?.close();
  });

  it(
    "never crashes or answers 5xx: a bad request gets a 4xx naming the problem, a good one 200",
    async () => {
      const form = "application/x-www-form-urlencoded";
      /** Mostly a well-formed value, sometimes any JSON value in its place. */
      const usually = <T>(good: fc.Arbitrary<T>) =>
        fc.oneof({ weight: 9, arbitrary: good as fc.Arbitrary<unknown> }, { weight: 1, arbitrary: json });
      const target = fc.oneof(fc.constant(approvalId), text);
      const payload = fc.record(
        {
          type: usually(fc.constantFrom("block_actions", "view_submission", "view_closed", "shortcut")),
          user: usually(fc.record({ id: usually(fc.constantFrom("U1", "U2", "UADMIN", "UQA", "")) })),
          team: usually(fc.record({ id: usually(fc.constant("TFAKE")) })),
          trigger_id: usually(text),
          channel: usually(fc.record({ id: usually(fc.constantFrom("C0PROD", "")) })),
          container: usually(fc.record({ message_ts: usually(text), channel_id: usually(text) })),
          message: usually(fc.record({ ts: usually(text) })),
          actions: usually(
            fc.array(
              fc.record(
                {
                  action_id: usually(
                    fc.constantFrom(...Object.values(slackActions), "countersign_x", "other"),
                  ),
                  value: usually(target),
                  action_ts: usually(text),
                  type: usually(fc.constant("button")),
                },
                { requiredKeys: [] },
              ),
              { maxLength: 3 },
            ),
          ),
          view: usually(
            fc.record(
              {
                id: usually(text),
                callback_id: usually(fc.constantFrom(slackViews.deny, slackViews.edit, "other")),
                private_metadata: usually(
                  fc.oneof(
                    target.map((a) => JSON.stringify({ a, c: "C0PROD" })),
                    text,
                  ),
                ),
                state: usually(
                  fc.record({
                    values: usually(
                      fc.dictionary(
                        fc.constantFrom("reason", "param_0", "param_1", "x"),
                        usually(
                          fc.dictionary(fc.constantFrom("value", "x"), usually(fc.record({ value: text }))),
                        ),
                      ),
                    ),
                  }),
                ),
              },
              { requiredKeys: [] },
            ),
          ),
        },
        { requiredKeys: [] },
      );
      const request = fc.oneof(
        { weight: 4, arbitrary: payload.map((p) => ({ contentType: form, body: interactionBody(p) })) },
        json.map((v) => ({ contentType: form, body: interactionBody(v) })),
        text.map((body) => ({ contentType: form, body })),
        fc.record({
          contentType: fc.constantFrom("application/json", "text/plain", `${form}; charset=utf-8`, undefined),
          body: fc.oneof(
            text,
            json.map((v) => JSON.stringify(v)),
            fc.constant('{"type":"url_verification","challenge":"c"}'),
          ),
        }),
      );
      const signing = fc.constantFrom("signed", "signed", "signed", "wrong secret", "stale");
      /** Signed (timestamp, body) pairs already sent: sending one again is a replay. */
      const sent = new Set<string>();
      let n = 0;
      await fc.assert(
        fc.asyncProperty(request, signing, async ({ contentType, body }, how) => {
          // A different timestamp in the window for each request, so that equal bodies are not replays.
          const timestampSec = bed.nowSec() - (how === "stale" ? 400 : n++ % 250);
          const key = `${timestampSec}:${body}`;
          const replay = how === "signed" && sent.has(key);
          if (how === "signed") sent.add(key);
          const res = await postSigned(bed.eventsUrl, {
            signingSecret: how === "wrong secret" ? "not-the-secret" : bed.signingSecret,
            body,
            timestampSec,
            headers: { "content-type": contentType },
          });
          if (how !== "signed") expect(res.status).toBe(401);
          else if (replay) expect([400, 401]).toContain(res.status);
          else expect([200, 400]).toContain(res.status);
          // Every refusal says what was wrong.
          if (res.status >= 400) expect(res.body.trim()).not.toBe("");
        }),
        budget,
      );
      // Still serving: a real click is taken, and the API answers.
      const ok = await bed.interact(
        blockActionPayload({
          user: "U3",
          actionId: slackActions.info,
          approvalId,
          channel: "C0PROD",
          messageTs: "1.000001",
        }),
      );
      expect(ok.status).toBe(200);
      const { approvals } = bed.ts.clients(undefined, "connect");
      expect((await approvals.getApproval({ id: approvalId })).approval?.id).toBe(approvalId);
    },
    timeout,
  );
});
