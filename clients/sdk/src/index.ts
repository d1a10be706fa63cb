/**
 * The Countersign SDK: ask humans for approval before doing something risky, and get the decision
 * pushed back over a streaming RPC.
 *
 * ```ts
 * import { readFileSync } from "node:fs";
 * import { ApprovalDeniedError, createCountersignClient } from "@countersign/sdk";
 *
 * const countersign = createCountersignClient({
 *   baseUrl: "https://countersign.internal:8443",
 *   tls: {
 *     ca: readFileSync("ca.pem"),
 *     cert: readFileSync("client.pem"),
 *     key: readFileSync("client-key.pem"),
 *   },
 * });
 *
 * // One call: resolves only when approved; every other outcome and every error rejects.
 * try {
 *   const approval = await countersign.requireApproval(
 *     { action: "deploy.production", title: "Deploy api v42", params: { service: "api", version: "v42" } },
 *     { onRequested: (handle) => console.log(`waiting for approval ${handle.id}`) },
 *   );
 *   console.log(`approved by ${approval.decidedBy}; running exactly`, approval.params);
 * } catch (err) {
 *   if (err instanceof ApprovalDeniedError) console.error(`denied by ${err.approver}: ${err.reason}`);
 *   throw err;
 * }
 *
 * // Or in two steps, with the outcome to inspect.
 * const handle = await countersign.requestApproval({ action: "db.migrate", title: "Add index" });
 * const final = await handle.waitForDecision({ signal: AbortSignal.timeout(30 * 60_000) });
 * ```
 *
 * @module
 */

export { Code } from "@connectrpc/connect";
export {
  type ApprovalHandle,
  type CallOptions,
  type CancelOptions,
  isFinalState,
  type ReconnectEvent,
  type WaitOptions,
  type WatchOptions,
} from "./approval-handle.js";
export type { ReconnectOptions } from "./backoff.js";
export {
  type ApprovalRequest,
  type CountersignClient,
  type CountersignClientOptions,
  createCountersignClient,
  type RequestedApproval,
  type RequestOptions,
  type RequireApprovalOptions,
} from "./client.js";
export {
  AbortedError,
  AlreadyExistsError,
  ApprovalCancelledError,
  ApprovalDeniedError,
  ApprovalExpiredError,
  ApprovalNotApprovedError,
  CountersignError,
  DeadlineExceededError,
  type ErrorContext,
  FailedPreconditionError,
  type FieldViolation,
  InvalidArgumentError,
  NotFoundError,
  notApprovedError,
  PermissionDeniedError,
  ResourceExhaustedError,
  RpcError,
  TlsError,
  toCountersignError,
  UnauthenticatedError,
  UnavailableError,
} from "./errors.js";
export {
  AdminService,
  type AdminServiceCancelApprovalRequest,
  type AdminServiceCancelApprovalResponse,
  type AdminServiceGetApprovalRequest,
  type AdminServiceGetApprovalResponse,
  type GetPoliciesRequest,
  type GetPoliciesResponse,
  type GetStatsRequest,
  type GetStatsResponse,
  GetStatsResponseSchema,
  type ListApprovalsRequest,
  type ListApprovalsResponse,
  ListApprovalsResponseSchema,
  type PolicyProblem,
  type ReloadPoliciesRequest,
  type ReloadPoliciesResponse,
  ReloadPoliciesResponseSchema,
  type ResolveApprovalRequest,
  type ResolveApprovalResponse,
  type StateCount,
  type ValidatePoliciesRequest,
  type ValidatePoliciesResponse,
} from "./gen/countersign/v1/admin_service_pb.js";
export {
  type Approval,
  ApprovalSchema,
  Decision,
  type Link,
  type Origin,
  type ParamChange,
  type ParamsEdit,
  type PolicyOverrides,
  type StageProgress,
  State,
  type Vote,
} from "./gen/countersign/v1/approval_pb.js";
export {
  ApprovalService,
  type CancelApprovalRequest,
  type CancelApprovalResponse,
  type CreateApprovalRequest,
  CreateApprovalRequestSchema,
  type CreateApprovalResponse,
  type GetApprovalRequest,
  type GetApprovalResponse,
  type SubmitDecisionRequest,
  type SubmitDecisionResponse,
  type WatchApprovalRequest,
  type WatchApprovalResponse,
} from "./gen/countersign/v1/approval_service_pb.js";
export { BadRequestSchema, RetryInfoSchema } from "./gen/google/rpc/error_details_pb.js";
export type { Protocol, TlsOptions } from "./transport.js";
