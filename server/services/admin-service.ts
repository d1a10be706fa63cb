import type { JsonObject as ProtoJsonObject } from "@bufbuild/protobuf";
import { create } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import {
  type AdminService,
  ReplicaPoliciesSchema,
  StateCountSchema,
} from "../../gen/countersign/v1/admin_service_pb.js";
import { Decision } from "../../gen/countersign/v1/approval_pb.js";
import type { Clock } from "../domain/clock.js";
import { FailedPreconditionError, ValidationError } from "../domain/errors.js";
import { limits } from "../domain/limits.js";
import type { AdminCaller, ApprovalState } from "../domain/types.js";
import { checkAction, checkId, Violations } from "../domain/validation.js";
import { PolicyLoadError, parsePolicyDocument } from "../policy/policy-loader.js";
import type { PolicyAgreement } from "../policy/policy-sync.js";
import type { ApprovalStore } from "../store/approval-store.js";
import type { ApprovalOperations } from "./approval-operations.js";
import { adminKey, callerKey } from "./caller.js";
import { approvalToMessage, optionalMs, stateFromMessage, stateToMessage } from "./convert.js";
import { handle } from "./errors.js";

/** The policy holder as the admin service uses it. */
export interface AdminPolicies {
  current():
    | {
        sha256: string;
        document: ProtoJsonObject | Record<string, unknown>;
        source: string;
        loadTime: number;
      }
    | undefined;
  reload(options: { dryRun: boolean }): Promise<{
    applied: boolean;
    candidateSha256: string;
    policyCount: number;
    current: { sha256: string };
  }>;
}

/** Options of `createAdminService`. */
export interface AdminServiceOptions {
  operations: ApprovalOperations;
  store: ApprovalStore;
  /** The policies; with a shared store, the sync's `reload`, which publishes to every replica. */
  policies: AdminPolicies;
  /** With a shared store: every replica's policy set (policy-sync.ts). */
  agreement?: { status(): Promise<PolicyAgreement> };
  clock: Clock;
}

const defaultPageSize = 50;
const maxPageSize = 500;
const states: ApprovalState[] = ["pending", "approved", "denied", "expired", "cancelled"];

/**
 * The admin of a call: the name it asserts (`admin` of the request, else the token holder), with the
 * certificate identity and token holder the transport verified.
 */
function admin(ctx: HandlerContext, requested: string): AdminCaller {
  const tokenHolder = ctx.values.get(adminKey) ?? "admin";
  return {
    name: requested !== "" ? requested : tokenHolder,
    certificate: ctx.values.get(callerKey)?.identity ?? "",
    tokenHolder,
  };
}

/**
 * `countersign.v1.AdminService`. The admin token is checked by the transport's admin interceptor before
 * any of these run; every decision here is recorded as an admin override.
 */
export function createAdminService(options: AdminServiceOptions): ServiceImpl<typeof AdminService> {
  const { operations, store, policies, agreement, clock } = options;

  return {
    listApprovals: (req) =>
      handle(async () => {
        const v = new Violations();
        if (req.action !== "") checkAction(v, "action", req.action);
        v.text("requester", req.requester, limits.identityLength);
        if (req.pageSize < 0 || req.pageSize > maxPageSize)
          v.add("page_size", `must be between 0 and ${maxPageSize}`);
        v.throwIfAny();
        const state = stateFromMessage(req.state, "state");
        const createdAfter = optionalMs(req.createTimeAfter);
        const createdBefore = optionalMs(req.createTimeBefore);
        const page = await operations.list({
          pageSize: req.pageSize === 0 ? defaultPageSize : req.pageSize,
          ...(state === undefined ? {} : { state }),
          ...(req.action === "" ? {} : { action: req.action }),
          ...(req.requester === "" ? {} : { requester: req.requester }),
          ...(createdAfter === undefined ? {} : { createdAfter }),
          ...(createdBefore === undefined ? {} : { createdBefore }),
          ...(req.pageToken === "" ? {} : { pageToken: req.pageToken }),
        });
        return { approvals: page.approvals.map(approvalToMessage), nextPageToken: page.nextPageToken };
      }),

    getApproval: (req) =>
      handle(async () => {
        const v = new Violations();
        checkId(v, "id", req.id);
        v.throwIfAny();
        return { approval: approvalToMessage(await operations.get(req.id)) };
      }),

    resolveApproval: (req, ctx) =>
      handle(async () => {
        const v = new Violations();
        checkId(v, "id", req.id);
        v.text("reason", req.reason, limits.reasonLength, true);
        v.text("admin", req.admin, limits.identityLength);
        if (req.decision !== Decision.APPROVE && req.decision !== Decision.DENY)
          v.add("decision", "must be DECISION_APPROVE or DECISION_DENY");
        v.throwIfAny();
        const decision = req.decision === Decision.APPROVE ? "approve" : "deny";
        const t = await operations.resolve(req.id, admin(ctx, req.admin), decision, req.reason);
        return { approval: approvalToMessage(t.approval) };
      }),

    cancelApproval: (req, ctx) =>
      handle(async () => {
        const v = new Violations();
        checkId(v, "id", req.id);
        v.text("reason", req.reason, limits.reasonLength, true);
        v.text("admin", req.admin, limits.identityLength);
        v.throwIfAny();
        const t = await operations.adminCancel(req.id, admin(ctx, req.admin), req.reason);
        return { approval: approvalToMessage(t.approval) };
      }),

    reloadPolicies: (req) =>
      handle(async () => {
        const result = await policies.reload({ dryRun: req.dryRun }).catch((err: unknown) => {
          if (!(err instanceof PolicyLoadError)) throw err;
          throw new FailedPreconditionError(
            `the policy file is invalid; the current policies stay in force:\n${err.message}`,
            err.problems.map((p) => ({ field: p.path, description: p.message })),
          );
        });
        return {
          applied: result.applied,
          sha256: result.current.sha256,
          candidateSha256: result.candidateSha256,
          policyCount: result.policyCount,
        };
      }),

    validatePolicies: (req) =>
      handle(async () => {
        if (req.content.length > 1024 * 1024) throw ValidationError.of("content", "is larger than 1 MiB");
        const result = parsePolicyDocument(req.content);
        if (!result.ok) return { valid: false, problems: result.problems };
        return { valid: true, sha256: result.sha256, policyCount: result.policySet.policies.length };
      }),

    getPolicies: () =>
      handle(async () => {
        const loaded = policies.current();
        if (loaded === undefined) return {};
        // Without Redis the local set is still worth answering with: the comparison says why it is missing.
        const status = await agreement?.status().catch((err: unknown) => ({
          generation: 0,
          replicas: [],
          disagreement: undefined,
          unknown: `cannot compare with the other replicas: ${(err as Error).message}`,
        }));
        return {
          sha256: loaded.sha256,
          document: loaded.document as ProtoJsonObject,
          source: loaded.source,
          loadTime: timestampFromMs(loaded.loadTime),
          ...(status === undefined
            ? {}
            : {
                generation: BigInt(status.generation),
                replicas: status.replicas.map((r) =>
                  create(ReplicaPoliciesSchema, {
                    replica: r.replica,
                    sha256: r.sha256,
                    generation: BigInt(r.generation),
                    reportTime: timestampFromMs(r.reportTime),
                    stale: r.stale,
                    error: r.error ?? "",
                  }),
                ),
                replicasDisagree: status.disagreement !== undefined,
                disagreement: status.disagreement ?? ("unknown" in status ? status.unknown : ""),
              }),
        };
      }),

    getStats: () =>
      handle(async () => {
        const stats = await store.stats();
        const oldest = stats.oldestPending;
        return {
          counts: states.map((s) =>
            create(StateCountSchema, { state: stateToMessage(s), count: BigInt(stats.counts[s]) }),
          ),
          ...(oldest === undefined
            ? {}
            : {
                oldestPendingAge: durationFromMs(Math.max(0, clock.now() - oldest.createTime)),
                oldestPendingId: oldest.id,
              }),
        };
      }),
  };
}
