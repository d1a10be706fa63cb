import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Client, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { pino } from "pino";
import { AdminService } from "../../gen/countersign/v1/admin_service_pb.js";
import { ApprovalService } from "../../gen/countersign/v1/approval_service_pb.js";
import { loadServeConfig, type ServeFlags } from "../../server/config/config.js";
import type { Clock } from "../../server/domain/clock.js";
import { type RunningServer, startServer } from "../../server/main.js";
import type { ApprovalStore } from "../../server/store/approval-store.js";
import type { Pem, TestPki } from "./certs.js";
import { createGrpcJsTransport } from "./grpc-js-transport.js";

/** The transports the tests drive every RPC through. */
export type Protocol = "grpc" | "connect" | "grpc-web";

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
  /** Clients for a certificate (undefined: none) over a protocol. */
  clients(
    identity: Pem | undefined,
    protocol: Protocol,
    options?: { ca?: string; headers?: Record<string, string> },
  ): {
    approvals: Client<typeof ApprovalService>;
    admin: Client<typeof AdminService>;
  };
  close(): Promise<void>;
}

/** Starts the real server on port 0 with the PKI's certificates (mutual TLS required unless told otherwise). */
export async function startTestServer(options: {
  pki?: TestPki;
  flags?: ServeFlags;
  policy?: string;
  env?: NodeJS.ProcessEnv;
  clock?: Clock;
  store?: ApprovalStore;
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
    logger: pino({ level: "silent" }),
    ...(options.clock === undefined ? {} : { clock: options.clock }),
    ...(options.store === undefined ? {} : { store: options.store }),
  });
  const transports: { close(): void }[] = [];

  const clients: TestServer["clients"] = (identity, protocol, clientOptions = {}) => {
    const ca = clientOptions.ca ?? pki?.ca;
    let transport: Transport;
    if (protocol === "grpc") {
      const credentials =
        pki === undefined
          ? grpc.credentials.createInsecure()
          : grpc.credentials.createSsl(
              Buffer.from(ca ?? ""),
              identity ? Buffer.from(identity.key) : null,
              identity ? Buffer.from(identity.cert) : null,
            );
      const t = createGrpcJsTransport({ address: server.grpcAddress, credentials });
      transports.push(t);
      transport = t;
    } else {
      const nodeOptions =
        pki === undefined ? {} : { ca, ...(identity ? { cert: identity.cert, key: identity.key } : {}) };
      const common = { baseUrl: server.connectUrl, httpVersion: "2" as const, nodeOptions };
      transport = protocol === "connect" ? createConnectTransport(common) : createGrpcWebTransport(common);
    }
    const withHeaders = clientOptions.headers;
    if (withHeaders !== undefined) {
      const inner = transport;
      transport = {
        unary: (m, s, t, h, i, c) =>
          inner.unary(m, s, t, { ...Object.fromEntries(new Headers(h)), ...withHeaders }, i, c),
        stream: (m, s, t, h, i, c) =>
          inner.stream(m, s, t, { ...Object.fromEntries(new Headers(h)), ...withHeaders }, i, c),
      };
    }
    return {
      approvals: createClient(ApprovalService, transport),
      admin: createClient(AdminService, transport),
    };
  };

  return {
    server,
    policyPath,
    clients,
    async close() {
      for (const t of transports) t.close();
      await server.close();
    },
  };
}
