import { create } from "@bufbuild/protobuf";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import {
  type ApprovalService,
  type WatchApprovalResponse,
  WatchApprovalResponseSchema,
} from "../../gen/countersign/v1/approval_service_pb.js";
import { PermissionDeniedError, UnauthenticatedError } from "../domain/errors.js";
import { rerequestInput, rerequestKeyPrefix, type VoteInput, validateVote } from "../domain/lifecycle.js";
import { limits } from "../domain/limits.js";
import type { Approval, JsonObject } from "../domain/types.js";
import { checkId, normalizePerson, Violations } from "../domain/validation.js";
import type { ApprovalOperations } from "./approval-operations.js";
import { type Caller, callerKey, type Role } from "./caller.js";
import { approvalToMessage, createInputFromMessage, decisionFromMessage, rulesToMessage } from "./convert.js";
import { handle, toConnectError } from "./errors.js";

/** Options of `createApprovalService`. */
export interface ApprovalServiceOptions {
  operations: ApprovalOperations;
  /** Interval of keep-alive messages on idle watch streams. @default 15000 */
  heartbeatMs?: number;
}

/** Most approval ids a WatchApprovals request may name. */
const maxWatchIds = 1000;

/**
 * The WatchApproval message of each stored snapshot, made once and sent to every watcher of it (with
 * the gRPC transport, also serialized once: see `grpc-server.ts`).
 */
const watchMessages = new WeakMap<Approval, WatchApprovalResponse>();

function watchMessage(approval: Approval): WatchApprovalResponse {
  let message = watchMessages.get(approval);
  if (message === undefined) {
    message = create(WatchApprovalResponseSchema, {
      approval: approvalToMessage(approval),
      heartbeat: false,
    });
    watchMessages.set(approval, message);
  }
  return message;
}

/** The caller of a call, with the role it needs. */
function caller(ctx: HandlerContext, role: Role): Caller {
  const c = ctx.values.get(callerKey);
  if (c === undefined) throw new UnauthenticatedError("a client certificate is required");
  if (!c.roles.has(role))
    throw new PermissionDeniedError(`identity "${c.identity}" does not have the ${role} role`);
  return c;
}

/** Requesters see their own approvals; deciders see every approval. */
function checkReader(c: Caller, a: Approval): void {
  if (c.roles.has("decider") || a.requester === c.identity) return;
  throw new PermissionDeniedError(`approval ${a.id} was requested by another client`);
}

/** Either role may read; the check of the approval's owner follows. */
function reader(ctx: HandlerContext): Caller {
  const c = ctx.values.get(callerKey);
  if (c === undefined) throw new UnauthenticatedError("a client certificate is required");
  if (c.roles.size === 0) throw new PermissionDeniedError(`identity "${c.identity}" has no role`);
  return c;
}

function checkedId(id: string): string {
  const v = new Violations();
  checkId(v, "id", id);
  v.throwIfAny();
  return id;
}

/**
 * `countersign.v1.ApprovalService`: translates between protobuf messages and the approval operations,
 * and checks roles and ownership. Transport-agnostic: the gRPC and Connect servers both host it.
 */
export function createApprovalService(options: ApprovalServiceOptions): ServiceImpl<typeof ApprovalService> {
  const { operations } = options;
  const heartbeatMs = options.heartbeatMs ?? 15_000;

  return {
    createApproval: (req, ctx) =>
      handle(async () => {
        const c = caller(ctx, "requester");
        const input = createInputFromMessage(req);
        const v = new Violations();
        const onBehalfOf = normalizePerson(v, "on_behalf_of", input.onBehalfOf);
        v.throwIfAny();
        const result = await operations.create({ ...input, onBehalfOf }, c.identity);
        return { approval: approvalToMessage(result.approval), created: result.created };
      }),

    getApproval: (req, ctx) =>
      handle(async () => {
        const c = reader(ctx);
        const approval = await operations.get(checkedId(req.id));
        checkReader(c, approval);
        return { approval: approvalToMessage(approval) };
      }),

    async *watchApproval(req, ctx) {
      try {
        const c = reader(ctx);
        const events = operations.watch(checkedId(req.id), {
          signal: ctx.signal,
          heartbeatMs,
          authorize: (a) => checkReader(c, a),
        });
        for await (const event of events) {
          yield event.heartbeat
            ? { approval: approvalToMessage(event.approval), heartbeat: true }
            : watchMessage(event.approval);
        }
      } catch (err) {
        throw toConnectError(err);
      }
    },

    cancelApproval: (req, ctx) =>
      handle(async () => {
        const c = caller(ctx, "requester");
        const v = new Violations();
        checkId(v, "id", req.id);
        v.text("reason", req.reason, limits.reasonLength);
        v.throwIfAny();
        checkReader({ ...c, roles: new Set() }, await operations.get(req.id));
        const t = await operations.cancel(req.id, c.identity, req.reason);
        return { approval: approvalToMessage(t.approval) };
      }),

    submitDecision: (req, ctx) =>
      handle(async () => {
        const c = caller(ctx, "decider");
        const vote: VoteInput = {
          approver: req.approver,
          approverGroups: req.approverGroups,
          ...(req.approverAliases.length === 0 ? {} : { approverAliases: req.approverAliases }),
          decision: decisionFromMessage(req.decision, "decision"),
          reason: req.reason,
          interactionId: req.interactionId,
          submittedBy: c.identity,
          ...(req.editedParams === undefined ? {} : { editedParams: req.editedParams as JsonObject }),
        };
        validateVote(req.id, vote);
        const t = await operations.vote(req.id, vote);
        return { approval: approvalToMessage(t.approval), recorded: t.changed };
      }),
    async *watchApprovals(req, ctx) {
      try {
        caller(ctx, "decider");
        const v = new Violations();
        if (req.ids.length > maxWatchIds)
          v.add("ids", `has ${req.ids.length} ids; the limit is ${maxWatchIds}`);
        else
          req.ids.forEach((id, i) => {
            checkId(v, `ids[${i}]`, id);
          });
        v.throwIfAny();
        for await (const event of operations.watchAll({ signal: ctx.signal, heartbeatMs, ids: req.ids })) {
          switch (event.type) {
            case "approval":
              yield {
                approval: approvalToMessage(event.approval),
                rules: rulesToMessage(event.approval.rules),
              };
              break;
            case "snapshot_complete":
              yield { snapshotComplete: true };
              break;
            case "heartbeat":
              yield { heartbeat: true };
              break;
          }
        }
      } catch (err) {
        throw toConnectError(err);
      }
    },
    rerequestApproval: (req, ctx) =>
      handle(async () => {
        caller(ctx, "decider");
        const v = new Violations();
        checkId(v, "id", req.id);
        v.text("requested_by", req.requestedBy, limits.identityLength, true);
        v.text("interaction_id", req.interactionId, limits.idempotencyKeyLength - rerequestKeyPrefix.length);
        v.throwIfAny();
        const previous = await operations.get(req.id);
        const input = rerequestInput(previous, req.requestedBy, req.interactionId);
        const result = await operations.create(input, previous.requester);
        return { approval: approvalToMessage(result.approval), created: result.created };
      }),
  };
}
