import type { FieldViolation } from "../domain/errors.js";
import type { Approval, ParamsEdit, Vote } from "../domain/types.js";

/**
 * What happened to approvals, as the application layer reports it after the store accepted a change
 * (or refused a request). Audit, metrics and tracing subscribe to these; nothing here is transport- or
 * storage-specific.
 */
export type ApprovalEvent =
  /** A new approval was stored (also an approval denied at once because no policy matches). */
  | { type: "created"; approval: Approval; actor: string }
  /** A vote (approve, deny or co-sign acknowledgement) was recorded. */
  | { type: "vote"; approval: Approval; vote: Vote }
  /** An approver's edit of params was applied. */
  | { type: "edit_applied"; approval: Approval; edit: ParamsEdit }
  /** An approver's edit was rejected by override governance; nothing changed. */
  | { type: "edit_rejected"; approval: Approval; actor: string; violations: FieldViolation[] }
  /** A vote or cancel was refused (not an approver, self-approval, wrong stage, already decided). */
  | {
      type: "refused";
      approval: Approval;
      actor: string;
      operation: "vote" | "cancel";
      reason: "permission_denied" | "failed_precondition";
      message: string;
      /** The error the caller receives; lets the transport tell this refusal from others it sees. */
      error: Error;
    }
  /**
   * The approval reached its terminal state (approved, denied, expired or cancelled; `approval.state`
   * says which, `approval.adminOverride` whether an admin did it). `previous` is the pending version.
   */
  | { type: "terminal"; approval: Approval; previous: Approval; actor: string };

/** Receives approval events; must not throw (errors are the listener's own to handle). */
export type ApprovalEventListener = (event: ApprovalEvent) => void;
