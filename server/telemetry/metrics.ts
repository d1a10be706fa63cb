import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import { type Clock, systemClock } from "../domain/clock.js";
import { type FieldViolation, StoreDataLostError } from "../domain/errors.js";
import { unknownActionPolicyName } from "../domain/lifecycle.js";
import type { Approval } from "../domain/types.js";
import type { PolicyReloadEvent } from "../policy/policy-holder.js";
import type { ApprovalEvent, ApprovalEventListener } from "../services/approval-events.js";
import type { SlackCallOutcome } from "../slack/gateway-events.js";
import type { ApprovalStore } from "../store/approval-store.js";
import { type SecurityEventType, securityEventTypes } from "./security-events.js";

/**
 * Buckets (seconds) of the processing-latency histograms. The SLO thresholds (create P95 < 120 ms,
 * decision processing P95 < 250 ms) are bucket bounds, so `histogram_quantile` and the SLO ratio
 * `le="0.12"` / `le="0.25"` are exact at the threshold.
 */
export const processingBuckets = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.12, 0.15, 0.2, 0.25, 0.3, 0.5, 1, 2.5, 5, 10,
];

/** Buckets (seconds) of create → terminal: human time, from an instant decision to the 7-day maximum. */
export const decisionBuckets = [
  0.12, 0.25, 1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800, 86400, 259200, 604800,
];

/** Why an approver's edit was rejected by override governance (label `reason`). */
export type OverrideRejection = "not_allowed" | "too_many_keys" | "diff_too_large" | "schema";

/**
 * Classifies the violations of a rejected edit (see `applyParamsEdit`) by the most fundamental problem:
 * a key that may not be edited, then too many keys, then too many bytes, then the JSON Schema.
 */
export function overrideRejectionReason(violations: readonly FieldViolation[]): OverrideRejection {
  const has = (re: RegExp) => violations.some((v) => re.test(v.description));
  if (has(/^may not be edited|does not allow edits/)) return "not_allowed";
  if (has(/^changes \d+ keys/)) return "too_many_keys";
  if (has(/^changed values are \d+ bytes/)) return "diff_too_large";
  return "schema";
}

/** Options of `createMetrics`. */
export interface MetricsOptions {
  /** Source of the domain times (create, expire). @default systemClock */
  clock?: Clock;
  /** Node process metrics (CPU, memory, event loop lag, GC). @default true */
  processMetrics?: boolean;
  /**
   * Distinct values of the `action` label before further actions are counted as `(other)`: action names
   * come from clients and a glob policy matches unboundedly many. @default 200
   */
  maxActions?: number;
  /** Pending approvals scanned per scrape for the by-action gauge; the rest count as `(other)`. @default 10000 */
  maxPendingScan?: number;
}

/** The label value of approvals no policy matched. */
export const noPolicyAction = "(no policy)";
/** The label value of actions beyond `maxActions`. */
export const otherAction = "(other)";

/**
 * The Prometheus metrics of one server (its own registry, so several servers can share a process). All
 * updates are O(1); gauges that describe the store (pending, oldest pending, overdue, store up) are read
 * from the store by `render()` when Prometheus scrapes, so they are right across replicas and restarts.
 */
export function createMetrics(options: MetricsOptions = {}) {
  const clock = options.clock ?? systemClock;
  const maxActions = options.maxActions ?? 200;
  const maxPendingScan = options.maxPendingScan ?? 10_000;
  const registry = new Registry();
  if (options.processMetrics ?? true) collectDefaultMetrics({ register: registry });
  const registers = [registry];

  const actions = new Set<string>();
  const actionLabel = (approval: Approval): string => {
    if (approval.policyName === unknownActionPolicyName) return noPolicyAction;
    if (actions.has(approval.action)) return approval.action;
    if (actions.size >= maxActions) return otherAction;
    actions.add(approval.action);
    return approval.action;
  };

  const created = new Counter({
    name: "countersign_approvals_created_total",
    help: "Approvals created, by action.",
    labelNames: ["action"] as const,
    registers,
  });
  const decisions = new Counter({
    name: "countersign_decisions_total",
    help: "Approvals that reached a decision, by action and outcome (approved, denied, cancelled).",
    labelNames: ["action", "outcome"] as const,
    registers,
  });
  const expirations = new Counter({
    name: "countersign_expirations_total",
    help: "Approvals that expired without a decision, by action.",
    labelNames: ["action"] as const,
    registers,
  });
  const escalations = new Counter({
    name: "countersign_escalations_total",
    help: "Escalations posted under a request message (one per channel or DM the request is in), by action.",
    labelNames: ["action"] as const,
    registers,
  });
  const reminders = new Counter({
    name: "countersign_reminders_total",
    help: "Reminders posted under a request message (one per channel or DM the request is in), by action.",
    labelNames: ["action"] as const,
    registers,
  });
  const votes = new Counter({
    name: "countersign_votes_total",
    help: "Votes recorded, by action and decision (approve, deny, acknowledge).",
    labelNames: ["action", "decision"] as const,
    registers,
  });
  const security = new Counter({
    name: "countersign_security_events_total",
    help: "Security events, by type.",
    labelNames: ["type"] as const,
    registers,
  });
  for (const type of securityEventTypes) security.inc({ type }, 0);
  const overrides = new Counter({
    name: "countersign_overrides_total",
    help: "Approvers' edits of params (approve with edits), by outcome (applied, rejected) and reason.",
    labelNames: ["outcome", "reason"] as const,
    registers,
  });
  const policyReloads = new Counter({
    name: "countersign_policy_reloads_total",
    help: "Policy loads and reloads, by outcome (applied, unchanged, rejected).",
    labelNames: ["outcome"] as const,
    registers,
  });
  const slackCalls = new Counter({
    name: "countersign_slack_api_calls_total",
    help: "Slack Web API calls, by method and result (ok, rate_limited, unavailable, ambiguous, blocked, rejected).",
    labelNames: ["method", "result"] as const,
    registers,
  });
  const slackPostsFailed = new Counter({
    name: "countersign_slack_posts_failed_total",
    help: "Slack posts and updates Slack refused for good (not retried): approvers may not have been notified, by method and Slack error.",
    labelNames: ["method", "error"] as const,
    registers,
  });
  const slack429 = new Counter({
    name: "countersign_slack_rate_limited_total",
    help: "Slack Web API answers 429 (rate limited), by method.",
    labelNames: ["method"] as const,
    registers,
  });
  const slackRetries = new Counter({
    name: "countersign_slack_retries_total",
    help: "Slack Web API calls retried, by method.",
    labelNames: ["method"] as const,
    registers,
  });
  const rpcHandled = new Counter({
    name: "countersign_rpc_handled_total",
    help: "RPCs completed (unary and streaming, both transports), by service, method and status code.",
    labelNames: ["service", "method", "code"] as const,
    registers,
  });

  const rpcDuration = new Histogram({
    name: "countersign_rpc_duration_seconds",
    help: "Unary RPC latency in the server, by service, method and status code.",
    labelNames: ["service", "method", "code"] as const,
    buckets: processingBuckets,
    registers,
  });
  const createDuration = new Histogram({
    name: "countersign_create_duration_seconds",
    help: "Create processing latency: CreateApproval received → stored and answered (successful creates).",
    buckets: processingBuckets,
    registers,
  });
  const decideDuration = new Histogram({
    name: "countersign_decide_duration_seconds",
    help: "Decision processing latency: SubmitDecision received → vote stored and published (successful).",
    buckets: processingBuckets,
    registers,
  });
  const decisionLatency = new Histogram({
    name: "countersign_decision_latency_seconds",
    help: "Create → terminal state, by action and outcome (approved, denied, expired, cancelled).",
    labelNames: ["action", "outcome"] as const,
    buckets: decisionBuckets,
    registers,
  });

  const watchStreams = new Gauge({
    name: "countersign_watch_streams_active",
    help: "Watch streams open now, by method (WatchApproval, and the gateway's watch of every approval).",
    labelNames: ["method"] as const,
    registers,
  });
  const connectionsClosed = new Counter({
    name: "countersign_connections_closed_total",
    help: "Connections refused or closed by the server's limits, by port (grpc, connect) and reason (refused_total, refused_peer, handshake_timeout, idle, max_age).",
    labelNames: ["port", "reason"] as const,
    registers,
  });
  const streamsRefused = new Counter({
    name: "countersign_streams_refused_total",
    help: "Watch streams refused with RESOURCE_EXHAUSTED, by scope (identity: one client's cap, total: the server's).",
    labelNames: ["scope"] as const,
    registers,
  });
  for (const scope of ["identity", "total"]) streamsRefused.inc({ scope }, 0);
  const schedulerLastRun = new Gauge({
    name: "countersign_scheduler_last_run_timestamp_seconds",
    help: "Unix time of the scheduler's last run that reached the store.",
    registers,
  });

  const archived = new Counter({
    name: "countersign_archived_total",
    help: "Finished approvals appended to the archive (fsync'ed) by retention.",
    registers,
  });
  const purged = new Counter({
    name: "countersign_purged_total",
    help: "Finished approvals purged from the store by retention (after being archived).",
    registers,
  });
  const archiveFailures = new Counter({
    name: "countersign_archive_failures_total",
    help: "Retention runs stopped by an archive write that failed (nothing of that batch was purged).",
    registers,
  });
  const clockSkew = new Gauge({
    name: "countersign_clock_skew_seconds",
    help: "This host's clock minus Redis's (TIME), at the last readiness check; positive when this host is ahead (0 without Redis).",
    registers,
  });

  const slackQueueDepth = new Gauge({
    name: "countersign_slack_queue_depth",
    help: "Work items waiting or running in the Slack gateway's outbound queue.",
    registers,
  });
  const slackQueueAge = new Gauge({
    name: "countersign_slack_queue_oldest_age_seconds",
    help: "Age of the oldest item in the Slack gateway's outbound queue (0 when empty).",
    registers,
  });

  const auditWriteFailures = new Counter({
    name: "countersign_audit_write_failures_total",
    help: "Failed writes of the audit log (e.g. a full disk); lines stay queued and are retried.",
    registers,
  });
  const auditDropped = new Counter({
    name: "countersign_audit_lines_dropped_total",
    help: "Audit events dropped because the backlog of unwritten lines was full while writes failed.",
    registers,
  });
  let auditHealth: (() => boolean) | undefined;
  new Gauge({
    name: "countersign_audit_healthy",
    help: "1 when the audit log can be written, 0 while writes fail (state changes are refused meanwhile).",
    registers,
    collect() {
      this.set(auditHealth === undefined || auditHealth() ? 1 : 0);
    },
  });
  let auditKeyed = false;
  new Gauge({
    name: "countersign_audit_keyed",
    help: "1 when the audit log is sealed with a key (AUDIT_KEY), 0 when unkeyed.",
    registers,
    collect() {
      this.set(auditKeyed ? 1 : 0);
    },
  });

  let store: ApprovalStore | undefined;
  const storeUp = new Gauge({
    name: "countersign_store_up",
    help: "1 when the approval store (Redis) answered within 2 s at the last scrape, else 0.",
    registers,
  });
  const storeDataLost = new Gauge({
    name: "countersign_store_data_lost",
    help: "1 once the approval store (Redis) was found to have lost its data (its epoch key gone), else 0.",
    registers,
  });
  const pending = new Gauge({
    name: "countersign_approvals_pending",
    help: "Pending approvals, by action (read from the store at each scrape: the same on every replica).",
    labelNames: ["action"] as const,
    registers,
  });
  const oldestPending = new Gauge({
    name: "countersign_approvals_oldest_pending_age_seconds",
    help: "Age of the oldest pending approval (0 when none).",
    registers,
  });
  const overdue = new Gauge({
    name: "countersign_approvals_overdue",
    help: "Pending approvals more than 30 s past their deadline (the scheduler expires them within 1 s).",
    registers,
  });

  /** Reads the store-describing gauges from the store; on failure they are left out and store_up is 0. */
  async function refreshStoreGauges(): Promise<void> {
    if (store === undefined) return;
    const s = await readStore(store, clock.now(), maxPendingScan, maxActions);
    storeUp.set(s.up ? 1 : 0);
    storeDataLost.set(!s.up && s.dataLost ? 1 : 0);
    pending.reset();
    oldestPending.reset();
    overdue.reset();
    if (!s.up) return;
    for (const [action, count] of s.pending) pending.set({ action }, count);
    oldestPending.set(s.oldestPendingAgeSeconds);
    overdue.set(s.overdue);
  }

  const listener: ApprovalEventListener = (event: ApprovalEvent) => {
    const a = event.approval;
    switch (event.type) {
      case "created":
        created.inc({ action: actionLabel(a) });
        return;
      case "vote":
        votes.inc({ action: actionLabel(a), decision: event.vote.decision });
        return;
      case "edit_applied":
        overrides.inc({ outcome: "applied", reason: "" });
        return;
      case "edit_rejected":
        overrides.inc({ outcome: "rejected", reason: overrideRejectionReason(event.violations) });
        return;
      case "refused":
        if (event.reason === "permission_denied") security.inc({ type: "unauthorized" });
        return;
      case "terminal": {
        const action = actionLabel(a);
        const outcome = a.state;
        if (outcome === "expired") expirations.inc({ action });
        else decisions.inc({ action, outcome });
        decisionLatency.observe({ action, outcome }, Math.max(0, a.decideTime - a.createTime) / 1000);
        return;
      }
    }
  };

  return {
    /** The registry (for tests and for adding metrics). */
    registry,
    /** The `/metrics` page: reads the store's gauges, then renders every metric. */
    async render(): Promise<{ contentType: string; text: string }> {
      await refreshStoreGauges();
      return { contentType: registry.contentType, text: await registry.metrics() };
    },
    /** Receives approval events from the application layer. */
    listener,
    /** Counts a security event. */
    security(type: SecurityEventType): void {
      security.inc({ type });
    },
    /** Counts a completed RPC; `seconds` for unary calls (streams last as long as a human takes). */
    rpc(service: string, method: string, code: string, seconds?: number): void {
      rpcHandled.inc({ service, method, code });
      if (seconds !== undefined) rpcDuration.observe({ service, method, code }, seconds);
    },
    /** Observes a successful create's processing time. */
    createProcessed(seconds: number): void {
      createDuration.observe(seconds);
    },
    /** Observes a successful decision's processing time (received → stored and published). */
    decideProcessed(seconds: number): void {
      decideDuration.observe(seconds);
    },
    /** A watch stream of RPC `method` opened (+1) or ended (-1). */
    watchStreams(method: string, delta: 1 | -1): void {
      watchStreams.inc({ method }, delta);
    },
    /** Counts a connection refused or closed by a limit. */
    connectionClosed(port: "grpc" | "connect", reason: string): void {
      connectionsClosed.inc({ port, reason });
    },
    /** Counts a watch stream refused by a cap. */
    streamRefused(scope: "identity" | "total"): void {
      streamsRefused.inc({ scope });
    },
    /** Counts a reminder sent for `approval`. */
    reminder(approval: Approval): void {
      reminders.inc({ action: actionLabel(approval) });
    },
    /** Counts an escalation of `approval`. */
    escalation(approval: Approval): void {
      escalations.inc({ action: actionLabel(approval) });
    },
    /** Counts a policy load or reload. */
    policyReloaded(event: PolicyReloadEvent): void {
      policyReloads.inc({ outcome: event.outcome });
    },
    /** The scheduler completed a run against the store. */
    schedulerRan(): void {
      schedulerLastRun.set(Date.now() / 1000);
    },
    /** What retention did (see `RetentionObserver`). */
    retention: {
      /** `count` approvals were appended to the archive. */
      archived(count: number): void {
        archived.inc(count);
      },
      /** `count` approvals were purged from the store. */
      purged(count: number): void {
        purged.inc(count);
      },
      /** An archive write failed. */
      archiveFailed(): void {
        archiveFailures.inc();
      },
    },
    /** This host's clock minus Redis's, as last measured. */
    clockSkew(seconds: number): void {
      clockSkew.set(seconds);
    },
    /** Reads the store-describing gauges from `s` at every scrape. */
    observeStore(s: ApprovalStore): void {
      store = s;
    },
    /** What the audit log reports. */
    audit: {
      /** Reads the audit log's health and keying at every scrape. */
      observe(healthy: () => boolean, keyed: boolean): void {
        auditHealth = healthy;
        auditKeyed = keyed;
      },
      /** A write of the audit log failed. */
      writeFailed(): void {
        auditWriteFailures.inc();
      },
      /** An audit event was dropped (the backlog was full). */
      dropped(): void {
        auditDropped.inc();
      },
    },
    /** What the Slack gateway reports. */
    slack: {
      /** One Web API call and how it ended; a 429 also counts in `countersign_slack_rate_limited_total`. */
      apiCall(method: string, result: SlackCallOutcome): void {
        slackCalls.inc({ method, result });
        if (result === "rate_limited") slack429.inc({ method });
      },
      /** Slack refused a post or update for good (e.g. `channel_not_found`, `invalid_blocks`). */
      postFailed(method: string, error: string): void {
        slackPostsFailed.inc({ method, error });
      },
      /** A call is retried (after a 429 or a transient error). */
      retry(method: string): void {
        slackRetries.inc({ method });
      },
      /** The outbound queue's depth and the age of its oldest item. */
      queue(depth: number, oldestAgeSeconds: number): void {
        slackQueueDepth.set(depth);
        slackQueueAge.set(oldestAgeSeconds);
      },
    },
  };
}

/** The metrics of one server. */
export type Metrics = ReturnType<typeof createMetrics>;

type StoreSnapshot =
  | { up: false; dataLost: boolean }
  | { up: true; pending: Map<string, number>; oldestPendingAgeSeconds: number; overdue: number };

/** How long past its deadline a pending approval counts as overdue. */
const overdueAfterMs = 30_000;

async function readStore(
  store: ApprovalStore,
  now: number,
  maxScan: number,
  maxActions: number,
): Promise<StoreSnapshot> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error("store ping timed out")), 2_000);
  });
  try {
    await Promise.race([store.ping(), timeout]);
    const stats = await Promise.race([store.stats(), timeout]);
    const pending = new Map<string, number>();
    let scanned = 0;
    let pageToken = "";
    do {
      const page = await Promise.race([
        store.list({ state: "pending", pageSize: 500, ...(pageToken === "" ? {} : { pageToken }) }),
        timeout,
      ]);
      for (const a of page.approvals) {
        let action = a.policyName === unknownActionPolicyName ? noPolicyAction : a.action;
        if (!pending.has(action) && pending.size >= maxActions) action = otherAction;
        pending.set(action, (pending.get(action) ?? 0) + 1);
      }
      scanned += page.approvals.length;
      pageToken = page.nextPageToken;
    } while (pageToken !== "" && scanned < maxScan);
    if (stats.counts.pending > scanned)
      pending.set(otherAction, (pending.get(otherAction) ?? 0) + stats.counts.pending - scanned);
    const overdue = await Promise.race([store.dueForExpiry(now - overdueAfterMs, 1000), timeout]);
    const oldest = stats.oldestPending;
    return {
      up: true,
      pending,
      oldestPendingAgeSeconds: oldest === undefined ? 0 : Math.max(0, now - oldest.createTime) / 1000,
      overdue: overdue.length,
    };
  } catch (err) {
    return { up: false, dataLost: err instanceof StoreDataLostError };
  } finally {
    clearTimeout(timer);
  }
}
