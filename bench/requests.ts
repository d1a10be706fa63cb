/**
 * The requests the benchmark sends, and the policy file that governs them: what a CI pipeline asking to
 * deploy would send (title, justification, a handful of params, an idempotency key).
 */
import { create, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { Decision } from "../gen/countersign/v1/approval_pb.js";
import {
  type CreateApprovalRequestSchema,
  CreateApprovalRequestSchema as CreateRequestSchema,
  type SubmitDecisionRequestSchema,
} from "../gen/countersign/v1/approval_service_pb.js";

/** Actions of the benchmark, each governed by its own policy in `benchPolicy`. */
export const benchActions = {
  /** One approval decides. */
  single: "bench.deploy.single",
  /** Two approvals (a quorum) decide. */
  quorum: "bench.deploy.quorum",
} as const;

/** Approvers named in `benchPolicy`. */
export const benchApprovers = ["bench-alice", "bench-bob", "bench-carol"] as const;

/** The policy file the benchmarked server loads. */
export const benchPolicy = `
version: 1
defaults:
  channel: C0BENCH
  timeout: 1h
  unknown_action: deny
  super_approvers: [UADMIN]
policies:
  - name: bench-single
    match: "${benchActions.single}"
    approvers: { users: [${benchApprovers.join(", ")}] }
    required_approvals: 1
  - name: bench-quorum
    match: "${benchActions.quorum}"
    approvers: { users: [${benchApprovers.join(", ")}] }
    required_approvals: 2
`;

/**
 * A CreateApprovalRequest as a deploy pipeline sends it; `key` makes its idempotency key (and a param)
 * unique, so every request creates a new approval.
 */
export function createRequest(
  action: string,
  key: string,
): MessageInitShape<typeof CreateApprovalRequestSchema> {
  return {
    action,
    title: "Deploy api v42 to production",
    justification: "Release 42: payment retries and the new audit export (benchmark)",
    params: {
      service: "api",
      version: "v42",
      environment: "production",
      sha: "3f9a2c71d0e84b5a9c6e2f1b7d4a8e0c5b3f9a2c",
      replicas: 6,
      run: key,
    },
    idempotencyKey: `bench-${key}`,
  };
}

/** Bytes of a serialized `createRequest`: the echo payload, so echo carries as much as create. */
export function createRequestBytes(): number {
  return toBinary(CreateRequestSchema, create(CreateRequestSchema, createRequest(benchActions.single, "0")))
    .length;
}

/** An approving vote on approval `id` by `approver`, with a unique interaction id. */
export function approveRequest(
  id: string,
  approver: string,
  interactionId: string,
): MessageInitShape<typeof SubmitDecisionRequestSchema> {
  return {
    id,
    approver,
    decision: Decision.APPROVE,
    reason: "looks good",
    interactionId,
  };
}
