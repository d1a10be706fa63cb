import type * as http from "node:http";
import type { AddressInfo } from "node:net";
import type { Interceptor } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import type { SpanExporter } from "@opentelemetry/sdk-trace-base";
import { type Logger, pino } from "pino";
import { EchoService } from "../gen/countersign/bench/v1/echo_pb.js";
import { AdminService } from "../gen/countersign/v1/admin_service_pb.js";
import { ApprovalService } from "../gen/countersign/v1/approval_service_pb.js";
import { createArchiveWriter } from "./archive/archive-writer.js";
import { createMemoryCheckpointStore, createRedisCheckpointStore } from "./audit/audit-checkpoints.js";
import { gateStateChanges } from "./audit/audit-gate.js";
import { createEchoService } from "./bench/echo-service.js";
import type { ServeConfig } from "./config/config.js";
import { type Clock, systemClock } from "./domain/clock.js";
import { StoreDataLostError, UnavailableError } from "./domain/errors.js";
import { formatDuration } from "./policy/duration.js";
import { createPolicyHolder } from "./policy/policy-holder.js";
import type { PolicyDocumentResult } from "./policy/policy-loader.js";
import { createPolicySync, defaultReplicaName, type PolicySync } from "./policy/policy-sync.js";
import { createRetention } from "./scheduler/retention.js";
import { createScheduler } from "./scheduler/scheduler.js";
import { createAdminService } from "./services/admin-service.js";
import { type ApprovalOperations, createApprovalOperations } from "./services/approval-operations.js";
import { createApprovalService } from "./services/approval-service.js";
import type { SlackGateway } from "./slack/gateway.js";
import type { SlackGatewayEvent } from "./slack/gateway-events.js";
import { createRedisLeases } from "./slack/redis-leases.js";
import { createRedisSlackMessageStore } from "./slack/redis-slack-message-store.js";
import {
  type SlackGatewayDependencies,
  startInProcessSlackGateway,
  startRemoteSlackGateway,
} from "./slack/start-slack-gateway.js";
import type { ApprovalStore } from "./store/approval-store.js";
import { type Claims, createMemoryClaims } from "./store/claims.js";
import { createMemoryApprovalStore } from "./store/memory-approval-store.js";
import { openRedisBackend, type RedisBackend } from "./store/redis-backend.js";
import { type ClockSkew, createRedisTimeClock, measureClockSkew } from "./store/redis-clock.js";
import type { RedisConnections } from "./store/redis-connection.js";
import { createRedisPolicySync } from "./store/redis-policy-sync.js";
import { createReadinessMonitor, policyAgreementReadiness } from "./telemetry/health.js";
import type { Metrics } from "./telemetry/metrics.js";
import {
  createObservability,
  type Observability,
  type ObservabilityOptions,
} from "./telemetry/observability.js";
import { closeConnectServer, createConnectServer } from "./transport/connect-server.js";
import {
  type ConnectionGuardEvent,
  type ConnectionGuardLimits,
  guardConnections,
} from "./transport/connection-guard.js";
import { createGrpcServer, type HostedService, hostService } from "./transport/grpc-server.js";
import { HealthStatus } from "./transport/health-service.js";
import { createAdminAuthInterceptor, createIdentityInterceptor } from "./transport/interceptors.js";
import { createOpsServer, type ReadinessCheck } from "./transport/ops-server.js";
import { createRateLimitInterceptor, createTokenBucket } from "./transport/rate-limit.js";
import { createStreamLimitInterceptor } from "./transport/stream-limit.js";
import { TlsMaterial } from "./transport/tls.js";
import { version } from "./version.js";

/** Things a test or an embedding program may replace. */
export interface ServerDependencies {
  logger?: Logger;
  clock?: Clock;
  /**
   * This host's clock as compared with Redis's to measure skew (tests: one set off); the system clock by
   * default. Kept apart from `clock`, so a test's manual clock (which drives deadlines) is never taken
   * for a skewed host clock.
   */
  hostClock?: Clock;
  store?: ApprovalStore;
  /** Trace to this exporter, span by span (tests: an in-memory exporter), whatever the config says. */
  spanExporter?: SpanExporter;
  /** The Slack gateway's event listener, stores and timings (when it runs). */
  slack?: SlackGatewayDependencies;
  /** Parses policy documents (tests: one that refuses what an older release would refuse). */
  parsePolicies?: (text: string) => PolicyDocumentResult;
}

/** How long calls in flight may take to finish on shutdown before connections are closed. */
const shutdownGraceMs = 10_000;

/** A started server. */
export interface RunningServer {
  /** `host:port` of the gRPC server. */
  grpcAddress: string;
  /** Base URL of the Connect server, e.g. `https://127.0.0.1:8080`. */
  connectUrl: string;
  /** Base URL of the ops endpoint. */
  opsUrl: string;
  operations: ApprovalOperations;
  store: ApprovalStore;
  /** "Exactly one replica does this" claims, shared through the store (for timers that must fire once). */
  claims: Claims;
  /** URL of the Slack interactivity endpoint, when the Slack gateway runs over HTTP in this process. */
  slackEventsUrl?: string;
  /** Re-reads the policy file (as SIGHUP does); a bad file keeps the current set. */
  reloadPolicies(): Promise<void>;
  /** Reopens the audit file before its next write (as SIGHUP does, after log rotation). */
  reopenAuditLog(): void;
  /** Stops accepting calls, ends open streams and releases everything. */
  close(): Promise<void>;
}

function listen(server: http.Server | import("node:http2").Http2SecureServer, host: string, port: number) {
  return new Promise<number>((resolve, reject) => {
    const failed = (err: Error) =>
      reject(new Error(`cannot listen on ${hostPort(host, port)}: ${err.message}`));
    server.once("error", failed);
    server.listen(port, host, () => {
      server.off("error", failed);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

/**
 * Applies the connection caps and the deadline from accept to the first call (which bounds the TLS
 * handshake and the HTTP/2 preface) to the gRPC port. grpc-js has no option or public hook for them; the HTTP/2 servers it listens with are in its private `http2Servers` map (read
 * defensively: if a grpc-js release renames it, the port keeps grpc-js's own idle, keepalive and age
 * limits, and a warning says so at start).
 */
function guardGrpcConnections(
  server: grpc.Server,
  limits: ConnectionGuardLimits,
  onEvent: (event: ConnectionGuardEvent) => void,
  logger?: Logger,
): void {
  const servers = (server as unknown as { http2Servers?: unknown }).http2Servers;
  if (!(servers instanceof Map) || servers.size === 0) {
    logger?.warn("cannot reach grpc-js's HTTP/2 server: the gRPC port has no connection caps");
    return;
  }
  for (const http2Server of servers.keys()) guardConnections(http2Server, limits, onEvent);
}

/** Stops an HTTP server and closes its connections at once. */
function closeHttpServer(server: http.Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

function hostPort(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * What a start has opened so far, each with the step that closes it. When a later step fails, everything
 * is closed in reverse order, so a failed start leaves no socket, timer, watcher or connection behind.
 */
class OpenedResources {
  private readonly closers: { what: string; close: () => unknown }[] = [];

  /** Records `close` as the way to release `what` if a later step fails. */
  add(what: string, close: () => unknown): void {
    this.closers.push({ what, close });
  }

  /** Closes everything in reverse order; a close that fails is logged and the others still run. */
  async closeAll(logger: Logger): Promise<void> {
    for (const { what, close } of this.closers.reverse()) {
      try {
        await close();
      } catch (err) {
        logger.error({ err, what }, "could not close after a failed start");
      }
    }
  }
}

/**
 * The composition root: builds the store, policies, services and both transports from the
 * configuration, and starts them. When a step fails (TLS files, a port in use, the Slack gateway, the
 * policy file), everything opened before it is closed in reverse order and the error is rethrown.
 */
export async function startServer(
  config: ServeConfig,
  deps: ServerDependencies = {},
): Promise<RunningServer> {
  const logger = deps.logger ?? pino({ level: config.logLevel, base: { service: "countersign" } });
  const opened = new OpenedResources();
  try {
    return await startServerSteps(config, deps, logger, opened);
  } catch (err) {
    await opened.closeAll(logger);
    throw err;
  }
}

async function startServerSteps(
  config: ServeConfig,
  deps: ServerDependencies,
  logger: Logger,
  opened: OpenedResources,
): Promise<RunningServer> {
  const onListenerError = (err: unknown) => logger.error({ err }, "change listener failed");
  const redisBackend =
    deps.store === undefined && config.redis !== undefined
      ? openRedisBackend(config.redis, logger, onListenerError)
      : undefined;
  const hostClock = deps.hostClock ?? systemClock;
  // With Redis, deadlines keep to Redis's time (see clockSkewReadiness); an injected clock (tests) wins.
  const redisTime = redisBackend === undefined ? undefined : createRedisTimeClock(hostClock);
  const clock = deps.clock ?? redisTime ?? systemClock;
  // Opened first (the audit log keeps its checkpoints there), so closed last.
  if (redisBackend !== undefined) opened.add("Redis", () => redisBackend.store.close());
  // Audit, metrics and tracing come first: they see the first policy load.
  const observability = await createObservability(
    observabilityOptions(config, deps, { clock, logger, redisBackend }),
  );
  opened.add("audit log and tracing", () => observability.close());

  // With Redis, a reload reaches every replica (policy-sync.ts).
  let sync: PolicySync | undefined;
  const policies = createPolicyHolder({
    path: config.policyFile,
    ...(deps.parsePolicies === undefined ? {} : { parse: deps.parsePolicies }),
    onReload: (event) => {
      observability.policyReloaded(event);
      if (event.outcome === "rejected")
        logger.error(
          { trigger: event.trigger, problems: event.error.problems },
          "policy reload rejected; keeping the current policies",
        );
      else
        logger.info(
          { trigger: event.trigger, outcome: event.outcome, policy_sha256: event.current.sha256 },
          "policies loaded",
        );
      sync?.reloaded(event);
    },
    onWatchError: (err) => logger.error({ err: err.message }, "policy file watch failed"),
  });
  opened.add("policy file", () => policies.close());
  const loaded = await policies.load();
  logger.info(
    { policy_sha256: loaded.sha256, policies: loaded.policySet.policies.length },
    "policies loaded",
  );
  if (redisBackend !== undefined) {
    const started = createPolicySync({
      holder: policies,
      port: createRedisPolicySync(redisBackend.connections),
      replica: defaultReplicaName(),
      clock: redisTime ?? hostClock,
      log: logger,
    });
    opened.add("policy sync", () => started.close());
    sync = started;
  }
  const reloader = sync ?? policies;

  const store =
    deps.store ??
    redisBackend?.store ??
    createMemoryApprovalStore({ onListenerError, now: () => clock.now() });
  if (store !== redisBackend?.store) opened.add("approval store", () => store.close());
  const claims = redisBackend?.claims ?? createMemoryClaims(() => clock.now());
  // Traced (when tracing is on) for the calls that serve RPCs; the scheduler's polling is not traced.
  // No state change without its audit line: while the audit log cannot be written, they fail closed.
  const tracedStore = gateStateChanges(observability.store(store), observability.audit);
  const operations = createApprovalOperations({
    store: tracedStore,
    policies,
    clock,
    listeners: observability.listeners,
  });
  const approvalService = createApprovalService({ operations, heartbeatMs: config.heartbeatMs });
  const services: HostedService[] = [
    hostService(ApprovalService, approvalService),
    hostService(
      AdminService,
      createAdminService({
        operations,
        store: tracedStore,
        policies: { current: () => policies.current(), reload: (o) => reloader.reload(o) },
        ...(sync === undefined ? {} : { agreement: sync }),
        clock,
      }),
    ),
    // The benchmark's floor (`npm run bench`): hosted like the others, through the same interceptors.
    ...(config.benchEcho === true ? [hostService(EchoService, createEchoService())] : []),
  ];
  const interceptors: Interceptor[] = [
    ...observability.interceptors,
    createIdentityInterceptor({
      ...(config.developmentIdentity === undefined
        ? {}
        : { developmentIdentity: config.developmentIdentity }),
      requesters: config.requesters,
      deciders: config.deciders,
      identitySources: config.identitySources,
    }),
    createStreamLimitInterceptor({
      perIdentity: config.limits.maxStreamsPerIdentity,
      total: config.limits.maxStreams,
      onLimited: (client, scope) => {
        observability.metrics.streamRefused(scope);
        logger.warn({ client, scope }, "watch stream refused: too many open");
      },
    }),
    createAdminAuthInterceptor({
      token: config.adminToken,
      onRefused: (reason, address) => observability.security("bad_admin_token", { address }, { reason }),
    }),
    ...(config.createRateLimit === undefined
      ? []
      : [
          createRateLimitInterceptor({
            // With Redis, the counters are shared by every replica.
            bucket: createTokenBucket(config.createRateLimit, redisBackend?.connections.command),
            trustedProxies: config.trustedProxies,
            onLimited: (client, address) =>
              observability.security("rate_limited", { address, identity: client }, { client }),
            onError: (err) => logger.error({ err }, "rate limiter failed; create allowed"),
          }),
        ]),
  ];

  let tls: TlsMaterial | undefined;
  if (config.tls !== undefined) {
    tls = new TlsMaterial({
      cert: config.tls.cert,
      key: config.tls.key,
      requireClientCert: config.tls.requireClientCert,
      ...(config.tls.clientCa === undefined ? {} : { clientCa: config.tls.clientCa }),
    });
    await tls.load();
    const material = tls;
    opened.add("TLS file watch", () => material.close());
    tls.watch(
      (err) =>
        logger.error({ err: (err as Error).message }, "TLS reload failed; keeping the current certificates"),
      () => logger.info("TLS certificates reloaded"),
    );
  }

  const grpcHost = createGrpcServer({
    services,
    interceptors,
    maxReceiveMessageLength: config.maxMessageBytes,
    connections: {
      maxAgeMs: config.limits.maxConnectionAgeMs,
      maxAgeGraceMs: config.limits.maxConnectionAgeGraceMs,
      idleTimeoutMs: config.limits.idleTimeoutMs,
      pingTimeoutMs: config.limits.handshakeTimeoutMs,
    },
  });
  opened.add("gRPC server", () => grpcHost.server.forceShutdown());
  const credentials =
    tls === undefined
      ? grpc.ServerCredentials.createInsecure()
      : grpc.experimental.createCertificateProviderServerCredentials(
          tls,
          tls.files.clientCa === undefined ? null : tls,
          tls.files.requireClientCert,
        );
  const grpcPort = await new Promise<number>((resolve, reject) =>
    grpcHost.server.bindAsync(
      hostPort(config.grpcListen.host, config.grpcListen.port),
      credentials,
      (err, port) =>
        err
          ? reject(
              new Error(
                `cannot listen for gRPC on ${hostPort(config.grpcListen.host, config.grpcListen.port)}: ${err.message}`,
              ),
            )
          : resolve(port),
    ),
  );

  guardGrpcConnections(
    grpcHost.server,
    config.limits,
    (event) => observability.metrics.connectionClosed("grpc", event),
    logger,
  );

  // One serving status for both ports' grpc.health.v1.
  const health = new HealthStatus([grpcHost.health]);
  const connectServer = createConnectServer({
    services,
    interceptors,
    health,
    readMaxBytes: config.maxMessageBytes,
    ...(tls === undefined ? {} : { tls }),
    limits: config.limits,
    onConnectionEvent: (event) => observability.metrics.connectionClosed("connect", event),
  });
  const connectPort = await listen(connectServer, config.connectListen.host, config.connectListen.port);
  opened.add("Connect server", () => closeConnectServer(connectServer, 0));

  let slackGateway: SlackGateway | undefined;
  if (config.slack !== undefined) {
    slackGateway = await startInProcessSlackGateway(config.slack, {
      clock,
      logger: logger.child({ component: "slack" }),
      claims,
      approvalService,
      interceptors,
      operations,
      deps: slackDeps(
        { ...sharedSlackState(redisBackend), ...deps.slack },
        logger,
        observability.slackListener,
      ),
    });
    const started = slackGateway;
    opened.add("Slack gateway", () => started.close());
  } else {
    logger.info("Slack gateway off: SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET are not set");
  }

  let dataLossLogged = false;
  // The Slack gateway's "queue not stuck" check joins these when the gateway runs in this process.
  const readiness: Record<string, ReadinessCheck> = {
    policy: async () => (policies.current() === undefined ? "no policy loaded" : undefined),
    store: async () => {
      try {
        await store.ping();
      } catch (err) {
        if (err instanceof StoreDataLostError && !dataLossLogged) {
          dataLossLogged = true;
          logger.error({ err: err.message }, "the approval store lost its data; not ready");
        }
        throw err;
      }
      return undefined;
    },
  };
  readiness.audit = async () => {
    const reason = observability.audit.unavailableReason();
    return reason === undefined ? undefined : `audit log unavailable: ${reason}`;
  };
  if (redisBackend !== undefined)
    readiness.clock = clockSkewReadiness(redisBackend.connections.command, {
      host: hostClock,
      onMeasured: (measured) => redisTime?.observe(measured),
      maxSkewMs: config.maxClockSkewMs,
      metrics: observability.metrics,
      logger,
    });
  if (slackGateway !== undefined) readiness.slack = slackReadiness(slackGateway);
  if (sync !== undefined) readiness.policies = policyAgreementReadiness(sync);
  // grpc.health.v1 follows readiness: on every /readyz and every 5 s.
  const readinessMonitor = createReadinessMonitor({
    checks: readiness,
    health,
    services: [ApprovalService.typeName, AdminService.typeName],
    onChange: (result) => logger.info({ ready: result.ready, checks: result.checks }, "readiness changed"),
  });
  const opsServer = createOpsServer({
    version,
    readiness,
    onReadiness: (result) => readinessMonitor.report(result),
    routes: observability.opsRoutes,
  });
  const opsPort = await listen(opsServer, config.opsListen.host, config.opsListen.port);
  opened.add("ops endpoint", () => closeHttpServer(opsServer));

  const scheduler = createScheduler({
    store: observability.schedulerStore(store),
    operations,
    clock,
    ...(observability.tracing === undefined ? {} : { tracer: observability.tracing.tracer }),
    onError: (err) => {
      // While the store is down every run fails the same way: say so once in a while, not 4 times a second.
      if (err instanceof UnavailableError && clock.now() - lastUnavailableLog < 30_000) return;
      if (err instanceof UnavailableError) lastUnavailableLog = clock.now();
      logger.error({ err }, "scheduler run failed");
    },
    ...(config.archiveDir === undefined
      ? {}
      : {
          retention: createRetention({
            store,
            claims,
            clock,
            archive: createArchiveWriter({ dir: config.archiveDir }),
            retentionMs: config.retentionMs,
            observer: observability.metrics.retention,
            ...(observability.tracing === undefined ? {} : { tracer: observability.tracing.tracer }),
          }),
        }),
  });
  let lastUnavailableLog = Number.NEGATIVE_INFINITY;
  if (config.archiveDir === undefined)
    logger.warn("no --archive-dir: finished approvals are kept in the store, never archived or purged");
  scheduler.start();
  sync?.start();
  readinessMonitor.start();
  if (config.watchPolicy) policies.watch();

  const scheme = tls === undefined ? "http" : "https";
  const running: RunningServer = {
    grpcAddress: hostPort(config.grpcListen.host, grpcPort),
    connectUrl: `${scheme}://${hostPort(config.connectListen.host, connectPort)}`,
    opsUrl: `http://${hostPort(config.opsListen.host, opsPort)}`,
    operations,
    store,
    claims,
    ...(slackGateway?.eventsUrl === undefined ? {} : { slackEventsUrl: slackGateway.eventsUrl }),
    async reloadPolicies() {
      // The outcome, good or bad, is logged by onReload.
      await reloader.reload({ dryRun: false }).catch(() => undefined);
    },
    reopenAuditLog() {
      observability.audit.reopen();
    },
    async close() {
      // Graceful: report not serving, end open watches with UNAVAILABLE (clients resume on another
      // replica), stop accepting, let calls in flight finish (bounded), then release everything.
      readinessMonitor.stop();
      await slackGateway?.close();
      await scheduler.stop();
      operations.shutdown();
      await Promise.all([
        new Promise<void>((resolve) => {
          const force = setTimeout(() => grpcHost.server.forceShutdown(), shutdownGraceMs);
          grpcHost.server.tryShutdown(() => {
            clearTimeout(force);
            resolve();
          });
        }),
        closeConnectServer(connectServer, shutdownGraceMs),
      ]);
      await closeHttpServer(opsServer);
      tls?.close();
      await policies.close();
      await sync?.close();
      // The audit log first: its last checkpoint goes to the store (Redis) before that closes.
      await observability.close();
      await store.close();
    },
  };
  logger.info(
    {
      version,
      grpc: running.grpcAddress,
      connect: running.connectUrl,
      ops: running.opsUrl,
      tls: tls !== undefined,
    },
    "countersign is serving",
  );
  return running;
}

/**
 * With Redis, the gateway's message records and leases live there, shared by every replica (and every
 * gateway process): whichever replica holds an approval's lease sees what the others posted, so each
 * approval is posted once. Without Redis they stay in the gateway's memory (one replica).
 */
function sharedSlackState(
  backend: RedisBackend | undefined,
): Pick<SlackGatewayDependencies, "messages" | "leases"> {
  if (backend === undefined) return {};
  return {
    messages: createRedisSlackMessageStore(backend.connections),
    leases: createRedisLeases(backend.connections),
  };
}

/** Audit, metrics and tracing as configured; audit checkpoints go to Redis when there is one. */
function observabilityOptions(
  config: ServeConfig,
  deps: ServerDependencies,
  { clock, logger, redisBackend }: { clock: Clock; logger: Logger; redisBackend: RedisBackend | undefined },
): ObservabilityOptions {
  return {
    clock,
    logger,
    ...(config.auditFile === undefined ? {} : { auditDestination: config.auditFile }),
    ...(config.auditKey === undefined ? {} : { auditKey: config.auditKey }),
    auditCheckpointMs: config.auditCheckpointMs,
    securitySummaryMs: config.securitySummaryMs,
    auditCheckpoints:
      redisBackend === undefined || config.redis === undefined
        ? createMemoryCheckpointStore()
        : createRedisCheckpointStore(redisBackend.connections.command, config.redis.keyPrefix),
    ...(deps.spanExporter !== undefined
      ? { tracing: { exporter: deps.spanExporter, batch: false } }
      : config.tracing === undefined
        ? {}
        : { tracing: { exporter: config.tracing.exporter } }),
  };
}

/** The gateway's dependencies: its events are counted and audited, its security events logged. */
function slackDeps(
  deps: SlackGatewayDependencies | undefined,
  logger: Logger,
  observe: (event: SlackGatewayEvent) => void,
): SlackGatewayDependencies {
  const onEvent = (event: SlackGatewayEvent) => {
    // Security events are logged by `observe`, aggregated (see `createSecurityThrottle`).
    observe(event);
    if (event.type === "post_failed")
      logger.error(
        {
          approval_id: event.approvalId,
          message_key: event.key,
          method: event.method,
          slack_error: event.error,
        },
        "Slack refused a post for good: the approvers were not notified there",
      );
    deps?.onEvent?.(event);
  };
  return { ...deps, onEvent };
}

/**
 * Measures this host's clock against Redis's at each readiness check (the gauge
 * `countersign_clock_skew_seconds`) and hands each measurement to `onMeasured` (which keeps the
 * deadline clock to Redis's time). Not ready while the skew exceeds `maxSkewMs` beyond the measurement's
 * uncertainty (half the round trip): the host clock is broken, and what still reads it (log and TLS
 * times, Slack request timestamps, the moments before the first measurement) is wrong. An unreachable
 * Redis is the store check's to report.
 */
function clockSkewReadiness(
  redis: RedisConnections["command"],
  options: {
    host: Clock;
    maxSkewMs: number;
    metrics: Metrics;
    logger: Logger;
    onMeasured: (measured: ClockSkew) => void;
  },
): ReadinessCheck {
  const { host, maxSkewMs, metrics, logger } = options;
  let skewed = false;
  return async () => {
    let measured: ClockSkew;
    try {
      measured = await measureClockSkew(redis, host);
    } catch (err) {
      if (err instanceof UnavailableError) return undefined;
      throw err;
    }
    options.onMeasured(measured);
    const { skewMs, roundTripMs } = measured;
    metrics.clockSkew(skewMs / 1000);
    const over = maxSkewMs > 0 && Math.abs(skewMs) - roundTripMs / 2 > maxSkewMs;
    const fields = {
      skew_ms: Math.round(skewMs),
      round_trip_ms: Math.round(roundTripMs),
      max_skew_ms: maxSkewMs,
    };
    if (over && !skewed) logger.error(fields, "this host's clock is off from Redis's; not ready");
    if (!over && skewed) logger.info(fields, "this host's clock agrees with Redis's again");
    skewed = over;
    if (!over) return undefined;
    return `this host's clock is ${(Math.abs(skewMs) / 1000).toFixed(1)} s ${skewMs > 0 ? "ahead of" : "behind"} Redis's (TIME), more than --max-clock-skew ${formatDuration(maxSkewMs)}; fix its time sync (NTP)`;
  };
}

/** Ready once the gateway has read the pending approvals (a slow Slack does not make the API unready). */
function slackReadiness(gateway: SlackGateway): ReadinessCheck {
  return async () =>
    gateway.ready() ? undefined : "the Slack gateway has not read the pending approvals yet";
}

/** A Slack gateway running as its own process (`countersign serve --components slack`). */
export interface RunningSlackGateway {
  /** URL of the interactivity endpoint; undefined in Socket Mode. */
  slackEventsUrl: string | undefined;
  /** Base URL of the ops endpoint. */
  opsUrl: string;
  /** Stops the gateway and the ops endpoint. */
  close(): Promise<void>;
}

/**
 * The composition root of a Slack gateway in its own process: it watches every approval and submits
 * decisions over gRPC (mutual TLS) to `--api-url`; only the ops endpoint runs besides it.
 * @throws Error when the configuration has no Slack gateway, a TLS file cannot be read, or Slack
 *   rejects the bot token
 */
export async function startSlackGatewayProcess(
  config: ServeConfig,
  deps: ServerDependencies = {},
): Promise<RunningSlackGateway> {
  if (config.slack === undefined) throw new Error("no Slack gateway is configured");
  const logger = deps.logger ?? pino({ level: config.logLevel, base: { service: "countersign" } });
  const clock = deps.clock ?? systemClock;
  const redisBackend =
    config.redis === undefined
      ? undefined
      : openRedisBackend(config.redis, logger, (err) => logger.error({ err }, "change listener failed"));
  const opened = new OpenedResources();
  if (redisBackend !== undefined) opened.add("Redis", () => redisBackend.store.close());
  const claims = redisBackend?.claims ?? createMemoryClaims(() => clock.now());
  let gateway: SlackGateway;
  let observability: Observability;
  let opsServer: http.Server;
  let opsPort: number;
  try {
    // Its own audit chain, metrics and spans: what it posts, reminds and escalates, and Slack's answers.
    observability = await createObservability(
      observabilityOptions(config, deps, { clock, logger, redisBackend }),
    );
    const observed = observability;
    opened.add("audit log and tracing", () => observed.close());
    gateway = await startRemoteSlackGateway(config.slack, {
      clock,
      logger: logger.child({ component: "slack" }),
      claims,
      deps: slackDeps(
        { ...sharedSlackState(redisBackend), ...deps.slack },
        logger,
        observability.slackListener,
      ),
    });
    const started = gateway;
    opened.add("Slack gateway", () => started.close());
    opsServer = createOpsServer({
      version,
      readiness: { slack: slackReadiness(gateway) },
      routes: observability.opsRoutes,
    });
    opsPort = await listen(opsServer, config.opsListen.host, config.opsListen.port);
  } catch (err) {
    await opened.closeAll(logger);
    throw err;
  }
  const running: RunningSlackGateway = {
    slackEventsUrl: gateway.eventsUrl,
    opsUrl: `http://${hostPort(config.opsListen.host, opsPort)}`,
    async close() {
      await gateway.close();
      await closeHttpServer(opsServer);
      await observability.close();
      await redisBackend?.store.close();
    },
  };
  logger.info({ version, slack: running.slackEventsUrl, ops: running.opsUrl }, "Slack gateway is serving");
  return running;
}
