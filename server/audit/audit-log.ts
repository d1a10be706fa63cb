import { hostname } from "node:os";
import { monotonicFactory } from "ulid";
import { type Clock, systemClock } from "../domain/clock.js";
import { isParamVisible } from "../domain/redaction.js";
import type { Approval, JsonObject } from "../domain/types.js";
import type { PolicyReloadEvent } from "../policy/policy-holder.js";
import type { ApprovalEvent, ApprovalEventListener } from "../services/approval-events.js";
import type { SecurityEventType, SecuritySummary } from "../telemetry/security-events.js";
import type { AuditCheckpointStore } from "./audit-checkpoints.js";
import {
  type AuditCheckpoint,
  type AuditEventType,
  type AuditKey,
  type AuditOutcome,
  genesisHash,
  sealCheckpoint,
  sealLine,
} from "./audit-record.js";
import { createAuditSink } from "./audit-sink.js";

/** Options of `createAuditLog`. */
export interface AuditLogOptions {
  /**
   * Where the lines go: `"stdout"` (or `"-"`), or a file path (appended to; its directory is created).
   * @default "stdout"
   */
  destination?: string;
  /** Source of each line's `time`. @default systemClock */
  clock?: Clock;
  /** This process's chain id. @default a new ULID */
  chainId?: string;
  /**
   * Seals every line and checkpoint with HMAC-SHA-256 under this key. Without one the chain is plain
   * SHA-256: it shows accidents, not a writer who recomputes it.
   */
  key?: AuditKey;
  /** Receives write errors (e.g. a full disk) and listener failures; the service keeps running. */
  onError?: (err: Error) => void;
  /** A write failed (e.g. a full disk): the lines stay queued and are retried. @default onError */
  onWriteError?: (err: Error) => void;
  /** Writes succeed again after a failure. */
  onRecovered?: () => void;
  /** The file was reopened (rotated away, deleted, or `reopen()`). */
  onReopened?: (reason: string) => void;
  /** A line was dropped because the backlog of unwritten lines was full. */
  onDropped?: () => void;
  /** Where checkpoints are kept besides `onCheckpoint` (e.g. Redis). */
  checkpointStore?: AuditCheckpointStore;
  /** Receives every checkpoint taken (to log it). */
  onCheckpoint?: (checkpoint: AuditCheckpoint) => void;
  /** How often a checkpoint of the written head is taken (when lines were written since). @default 10000 */
  checkpointIntervalMs?: number;
  /** Wait after a failed write before the next attempt. @default 1000 */
  retryMs?: number;
  /**
   * Unwritten lines kept while writes fail; beyond, new events are dropped (not sealed, so the chain
   * stays whole) and counted. @default 100000
   */
  maxBacklog?: number;
}

/**
 * Whether audit lines can be written now: the gate of every state change (no decision without its audit
 * line), readiness and the `countersign_audit_healthy` gauge read it.
 */
export interface AuditHealth {
  /** Why audit lines cannot be written now (e.g. `ENOSPC: no space left on device, write`), or undefined. */
  unavailableReason(): string | undefined;
}

/** A Slack post the gateway gave up on (see the gateway's `post_failed` event). */
export interface NotificationFailure {
  approvalId: string;
  /** Which message: `request:<channel>`, `reminder:<n>:<channel>`, `escalation:<channel>`… */
  key: string;
  /** The Slack Web API method that was refused. */
  method: string;
  /** Slack's error code, e.g. `channel_not_found`. */
  error: string;
}

/** An unauthorized attempt seen by the transport (no certificate, wrong role, another client's approval). */
export interface UnauthorizedAttempt {
  /** The identity of the client, or "" without a certificate. */
  caller: string;
  /** `service/method` of the call. */
  rpc: string;
  /** The approval the call named, if any. */
  approvalId?: string;
  /** The person the call acted for (e.g. the approver of a decision), when it names one. */
  actor?: string;
  /** Why it was refused, as the caller was told. */
  message: string;
}

/** The audit log of this process: one hash-chained JSON line per event. */
export interface AuditLog extends AuditHealth {
  /** This process's chain id. */
  readonly chain: string;
  /** True when lines are sealed with a key. */
  readonly keyed: boolean;
  /** Number of lines written so far (the seq of the last line). */
  readonly seq: number;
  /** Receives approval events from the application layer. */
  readonly listener: ApprovalEventListener;
  /** Records a policy load or reload (applied, unchanged or rejected). */
  policyReloaded(event: PolicyReloadEvent): void;
  /** Records an unauthorized attempt the application layer did not see. */
  unauthorized(attempt: UnauthorizedAttempt): void;
  /** Records a security event other than `unauthorized` (bad admin token, rate limited, Slack checks). */
  security(event: Exclude<SecurityEventType, "unauthorized">, details: JsonObject): void;
  /** Records how many security events of one type and peer were counted but not written one by one. */
  securitySummary(summary: SecuritySummary): void;
  /** Records a Slack post or update that Slack refused for good: its approvers may not have been notified. */
  notificationFailed(failure: NotificationFailure): void;
  /** Records a reminder sent to an approval's approvers. */
  reminded(approval: Approval, details?: JsonObject): void;
  /** Records the escalation of an approval. */
  escalated(approval: Approval, details?: JsonObject): void;
  /** Resolves once the destination is open; rejects when it cannot be opened. */
  ready(): Promise<void>;
  /** Reopens the file before the next write (SIGHUP after log rotation). */
  reopen(): void;
  /** Takes a checkpoint of the head written so far (undefined when nothing new was written). */
  checkpoint(): Promise<AuditCheckpoint | undefined>;
  /** Writes `audit_stopped`, flushes everything and closes the destination (never stdout itself). */
  close(): Promise<void>;
}

/** The fields every approval event carries. */
function approvalFields(approval: Approval, actor: string): JsonObject {
  return {
    approval_id: approval.id,
    action: approval.action,
    actor,
    policy: approval.policyName,
    policy_sha256: approval.policySha256,
    params_sha256: approval.paramsSha256,
  };
}

/** The audit line type and outcome of a terminal transition. */
function terminalType(approval: Approval): { type: AuditEventType; outcome: AuditOutcome } {
  switch (approval.state) {
    case "approved":
    case "denied":
      return { type: approval.adminOverride ? "admin_resolved" : "decided", outcome: approval.state };
    case "cancelled":
      return { type: approval.adminOverride ? "admin_cancelled" : "cancelled", outcome: "cancelled" };
    case "expired":
      return { type: "expired", outcome: "expired" };
    case "pending":
      throw new Error(`approval ${approval.id} is not terminal`);
  }
}

/** The audit fields of one approval event. */
function approvalEventLine(event: ApprovalEvent): { type: AuditEventType; fields: JsonObject } {
  const a = event.approval;
  switch (event.type) {
    case "created":
      return {
        type: "created",
        fields: {
          ...approvalFields(a, event.actor),
          on_behalf_of: a.onBehalfOf,
          expire_time: new Date(a.expireTime).toISOString(),
          ...(a.rerequestOf === "" ? {} : { rerequest_of: a.rerequestOf }),
        },
      };
    case "vote":
      return {
        type: "vote",
        fields: {
          ...approvalFields(a, event.vote.approver),
          decision: event.vote.decision,
          reason: event.vote.reason,
          ...(event.vote.stage === "" ? {} : { stage: event.vote.stage }),
          submitted_by: event.vote.submittedBy,
          ...(event.vote.interactionId === "" ? {} : { interaction_id: event.vote.interactionId }),
        },
      };
    case "edit_applied":
      return {
        type: "edit_applied",
        fields: {
          ...approvalFields(a, event.edit.editor),
          params_sha256_before: event.edit.paramsSha256Before,
          // Values only of params approvers may see; the others are named, never shown.
          changes: event.edit.changes.map((c): JsonObject => {
            if (!isParamVisible(c.key, a.rules.redaction)) return { key: c.key, redacted: true };
            return {
              key: c.key,
              ...(c.before === undefined ? {} : { before: c.before }),
              ...(c.after === undefined ? {} : { after: c.after }),
            };
          }),
        },
      };
    case "edit_rejected":
      return {
        type: "edit_rejected",
        fields: {
          ...approvalFields(a, event.actor),
          violations: event.violations.map((v) => ({ field: v.field, description: v.description })),
        },
      };
    case "refused":
      return {
        type: event.reason === "permission_denied" ? "unauthorized" : "refused",
        fields: { ...approvalFields(a, event.actor), operation: event.operation, message: event.message },
      };
    case "terminal": {
      const { type, outcome } = terminalType(a);
      return {
        type,
        fields: {
          ...approvalFields(a, event.actor),
          outcome,
          decided_by: a.decidedBy,
          reason: a.reason,
          ...(a.adminOverride ? { admin_override: true } : {}),
          approvals: a.votes.filter((v) => v.decision === "approve").map((v) => v.approver),
          denials: a.votes.filter((v) => v.decision === "deny").map((v) => v.approver),
          latency_ms: Math.max(0, a.decideTime - a.createTime),
        },
      };
    }
  }
}

/**
 * Creates the audit log: every event becomes one JSON line, hash-chained per process (see
 * `audit-record.ts`) and sealed with the audit key, queued to the sink (see `audit-sink.ts`) so that
 * create and decide never wait for the disk. A line is serialised once, canonically, because its hash is
 * over those bytes. Params are never written (only their hash); edited values only for params the
 * policy shows. Every `checkpointIntervalMs` the head written so far is sealed into a checkpoint kept
 * outside the file.
 */
export function createAuditLog(options: AuditLogOptions = {}): AuditLog {
  const clock = options.clock ?? systemClock;
  const chain = options.chainId ?? monotonicFactory()();
  const target = options.destination ?? "stdout";
  const toStdout = target === "stdout" || target === "-";
  const key = options.key;
  const onError = options.onError ?? (() => undefined);
  const maxBacklog = options.maxBacklog ?? 100_000;
  const sink = createAuditSink({
    ...(toStdout ? {} : { path: target }),
    retryMs: options.retryMs ?? 1000,
    onWriteError: options.onWriteError ?? onError,
    ...(options.onRecovered === undefined ? {} : { onRecovered: options.onRecovered }),
    ...(options.onReopened === undefined ? {} : { onReopened: options.onReopened }),
  });
  const opened = sink.open();
  opened.catch(() => undefined);

  let seq = 0;
  let prevHash = genesisHash;
  let closed = false;
  let checkpointed = 0;

  function write(type: AuditEventType, fields: JsonObject): void {
    if (closed) return;
    if (sink.backlog() >= maxBacklog && sink.failure() !== undefined) {
      // Not sealed, so the chain stays whole; the loss is counted.
      options.onDropped?.();
      return;
    }
    seq += 1;
    const { line, hash } = sealLine(
      {
        type,
        time: new Date(clock.now()).toISOString(),
        ...fields,
        chain,
        seq,
        prev_hash: prevHash,
        ...(key === undefined ? {} : { key_id: key.id }),
      },
      key,
    );
    prevHash = hash;
    sink.append(`${line}\n`, { seq, hash });
  }

  async function checkpoint(): Promise<AuditCheckpoint | undefined> {
    const head = sink.written();
    if (head === undefined || head.seq <= checkpointed) return undefined;
    checkpointed = head.seq;
    const sealed = sealCheckpoint({ chain, ...head, time: new Date(clock.now()).toISOString() }, key);
    options.onCheckpoint?.(sealed);
    await options.checkpointStore?.save(sealed).catch((err: unknown) => {
      onError(new Error(`audit checkpoint not stored: ${(err as Error).message}`));
    });
    return sealed;
  }
  const checkpointTimer = setInterval(() => {
    checkpoint().catch(onError);
  }, options.checkpointIntervalMs ?? 10_000);
  checkpointTimer.unref();

  const guarded =
    <A extends unknown[]>(fn: (...args: A) => void) =>
    (...args: A): void => {
      try {
        fn(...args);
      } catch (err) {
        onError(err as Error);
      }
    };

  write("audit_started", { host: hostname(), pid: process.pid });

  return {
    chain,
    keyed: key !== undefined,
    unavailableReason: () => sink.failure(),
    get seq() {
      return seq;
    },
    listener: guarded((event: ApprovalEvent) => {
      const { type, fields } = approvalEventLine(event);
      write(type, fields);
    }),
    policyReloaded: guarded((event: PolicyReloadEvent) => {
      if (event.outcome === "rejected") {
        write("policy_reload_failed", {
          trigger: event.trigger,
          ...(event.current === undefined ? {} : { policy_sha256: event.current.sha256 }),
          problems: event.error.problems.map((p) => ({ path: p.path, message: p.message })),
        });
        return;
      }
      write("policy_reloaded", {
        trigger: event.trigger,
        outcome: event.outcome,
        policy_sha256: event.current.sha256,
        ...(event.outcome === "applied" && event.previousSha256 !== undefined
          ? { previous_sha256: event.previousSha256 }
          : {}),
        policies: event.current.policySet.policies.length,
      });
    }),
    unauthorized: guarded((attempt: UnauthorizedAttempt) => {
      write("unauthorized", {
        ...(attempt.approvalId === undefined || attempt.approvalId === ""
          ? {}
          : { approval_id: attempt.approvalId }),
        actor: attempt.actor ?? attempt.caller,
        caller: attempt.caller,
        rpc: attempt.rpc,
        message: attempt.message,
      });
    }),
    security: guarded((event: Exclude<SecurityEventType, "unauthorized">, details: JsonObject) => {
      write("security", { event, ...details });
    }),
    securitySummary: guarded((summary: SecuritySummary) => {
      write("security_summary", {
        event: summary.type,
        remote_address: summary.peer.address,
        ...(summary.peer.identity === undefined ? {} : { caller: summary.peer.identity }),
        suppressed: summary.suppressed,
        since: new Date(summary.sinceMs).toISOString(),
      });
    }),
    notificationFailed: guarded((failure: NotificationFailure) => {
      write("notification_failed", {
        approval_id: failure.approvalId,
        actor: "slack-gateway",
        message_key: failure.key,
        method: failure.method,
        error: failure.error,
      });
    }),
    reminded: guarded((approval: Approval, details: JsonObject = {}) => {
      write("reminded", { ...approvalFields(approval, "system"), ...details });
    }),
    escalated: guarded((approval: Approval, details: JsonObject = {}) => {
      write("escalated", { ...approvalFields(approval, "system"), ...details });
    }),
    ready: () => opened,
    reopen: () => sink.reopen(),
    checkpoint,
    async close() {
      if (closed) return;
      write("audit_stopped", { events: seq + 1 });
      closed = true;
      clearInterval(checkpointTimer);
      const openFailed = await opened.then(
        () => false,
        () => true,
      );
      // Stops the retries too when the file never opened.
      const lost = await sink.close();
      if (openFailed) return;
      if (lost !== undefined) onError(new Error(`audit lines left unwritten at close: ${lost}`));
      await checkpoint();
    },
  };
}
