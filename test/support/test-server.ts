import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { SpanExporter } from "@opentelemetry/sdk-trace-base";
import { type Logger, pino } from "pino";
import { loadServeConfig, type ServeFlags } from "../../server/config/config.js";
import type { Clock } from "../../server/domain/clock.js";
import { type RunningServer, type ServerDependencies, startServer } from "../../server/main.js";
import type { SlackGatewayDependencies } from "../../server/slack/start-slack-gateway.js";
import type { ApprovalStore } from "../../server/store/approval-store.js";
import type { Pem, TestPki } from "./certs.js";
import { createClientFactory, type Protocol, type TestClients } from "./clients.js";

export type { Protocol } from "./clients.js";

/** A policy file for the integration tests. */
export const testPolicy = `
version: 1
defaults:
  channel: C0DEFAULT
  timeout: 10m
  unknown_action: deny
  super_approvers: [UADMIN]
policies:
  - name: production-deploy
    match: "deploy.production*"
    approvers: { users: [U1, U2, U3] }
    required_approvals: 2
    timeout: 30m
  - name: staging-deploy
    match: "deploy.staging"
    approvers: { users: [U1, U2] }
    required_approvals: 1
    deny_reason_required: true
    overrides:
      keys: [version]
      max_keys: 1
      max_diff_bytes: 64
      schema: { type: object, properties: { version: { type: string, pattern: "^v[0-9]+" } } }
    rerequest: { allowed: true, cooldown: 0s, max_per_day: 2 }
  - name: db-migrate
    match: "db.migrate"
    approvers: { users: [U1, U2] }
    stages:
      - { name: qa, users: [UQA], required: 1 }
    required_approvals: 1
`;

/** A server started for a test, with a way to make clients for every identity and protocol. */
export interface TestServer {
  server: RunningServer;
  policyPath: string;
  /** The audit log file (unless `flags.auditFile` chose another). */
  auditPath: string;
  /** Clients for a certificate (undefined: none) over a protocol. */
  clients(
    identity: Pem | undefined,
    protocol: Protocol,
    options?: { ca?: string; headers?: Record<string, string> },
  ): TestClients;
  close(): Promise<void>;
}

/** Starts the real server on port 0 with the PKI's certificates (mutual TLS required unless told otherwise). */
export async function startTestServer(options: {
  pki?: TestPki;
  flags?: ServeFlags;
  policy?: string;
  env?: NodeJS.ProcessEnv;
  clock?: Clock;
  /** The server's logger; silent unless given. */
  logger?: Logger;
  /** This host's clock as compared with Redis's (`ServerDependencies.hostClock`). */
  hostClock?: Clock;
  store?: ApprovalStore;
  /** Trace to this exporter (e.g. an in-memory one). */
  spanExporter?: SpanExporter;
  /** The Slack gateway's event listener, stores and timings (with SLACK_* in `env`). */
  slack?: SlackGatewayDependencies;
  /** Parses policy documents (`ServerDependencies.parsePolicies`). */
  parsePolicies?: ServerDependencies["parsePolicies"];
}): Promise<TestServer> {
  const dir = mkdtempSync(join(tmpdir(), "countersign-test-"));
  const policyPath = join(dir, "policies.yaml");
  writeFileSync(policyPath, options.policy ?? testPolicy);
  const pki = options.pki;
  const flags: ServeFlags = {
    grpcListen: "127.0.0.1:0",
    connectListen: "127.0.0.1:0",
    opsListen: "127.0.0.1:0",
    policy: policyPath,
    createRateLimit: "0",
    auditFile: join(dir, "audit.jsonl"),
    ...(pki === undefined
      ? {}
      : {
          tlsCert: pki.paths.serverCert,
          tlsKey: pki.paths.serverKey,
          tlsClientCa: pki.paths.ca,
          requireClientCert: true,
        }),
    ...options.flags,
  };
  const config = loadServeConfig(flags, options.env ?? {});
  const server = await startServer(config, {
    logger: options.logger ?? pino({ level: "silent" }),
    ...(options.clock === undefined ? {} : { clock: options.clock }),
    ...(options.hostClock === undefined ? {} : { hostClock: options.hostClock }),
    ...(options.store === undefined ? {} : { store: options.store }),
    ...(options.spanExporter === undefined ? {} : { spanExporter: options.spanExporter }),
    ...(options.slack === undefined ? {} : { slack: options.slack }),
    ...(options.parsePolicies === undefined ? {} : { parsePolicies: options.parsePolicies }),
  });
  const factory = createClientFactory({
    grpcAddress: server.grpcAddress,
    connectUrl: server.connectUrl,
    ca: pki?.ca,
  });

  return {
    server,
    policyPath,
    auditPath: flags.auditFile ?? join(dir, "audit.jsonl"),
    clients: factory.clients,
    async close() {
      factory.close();
      await server.close();
    },
  };
}
