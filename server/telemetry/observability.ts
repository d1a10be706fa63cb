import type * as http from "node:http";
import type { Interceptor } from "@connectrpc/connect";
import { type Attributes, SpanKind, SpanStatusCode, type Tracer, trace } from "@opentelemetry/api";
import type { Logger } from "pino";
import type { AuditCheckpointStore } from "../audit/audit-checkpoints.js";
import { type AuditLog, createAuditLog } from "../audit/audit-log.js";
import { auditKey } from "../audit/audit-record.js";
import type { Clock } from "../domain/clock.js";
import type { JsonObject } from "../domain/types.js";
import type { PolicyReloadEvent } from "../policy/policy-holder.js";
import type { ApprovalEvent, ApprovalEventListener } from "../services/approval-events.js";
import type { SlackGatewayEvent } from "../slack/gateway-events.js";
import type { ApprovalStore } from "../store/approval-store.js";
import { isGrpcInstrumented } from "./grpc-instrumentation.js";
import { createMetrics, type Metrics } from "./metrics.js";
import {
  approvalIdAttribute,
  createMetricsInterceptor,
  createTracingInterceptor,
} from "./rpc-interceptors.js";
import type { SecurityEventType, SecurityPeer } from "./security-events.js";
import { createSecurityThrottle } from "./security-throttle.js";
import { reportSchedulerRuns, traceStore } from "./traced-store.js";
import { startTracing, type Tracing, type TracingOptions } from "./tracing.js";

/** Options of `createObservability`. */
export interface ObservabilityOptions {
  clock: Clock;
  logger: Logger;
  /** Audit log destination: a file path, or `"stdout"`. @default "stdout" */
  auditDestination?: string;
  /** The secret that seals the audit log; unkeyed without one. */
  auditKey?: string;
  /** Where audit checkpoints are kept besides the log. */
  auditCheckpoints?: AuditCheckpointStore;
  /** How often the audit log's head is checkpointed. @default 10000 */
  auditCheckpointMs?: number;
  /** Wait after a failed audit write before the next attempt. @default 1000 */
  auditRetryMs?: number;
  /** Tracing; off when undefined. */
  tracing?: TracingOptions;
  /** Node process metrics. @default true */
  processMetrics?: boolean;
  /**
   * Refused calls of one type and peer after the first are only counted, and summarised once per this
   * interval (audit `security_summary` line and log line). @default 60000
   */
  securitySummaryMs?: number;
}

/** Audit, metrics and tracing of one server, wired to the application layer and the transports. */
export interface Observability {
  readonly audit: AuditLog;
  readonly metrics: Metrics;
  /** Undefined when tracing is off. */
  readonly tracing: Tracing | undefined;
  /** For `createApprovalOperations`. */
  readonly listeners: ApprovalEventListener[];
  /** To run before every other interceptor, on both transports. */
  readonly interceptors: Interceptor[];
  /** Extra ops-server routes: `/metrics`. */
  readonly opsRoutes: Record<string, http.RequestListener>;
  /** For the policy holder's `onReload`. */
  policyReloaded(event: PolicyReloadEvent): void;
  /**
   * Counts a security event seen outside the application layer (a bad admin token, a rate limited
   * create, a Slack request with a bad signature, a stale timestamp or a replay) and, when it is the
   * first of its type and peer in the interval, audits and logs it; the others are summarised.
   * (Unauthorized attempts are reported by the application layer and the metrics interceptor.)
   */
  security(type: Exclude<SecurityEventType, "unauthorized">, peer: SecurityPeer, details: JsonObject): void;
  /** The store the server should use (traced when tracing is on); its gauges are read at each scrape. */
  store(store: ApprovalStore): ApprovalStore;
  /** The store the scheduler should use: each of its runs is reported to metrics. */
  schedulerStore(store: ApprovalStore): ApprovalStore;
  /**
   * Receives the Slack gateway's events (its `onEvent`): API calls, 429s and retries, the outbound queue,
   * refused requests (bad signature, stale timestamp, replay) and clicks refused by the gateway itself.
   */
  slackListener(event: SlackGatewayEvent): void;
  /** Writes the pending security summaries, flushes and closes the audit log and the tracer. */
  close(): Promise<void>;
}

/**
 * A span for one Slack Web API call, made from the gateway's report when the call has ended (it began
 * `durationMs` earlier): method, outcome, HTTP status, retry count, whether Slack answered 429.
 */
function slackCallSpan(tracer: Tracer, event: Extract<SlackGatewayEvent, { type: "api_call" }>): void {
  const end = Date.now();
  const span = tracer.startSpan(`slack ${event.method}`, {
    kind: SpanKind.CLIENT,
    startTime: end - event.durationMs,
    attributes: {
      "slack.method": event.method,
      "slack.outcome": event.outcome,
      "slack.retry_count": event.attempt - 1,
      "slack.rate_limited": event.outcome === "rate_limited",
      "http.response.status_code": event.status,
      ...(event.error === "" ? {} : { "slack.error": event.error }),
    },
  });
  if (event.outcome !== "ok")
    span.setStatus({ code: SpanStatusCode.ERROR, message: event.error || event.outcome });
  span.end(end);
}

/** The server log's message for a security event written in full. */
const securityLogMessage: Record<SecurityEventType, string> = {
  bad_signature: "Slack request refused",
  stale_timestamp: "Slack request refused",
  replay: "Slack request refused",
  rate_limited: "create rate limited",
  unauthorized: "call refused",
  bad_admin_token: "admin call refused",
};

/** The log fields naming a peer. */
const peerFields = (peer: SecurityPeer): JsonObject => ({
  remote_address: peer.address,
  ...(peer.identity === undefined ? {} : { caller: peer.identity }),
});

/** Span event attributes of an approval event. */
function spanEventAttributes(event: ApprovalEvent): Attributes {
  switch (event.type) {
    case "created":
      return { action: event.approval.action, state: event.approval.state };
    case "vote":
      return { decision: event.vote.decision, approver: event.vote.approver };
    case "terminal":
      return { outcome: event.approval.state, decided_by: event.approval.decidedBy };
    case "refused":
      return { reason: event.reason, actor: event.actor };
    case "edit_applied":
      return { keys: event.edit.changes.map((c) => c.key).join(",") };
    case "edit_rejected":
      return { violations: event.violations.length };
  }
}

/**
 * Builds the audit log (opened before this resolves), the metrics and, when configured, tracing, and the
 * listeners and interceptors that feed them. An unauthorized attempt is counted and audited once: by the
 * application layer's `refused` event when it saw the attempt, else by the transport.
 * @throws Error when the audit file cannot be opened
 */
export async function createObservability(options: ObservabilityOptions): Promise<Observability> {
  const { clock, logger } = options;
  const destination = options.auditDestination ?? "stdout";
  const metrics = createMetrics({ clock, processMetrics: options.processMetrics ?? true });
  const audit = createAuditLog({
    destination,
    clock,
    ...(options.auditKey === undefined ? {} : { key: auditKey(options.auditKey) }),
    ...(options.auditCheckpoints === undefined ? {} : { checkpointStore: options.auditCheckpoints }),
    ...(options.auditCheckpointMs === undefined ? {} : { checkpointIntervalMs: options.auditCheckpointMs }),
    ...(options.auditRetryMs === undefined ? {} : { retryMs: options.auditRetryMs }),
    onError: (err) => logger.error({ err: err.message }, "audit log failed"),
    onWriteError: (err) => {
      metrics.audit.writeFailed();
      logger.error(
        { err: err.message },
        "audit log write failed: state changes are refused until audit lines can be written again",
      );
    },
    onRecovered: () => logger.info("audit log writable again: state changes are accepted"),
    onReopened: (reason) => logger.info({ reason, file: destination }, "audit log reopened"),
    onDropped: () => metrics.audit.dropped(),
    // In the server's log, outside the audit file: `countersign audit verify --checkpoints` reads them.
    onCheckpoint: (checkpoint) => logger.info({ audit_checkpoint: checkpoint }, "audit checkpoint"),
  });
  try {
    await audit.ready();
  } catch (err) {
    await audit.close();
    throw new Error(`cannot open the audit file ${destination}: ${(err as Error).message}`);
  }
  metrics.audit.observe(() => audit.unavailableReason() === undefined, audit.keyed);
  if (!audit.keyed)
    logger.warn(
      "the audit log is unkeyed (no AUDIT_KEY / AUDIT_KEY_FILE): its hash chain shows accidents, " +
        "not a writer who recomputes it",
    );
  const tracing = options.tracing === undefined ? undefined : startTracing(options.tracing);
  if (tracing !== undefined && !isGrpcInstrumented()) {
    logger.warn(
      "tracing is on but gRPC spans are off: grpc-js was loaded before the instrumentation " +
        "(start with `countersign serve`, or node --import ./dist/server/telemetry/register.js)",
    );
  }

  const throttle = createSecurityThrottle({
    clock,
    intervalMs: options.securitySummaryMs ?? 60_000,
    onSummary: (summary) => {
      audit.securitySummary(summary);
      logger.warn(
        {
          security_event: summary.type,
          ...peerFields(summary.peer),
          suppressed: summary.suppressed,
          since: new Date(summary.sinceMs).toISOString(),
        },
        "security events summarised",
      );
    },
  });
  /** Counts every event; audits and logs it when it is the first of its type and peer in the interval. */
  const securityEvent = (type: SecurityEventType, peer: SecurityPeer, write: () => JsonObject): void => {
    metrics.security(type);
    if (!throttle.admit(type, peer)) return;
    const details = write();
    logger.warn({ security_event: type, ...peerFields(peer), ...details }, securityLogMessage[type]);
  };

  const reported = new WeakSet<object>();
  const listeners: ApprovalEventListener[] = [
    (event) => {
      if (event.type === "refused") reported.add(event.error);
    },
    audit.listener,
    metrics.listener,
  ];
  if (tracing !== undefined) {
    listeners.push((event) => {
      const span = trace.getActiveSpan();
      if (span === undefined) return;
      span.setAttribute(approvalIdAttribute, event.approval.id);
      span.addEvent(`approval.${event.type}`, spanEventAttributes(event));
    });
  }

  const interceptors: Interceptor[] = [
    ...(tracing === undefined ? [] : [createTracingInterceptor(tracing.tracer)]),
    createMetricsInterceptor({
      metrics,
      onRefused: (call) => {
        const cause = call.error.cause;
        if (typeof cause === "object" && cause !== null && reported.has(cause)) return;
        const peer = { address: call.address, ...(call.caller === "" ? {} : { identity: call.caller }) };
        securityEvent("unauthorized", peer, () => {
          audit.unauthorized({
            caller: call.caller,
            rpc: call.rpc,
            ...(call.approvalId === undefined ? {} : { approvalId: call.approvalId }),
            ...(call.approver === undefined ? {} : { actor: call.approver }),
            message: call.error.rawMessage,
          });
          return { rpc: call.rpc, message: call.error.rawMessage };
        });
      },
    }),
  ];

  const metricsRoute: http.RequestListener = (_req, res) => {
    metrics.render().then(
      ({ contentType, text }) => {
        res.writeHead(200, { "content-type": contentType, "cache-control": "no-store" });
        res.end(text);
      },
      (err: unknown) => {
        logger.error({ err }, "metrics collection failed");
        res.writeHead(500, { "content-type": "text/plain" });
        res.end("metrics collection failed\n");
      },
    );
  };

  return {
    audit,
    metrics,
    tracing,
    listeners,
    interceptors,
    opsRoutes: { "/metrics": metricsRoute },
    policyReloaded(event) {
      audit.policyReloaded(event);
      metrics.policyReloaded(event);
    },
    security(type, peer, details) {
      securityEvent(type, peer, () => {
        audit.security(type, { ...details, ...peerFields(peer) });
        return details;
      });
    },
    store(store) {
      metrics.observeStore(store);
      return tracing === undefined ? store : traceStore(store, tracing.tracer);
    },
    schedulerStore(store) {
      return reportSchedulerRuns(store, () => metrics.schedulerRan());
    },
    slackListener(event) {
      switch (event.type) {
        case "api_call":
          metrics.slack.apiCall(event.method, event.outcome);
          if (event.attempt > 1) metrics.slack.retry(event.method);
          if (tracing !== undefined) slackCallSpan(tracing.tracer, event);
          return;
        case "queue":
          metrics.slack.queue(event.depth, event.oldestAgeMs / 1000);
          return;
        case "security":
          securityEvent(event.kind, { address: event.remoteAddress }, () => {
            audit.security(event.kind, { reason: event.reason, remote_address: event.remoteAddress });
            return { reason: event.reason };
          });
          return;
        case "unauthorized":
          // A refusal of the API itself is already reported by the application layer or the interceptor.
          if (event.source === "service") return;
          metrics.security("unauthorized");
          audit.unauthorized({
            caller: "slack-gateway",
            rpc: `slack/${event.action}`,
            approvalId: event.approvalId,
            actor: event.user,
            message: event.message,
          });
          return;
        case "notice_posted": {
          const details = {
            channel: event.channel,
            notice: event.notice,
            ...(event.index >= 0 ? { reminder: event.index + 1 } : {}),
          };
          if (event.notice === "reminder") {
            metrics.reminder(event.approval);
            audit.reminded(event.approval, details);
          } else {
            // Counted once per request message it is posted under; the fallback notice and DMs are audited.
            if (event.notice === "escalation") metrics.escalation(event.approval);
            audit.escalated(event.approval, details);
          }
          return;
        }
        case "post_failed":
          metrics.slack.postFailed(event.method, event.error);
          audit.notificationFailed({
            approvalId: event.approvalId,
            key: event.key,
            method: event.method,
            error: event.error,
          });
          return;
        case "notices_due":
          // The gateway's reminder tick, as a scheduler run (an instant: the posts are their own spans).
          tracing?.tracer
            .startSpan("scheduler reminders", {
              attributes: {
                "countersign.reminders": event.reminders,
                "countersign.escalations": event.escalations,
                "countersign.approvals": event.approvals,
              },
            })
            .end();
          return;
        case "rate_limited":
        case "post_recovered":
          // 429s are counted from their api_call event; a recovered post is in the gateway's logs.
          return;
      }
    },
    async close() {
      throttle.close();
      await audit.close();
      await tracing?.shutdown();
    },
  };
}
