import type * as http from "node:http";
import type { AddressInfo } from "node:net";
import type { Interceptor } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { type Logger, pino } from "pino";
import { AdminService } from "../gen/countersign/v1/admin_service_pb.js";
import { ApprovalService } from "../gen/countersign/v1/approval_service_pb.js";
import type { ServeConfig } from "./config/config.js";
import { type Clock, systemClock } from "./domain/clock.js";
import { createPolicyHolder } from "./policy/policy-holder.js";
import { createScheduler } from "./scheduler/scheduler.js";
import { createAdminService } from "./services/admin-service.js";
import { type ApprovalOperations, createApprovalOperations } from "./services/approval-operations.js";
import { createApprovalService } from "./services/approval-service.js";
import type { ApprovalStore } from "./store/approval-store.js";
import { createMemoryApprovalStore } from "./store/memory-approval-store.js";
import { closeConnectServer, createConnectServer } from "./transport/connect-server.js";
import { createGrpcServer, type HostedService, hostService } from "./transport/grpc-server.js";
import { createAdminAuthInterceptor, createIdentityInterceptor } from "./transport/interceptors.js";
import { createOpsServer } from "./transport/ops-server.js";
import { createRateLimitInterceptor, createTokenBucket } from "./transport/rate-limit.js";
import { TlsMaterial } from "./transport/tls.js";

/** Things a test or an embedding program may replace. */
export interface ServerDependencies {
  logger?: Logger;
  clock?: Clock;
  store?: ApprovalStore;
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
  /** Re-reads the policy file (as SIGHUP does); a bad file keeps the current set. */
  reloadPolicies(): Promise<void>;
  /** Stops accepting calls, ends open streams and releases everything. */
  close(): Promise<void>;
}

function listen(server: http.Server | import("node:http2").Http2SecureServer, host: string, port: number) {
  return new Promise<number>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

function hostPort(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * The composition root: builds the store, policies, services and both transports from the
 * configuration, and starts them.
 */
export async function startServer(
  config: ServeConfig,
  deps: ServerDependencies = {},
): Promise<RunningServer> {
  const logger = deps.logger ?? pino({ level: config.logLevel, base: { service: "countersign" } });
  const clock = deps.clock ?? systemClock;

  const policies = createPolicyHolder({
    path: config.policyFile,
    onReload: (event) => {
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
    },
    onWatchError: (err) => logger.error({ err: err.message }, "policy file watch failed"),
  });
  const loaded = await policies.load();
  logger.info(
    { policy_sha256: loaded.sha256, policies: loaded.policySet.policies.length },
    "policies loaded",
  );

  const store =
    deps.store ??
    createMemoryApprovalStore({
      onListenerError: (err) => logger.error({ err }, "change listener failed"),
    });
  const operations = createApprovalOperations({ store, policies, clock });
  const services: HostedService[] = [
    hostService(ApprovalService, createApprovalService({ operations, heartbeatMs: config.heartbeatMs })),
    hostService(AdminService, createAdminService({ operations, store, policies, clock })),
  ];
  const interceptors: Interceptor[] = [
    createIdentityInterceptor({
      ...(config.developmentIdentity === undefined
        ? {}
        : { developmentIdentity: config.developmentIdentity }),
      requesters: config.requesters,
      deciders: config.deciders,
    }),
    createAdminAuthInterceptor({
      token: config.adminToken,
      onRefused: (reason) => logger.warn({ security_event: "bad_admin_token", reason }, "admin call refused"),
    }),
    ...(config.createRateLimit === undefined
      ? []
      : [
          createRateLimitInterceptor({
            bucket: createTokenBucket(config.createRateLimit),
            trustedProxies: config.trustedProxies,
            onLimited: (client) =>
              logger.warn({ security_event: "rate_limited", client }, "create rate limited"),
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
  });
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

  const connectServer = createConnectServer({
    services,
    interceptors,
    readMaxBytes: config.maxMessageBytes,
    ...(tls === undefined ? {} : { tls }),
  });
  const connectPort = await listen(connectServer, config.connectListen.host, config.connectListen.port);

  const opsServer = createOpsServer({
    readiness: {
      policy: async () => (policies.current() === undefined ? "no policy loaded" : undefined),
      store: async () => {
        await store.ping();
        return undefined;
      },
    },
  });
  const opsPort = await listen(opsServer, config.opsListen.host, config.opsListen.port);

  const scheduler = createScheduler({
    store,
    operations,
    clock,
    onError: (err) => logger.error({ err }, "scheduler run failed"),
  });
  scheduler.start();
  if (config.watchPolicy) policies.watch();

  const scheme = tls === undefined ? "http" : "https";
  const running: RunningServer = {
    grpcAddress: hostPort(config.grpcListen.host, grpcPort),
    connectUrl: `${scheme}://${hostPort(config.connectListen.host, connectPort)}`,
    opsUrl: `http://${hostPort(config.opsListen.host, opsPort)}`,
    operations,
    store,
    async reloadPolicies() {
      // The outcome, good or bad, is logged by onReload.
      await policies.reload({ dryRun: false }).catch(() => undefined);
    },
    async close() {
      // Graceful: report not serving, end open watches with UNAVAILABLE (clients resume on another
      // replica), stop accepting, let calls in flight finish (bounded), then release everything.
      grpcHost.health.setStatus("", "NOT_SERVING");
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
      await new Promise<void>((resolve) => {
        opsServer.close(() => resolve());
        opsServer.closeAllConnections();
      });
      tls?.close();
      await policies.close();
      await store.close();
    },
  };
  logger.info(
    { grpc: running.grpcAddress, connect: running.connectUrl, ops: running.opsUrl, tls: tls !== undefined },
    "countersign is serving",
  );
  return running;
}
