import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Decision, State } from "../gen/countersign/v1/approval_pb.js";
import { BadRequestSchema, RetryInfoSchema } from "../gen/google/rpc/error_details_pb.js";
import { createTestPki, type TestPki, testIdentities } from "./support/certs.js";
import { type Protocol, startTestServer, type TestServer, testPolicy } from "./support/test-server.js";

const adminToken = "test-admin-token-0123456789";
const protocols: Protocol[] = ["grpc", "connect", "grpc-web"];

let pki: TestPki;
let ts: TestServer;

beforeAll(async () => {
  pki = createTestPki();
  ts = await startTestServer({
    pki,
    flags: { deciders: testIdentities.decider, requesters: `${testIdentities.requester},stranger-requester` },
    env: { ADMIN_TOKEN: adminToken },
    policy: `${testPolicy}  - name: on-call-restart
    match: "service.restart"
    approvers: { users: [U1] }
    on_behalf_of_required: true
`,
  });
});
afterAll(async () => {
  await ts?.close();
});

/** The status code and field paths of a failed call. */
async function failure(call: Promise<unknown>): Promise<{ code: Code; message: string; fields: string[] }> {
  try {
    await call;
  } catch (err) {
    const ce = ConnectError.from(err);
    const fields = ce.findDetails(BadRequestSchema).flatMap((d) => d.fieldViolations.map((v) => v.field));
    return { code: ce.code, message: ce.rawMessage, fields };
  }
  throw new Error("the call succeeded");
}

describe.each(protocols)("ApprovalService over %s", (protocol) => {
  const requester = () => ts.clients(pki.requester, protocol);
  const decider = () => ts.clients(pki.decider, protocol);

  it("creates, streams the snapshot first, then every vote, and ends after the decision", async () => {
    const { approvals } = requester();
    const { approval } = await approvals.createApproval({
      action: "deploy.production.eu",
      title: "Deploy api v42",
      justification: "hotfix",
      params: { service: "api", version: "v42" },
      onBehalfOf: "U9",
      origin: {
        repo: "acme/api",
        branch: "main",
        links: [{ label: "run", url: "https://ci.example/run/1" }],
      },
    });
    expect(approval?.state).toBe(State.PENDING);
    expect(approval?.requester).toBe(testIdentities.requester);
    expect(approval?.policyName).toBe("production-deploy");
    expect(approval?.requiredApprovals).toBe(2);
    expect(approval?.paramsSha256).toMatch(/^[0-9a-f]{64}$/);
    const id = approval?.id ?? "";

    const seen: State[] = [];
    const watching = (async () => {
      for await (const msg of approvals.watchApproval({ id })) {
        if (!msg.heartbeat) seen.push(msg.approval?.state ?? State.UNSPECIFIED);
      }
    })();
    const first = await decider().approvals.submitDecision({
      id,
      approver: "U1",
      decision: Decision.APPROVE,
    });
    expect(first.recorded).toBe(true);
    expect(first.approval?.state).toBe(State.PENDING);
    const second = await decider().approvals.submitDecision({
      id,
      approver: "U2",
      decision: Decision.APPROVE,
      reason: "ship it",
    });
    expect(second.approval?.state).toBe(State.APPROVED);
    expect(second.approval?.decidedBy).toBe("U2");
    expect(second.approval?.reason).toBe("ship it");
    await watching;
    expect(seen[0]).toBe(State.PENDING);
    expect(seen.at(-1)).toBe(State.APPROVED);

    const got = await approvals.getApproval({ id });
    expect(got.approval?.votes.map((v) => v.approver)).toEqual(["U1", "U2"]);
    expect(got.approval?.votes[0]?.submittedBy).toBe(testIdentities.decider);
  });

  it("reports every invalid field with its path (INVALID_ARGUMENT)", async () => {
    const result = await failure(
      requester().approvals.createApproval({
        action: "bad action!",
        title: "",
        origin: { links: [{ label: "x", url: "ftp://nope" }] },
      }),
    );
    expect(result.code).toBe(Code.InvalidArgument);
    expect(result.fields).toEqual(["action", "title", "origin.links[0].url"]);
  });

  it("refuses a request without on_behalf_of under a policy that requires it, naming the policy", async () => {
    const { approvals } = requester();
    const result = await failure(
      approvals.createApproval({ action: "service.restart", title: "Restart api" }),
    );
    expect(result.code).toBe(Code.InvalidArgument);
    expect(result.fields).toEqual(["on_behalf_of"]);
    expect(result.message).toContain('policy "on-call-restart" requires on_behalf_of');
    const blank = await failure(
      approvals.createApproval({ action: "service.restart", title: "Restart api", onBehalfOf: "  " }),
    );
    expect(blank.fields).toEqual(["on_behalf_of"]);

    const { approval } = await approvals.createApproval({
      action: "service.restart",
      title: "Restart api",
      onBehalfOf: "<@U9>",
    });
    expect(approval?.policyName).toBe("on-call-restart");
    expect(approval?.onBehalfOf).toBe("U9");
  });

  it("answers NOT_FOUND, ALREADY_EXISTS, FAILED_PRECONDITION and PERMISSION_DENIED", async () => {
    const { approvals } = requester();
    expect((await failure(approvals.getApproval({ id: "01NOSUCHAPPROVAL" }))).code).toBe(Code.NotFound);

    const key = `key-${protocol}`;
    const a = await approvals.createApproval({ action: "deploy.staging", title: "t", idempotencyKey: key });
    const again = await approvals.createApproval({
      action: "deploy.staging",
      title: "t",
      idempotencyKey: key,
    });
    expect(again.created).toBe(false);
    expect(again.approval?.id).toBe(a.approval?.id);
    const conflict = await failure(
      approvals.createApproval({ action: "deploy.staging", title: "other", idempotencyKey: key }),
    );
    expect(conflict.code).toBe(Code.AlreadyExists);

    const id = a.approval?.id ?? "";
    const self = await failure(
      decider().approvals.submitDecision({
        id,
        approver: testIdentities.requester,
        decision: Decision.APPROVE,
      }),
    );
    expect(self.code).toBe(Code.PermissionDenied);
    const notApprover = await failure(
      decider().approvals.submitDecision({ id, approver: "U7", decision: Decision.APPROVE }),
    );
    expect(notApprover.code).toBe(Code.PermissionDenied);
    const requesterDecides = await failure(
      approvals.submitDecision({ id, approver: "U1", decision: Decision.APPROVE }),
    );
    expect(requesterDecides.code).toBe(Code.PermissionDenied);
    const noReason = await failure(
      decider().approvals.submitDecision({ id, approver: "U1", decision: Decision.DENY }),
    );
    expect(noReason).toMatchObject({ code: Code.InvalidArgument, fields: ["reason"] });

    await decider().approvals.submitDecision({
      id,
      approver: "U1",
      decision: Decision.APPROVE,
      interactionId: "click-1",
    });
    const retried = await decider().approvals.submitDecision({
      id,
      approver: "U1",
      decision: Decision.APPROVE,
      interactionId: "click-1",
    });
    expect(retried.recorded).toBe(false);
    expect(retried.approval?.state).toBe(State.APPROVED);
    const late = await failure(
      decider().approvals.submitDecision({ id, approver: "U2", decision: Decision.DENY, reason: "no" }),
    );
    expect(late.code).toBe(Code.FailedPrecondition);
    expect((await failure(approvals.cancelApproval({ id }))).code).toBe(Code.FailedPrecondition);

    const stranger = ts.clients(pki.stranger, protocol).approvals;
    expect((await failure(stranger.getApproval({ id }))).code).toBe(Code.PermissionDenied);
    expect((await failure(stranger.createApproval({ action: "deploy.staging", title: "t" }))).code).toBe(
      Code.PermissionDenied,
    );
  });

  it("limits re-requests with RESOURCE_EXHAUSTED and a retry delay", async () => {
    const { approvals } = requester();
    let previous =
      (await approvals.createApproval({ action: "deploy.staging", title: "first" })).approval?.id ?? "";
    await decider().approvals.submitDecision({
      id: previous,
      approver: "U1",
      decision: Decision.DENY,
      reason: "not now",
    });
    for (let i = 0; i < 1; i++) {
      const next = await approvals.createApproval({
        action: "deploy.staging",
        title: "again",
        rerequestOf: previous,
      });
      expect(next.approval?.lineageId).toBe(previous);
      previous = next.approval?.id ?? "";
      await decider().approvals.submitDecision({
        id: previous,
        approver: "U1",
        decision: Decision.DENY,
        reason: "no",
      });
    }
    try {
      await approvals.createApproval({ action: "deploy.staging", title: "third", rerequestOf: previous });
      expect.unreachable();
    } catch (err) {
      const ce = ConnectError.from(err);
      expect(ce.code).toBe(Code.ResourceExhausted);
      expect(ce.findDetails(RetryInfoSchema)[0]?.retryDelay?.seconds).toBeGreaterThan(0n);
    }
  });

  it("lets the requester cancel its own approval, and watchers see it", async () => {
    const { approvals } = requester();
    const id =
      (await approvals.createApproval({ action: "db.migrate", title: "migrate" })).approval?.id ?? "";
    const stream = approvals.watchApproval({ id })[Symbol.asyncIterator]();
    expect((await stream.next()).value?.approval?.state).toBe(State.PENDING);
    const early = await failure(
      decider().approvals.submitDecision({ id, approver: "U1", decision: Decision.APPROVE }),
    );
    expect(early.code).toBe(Code.FailedPrecondition);
    await decider().approvals.submitDecision({ id, approver: "UQA", decision: Decision.ACKNOWLEDGE });
    expect((await stream.next()).value?.approval?.stages[0]?.complete).toBe(true);
    const cancelled = await approvals.cancelApproval({ id, reason: "superseded" });
    expect(cancelled.approval?.state).toBe(State.CANCELLED);
    expect((await stream.next()).value?.approval?.state).toBe(State.CANCELLED);
    expect((await stream.next()).done).toBe(true);
  });
});

describe.each(protocols)("AdminService over %s", (protocol) => {
  const admin = (token = adminToken) =>
    ts.clients(pki.requester, protocol, { headers: { authorization: `Bearer ${token}` } }).admin;

  it("refuses calls without the right token with UNAUTHENTICATED", async () => {
    const noToken = ts.clients(pki.requester, protocol).admin;
    expect((await failure(noToken.getStats({}))).code).toBe(Code.Unauthenticated);
    expect((await failure(admin("x").getStats({}))).code).toBe(Code.Unauthenticated);
    expect((await failure(admin(`${adminToken.slice(0, -1)}X`).getStats({}))).code).toBe(
      Code.Unauthenticated,
    );
    expect((await failure(admin(`${adminToken}${adminToken}`).getStats({}))).code).toBe(Code.Unauthenticated);
  });

  it("lists with filters and pages, resolves and cancels with a mandatory reason", async () => {
    const { approvals } = ts.clients(pki.requester, protocol);
    const action = `deploy.production.${protocol.replace("-", "")}`;
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      ids.push((await approvals.createApproval({ action, title: `t${i}` })).approval?.id ?? "");
    }
    const seen: string[] = [];
    let pageToken = "";
    do {
      const page = await admin().listApprovals({ action, pageSize: 2, pageToken });
      seen.push(...page.approvals.map((a) => a.id));
      pageToken = page.nextPageToken;
    } while (pageToken !== "");
    expect(seen).toEqual([...ids].reverse());

    const noReason = await failure(admin().resolveApproval({ id: ids[0] ?? "", decision: Decision.APPROVE }));
    expect(noReason).toMatchObject({ code: Code.InvalidArgument, fields: ["reason"] });
    const resolved = await admin().resolveApproval({
      id: ids[0] ?? "",
      decision: Decision.APPROVE,
      reason: "incident 42",
      admin: "ops-alice",
    });
    expect(resolved.approval).toMatchObject({
      state: State.APPROVED,
      adminOverride: true,
      decidedBy: "ops-alice",
    });
    const cancelled = await admin().cancelApproval({ id: ids[1] ?? "", reason: "stale" });
    expect(cancelled.approval).toMatchObject({ state: State.CANCELLED, adminOverride: true });

    const pending = await admin().listApprovals({ action, state: State.PENDING });
    expect(pending.approvals.map((a) => a.id).sort()).toEqual(ids.slice(2).sort());
    expect((await admin().getApproval({ id: ids[0] ?? "" })).approval?.state).toBe(State.APPROVED);

    const stats = await admin().getStats({});
    expect(stats.counts.find((c) => c.state === State.PENDING)?.count).toBeGreaterThanOrEqual(3n);
    expect(stats.oldestPendingId).not.toBe("");
  });

  it("validates policy text, reports problems with paths, and shows the policies in force", async () => {
    const bad = await admin().validatePolicies({
      content: "version: 1\npolicies:\n  - name: x\n    match: a\n    required_approvals: 0\n",
    });
    expect(bad.valid).toBe(false);
    expect(bad.problems.map((p) => p.path)).toContain("policies[0].required_approvals");
    const current = await admin().getPolicies({});
    expect(current.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(current.document?.version).toBe(1);
    const dry = await admin().reloadPolicies({ dryRun: true });
    expect(dry.applied).toBe(false);
    expect(dry.candidateSha256).toBe(current.sha256);
  });
});

describe("mutual TLS", () => {
  it("refuses a client without a certificate or with one from another CA", async () => {
    for (const protocol of protocols) {
      const none = await failure(ts.clients(undefined, protocol).approvals.getApproval({ id: "x" }));
      expect([Code.Unavailable, Code.Internal, Code.Unknown, Code.Canceled]).toContain(none.code);
      const foreign = await failure(ts.clients(pki.foreign, protocol).approvals.getApproval({ id: "x" }));
      expect([Code.Unavailable, Code.Internal, Code.Unknown, Code.Canceled]).toContain(foreign.code);
    }
  });
});

describe("both transports", () => {
  it("answer every RPC identically (same results, codes, messages and field paths)", async () => {
    async function transcript(protocol: Protocol) {
      const { approvals } = ts.clients(pki.requester, protocol);
      const decider = ts.clients(pki.decider, protocol).approvals;
      const admin = ts.clients(pki.requester, protocol, {
        headers: { authorization: `Bearer ${adminToken}` },
      }).admin;
      const lines: unknown[] = [];
      const record = async (rpc: string, call: Promise<unknown>) => {
        try {
          const res = (await call) as { approval?: { state: State; votes: unknown[]; decidedBy: string } };
          lines.push({
            rpc,
            ok: true,
            state: res.approval?.state,
            votes: res.approval?.votes.length,
            by: res.approval?.decidedBy,
          });
        } catch (err) {
          const ce = ConnectError.from(err);
          const fields = ce
            .findDetails(BadRequestSchema)
            .flatMap((d) => d.fieldViolations.map((v) => v.field));
          lines.push({
            rpc,
            code: ce.code,
            message: ce.rawMessage.replace(/[0-9A-HJKMNP-TV-Z]{26}/g, "<id>"),
            fields,
          });
        }
      };
      const created = await approvals.createApproval({
        action: "deploy.production",
        title: "same",
        params: { n: 1 },
      });
      const id = created.approval?.id ?? "";
      await record(
        "CreateApproval invalid",
        approvals.createApproval({ action: "", title: "x".repeat(201) }),
      );
      await record("GetApproval", approvals.getApproval({ id }));
      await record("GetApproval missing", approvals.getApproval({ id: "01AAAAAAAAAAAAAAAAAAAAAAAA" }));
      await record("SubmitDecision unspecified", decider.submitDecision({ id, approver: "U1" }));
      await record(
        "SubmitDecision stranger",
        decider.submitDecision({ id, approver: "UX", decision: Decision.APPROVE }),
      );
      await record(
        "SubmitDecision 1",
        decider.submitDecision({ id, approver: "U1", decision: Decision.APPROVE }),
      );
      await record(
        "SubmitDecision again",
        decider.submitDecision({ id, approver: "U1", decision: Decision.APPROVE }),
      );
      await record(
        "SubmitDecision 2",
        decider.submitDecision({ id, approver: "U2", decision: Decision.APPROVE }),
      );
      await record("CancelApproval finished", approvals.cancelApproval({ id }));
      await record(
        "Admin ResolveApproval finished",
        admin.resolveApproval({ id, decision: Decision.DENY, reason: "x" }),
      );
      await record("Admin ListApprovals bad token", admin.listApprovals({ pageToken: "garbage" }));
      await record("Admin ListApprovals bad size", admin.listApprovals({ pageSize: 501 }));
      const watched: unknown[] = [];
      for await (const msg of approvals.watchApproval({ id })) watched.push(msg.approval?.state);
      lines.push({ rpc: "WatchApproval", watched });
      await record(
        "WatchApproval missing",
        (async () => {
          for await (const _ of approvals.watchApproval({ id: "01AAAAAAAAAAAAAAAAAAAAAAAA" })) {
            // drain
          }
        })(),
      );
      return lines;
    }
    const grpcTranscript = await transcript("grpc");
    expect(await transcript("connect")).toEqual(grpcTranscript);
    expect(await transcript("grpc-web")).toEqual(grpcTranscript);
    expect(grpcTranscript).toContainEqual({
      rpc: "CreateApproval invalid",
      code: Code.InvalidArgument,
      message: "action: is required; title: is 201 characters; the limit is 200",
      fields: ["action", "title"],
    });
  });
});

describe("ReloadPolicies", () => {
  it("keeps the policies in force when the file turns invalid, reporting every problem with its path", async () => {
    const { readFile, writeFile } = await import("node:fs/promises");
    const good = await readFile(ts.policyPath, "utf8");
    const admin = (protocol: Protocol) =>
      ts.clients(pki.requester, protocol, { headers: { authorization: `Bearer ${adminToken}` } }).admin;
    const before = await admin("grpc").getPolicies({});
    await writeFile(
      ts.policyPath,
      `${good}\n  - name: broken\n    match: "x.*"\n    required_approvals: 0\n`,
    );
    try {
      for (const protocol of protocols) {
        for (const dryRun of [true, false]) {
          try {
            await admin(protocol).reloadPolicies({ dryRun });
            expect.unreachable();
          } catch (err) {
            const ce = ConnectError.from(err);
            expect(ce.code).toBe(Code.FailedPrecondition);
            const fields = ce
              .findDetails(BadRequestSchema)
              .flatMap((d) => d.fieldViolations.map((v) => v.field));
            expect(fields).toContain("policies[4].required_approvals");
          }
        }
      }
      expect((await admin("connect").getPolicies({})).sha256).toBe(before.sha256);
      const created = await ts
        .clients(pki.requester, "grpc")
        .approvals.createApproval({ action: "db.migrate", title: "t" });
      expect(created.approval?.policySha256).toBe(before.sha256);
    } finally {
      await writeFile(ts.policyPath, good);
    }
    const reloaded = await admin("grpc").reloadPolicies({ dryRun: false });
    expect(reloaded.sha256).toBe(before.sha256);
  });
});
