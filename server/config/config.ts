import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import { minAuditKeyLength } from "../audit/audit-record.js";
import { parseDuration } from "../policy/duration.js";
import type { RedisSettings } from "../store/redis-connection.js";
import { type IdentitySource, identitySources } from "../transport/peer.js";

/** A `host:port` to listen on. */
export interface ListenAddress {
  host: string;
  port: number;
}

/** Everything `countersign serve` needs, validated. */
export interface ServeConfig {
  grpcListen: ListenAddress;
  connectListen: ListenAddress;
  opsListen: ListenAddress;
  policyFile: string;
  /** Re-read the policy file when it changes. */
  watchPolicy: boolean;
  /** Absent in development mode. */
  tls?: { cert: string; key: string; clientCa?: string; requireClientCert: boolean };
  /** The identity every caller gets in development mode (no TLS). */
  developmentIdentity?: string;
  requesters: string[] | "any";
  deciders: string[];
  /** Where in a client certificate the caller's identity comes from, in order (`--identity-from`). */
  identitySources: IdentitySource[];
  adminToken?: string;
  heartbeatMs: number;
  /** Approval store: `memory` (one process) or `redis` (see `redis`). */
  store: "memory" | "redis";
  /** Where Redis is, with `store: "redis"`. */
  redis?: RedisSettings;
  /** Directory of the JSONL archive; retention (archive, then purge) runs only when it is set. */
  archiveDir?: string;
  /** How long terminal approvals stay in the store before they are archived and purged. */
  retentionMs: number;
  maxMessageBytes: number;
  logLevel: string;
  /** Create rate limit per client; undefined when disabled (`--create-rate-limit 0`). */
  createRateLimit?: { perSecond: number; burst: number };
  /** Proxies whose x-forwarded-for header is trusted. */
  trustedProxies: string[];
  /** File the audit log is appended to; undefined: stdout. */
  auditFile?: string;
  /**
   * The secret that seals the audit log (HMAC-SHA-256), from `AUDIT_KEY` / `AUDIT_KEY_FILE`; undefined:
   * the chain is unkeyed (tamper-evident only against accidents).
   */
  auditKey?: string;
  /** How often a checkpoint of the audit log's head is taken (kept in the store and logged). */
  auditCheckpointMs: number;
  /** Interval of the security summaries: refused calls of one type and peer after the first are counted. */
  securitySummaryMs: number;
  /**
   * How far this host's clock may be from Redis's (`TIME`) before the server reports not ready; 0: never
   * unready (the skew is still measured). Only with the Redis store.
   */
  maxClockSkewMs: number;
  /** OpenTelemetry tracing, from the standard `OTEL_*` variables; undefined: off. */
  tracing?: TracingConfig;
  /** What runs in this process: the API (gRPC, Connect, scheduler) and the Slack gateway. */
  components: { api: boolean; slack: boolean };
  /** The Slack gateway's settings; undefined when it does not run. */
  slack?: SlackConfig;
  /** Caps on watch streams and connections, and connection timeouts, on both API ports. */
  limits: ConnectionLimits;
  /** Host `countersign.bench.v1.EchoService`, the benchmark's floor (`--bench-echo`). @default false */
  benchEcho?: boolean;
}

/** Caps and timeouts that keep one client (or many slow ones) from exhausting the server. */
export interface ConnectionLimits {
  /** Most watch streams one identity may have open (`--max-streams-per-identity`). */
  maxStreamsPerIdentity: number;
  /** Most watch streams open on the server (`--max-streams`). */
  maxStreams: number;
  /** Connections older than this are asked to go away (GOAWAY), then closed after the grace. */
  maxConnectionAgeMs: number;
  /** How long calls on a connection past its age may go on before it is closed. */
  maxConnectionAgeGraceMs: number;
  /** A connection must finish TLS and send its first request within this time. */
  handshakeTimeoutMs: number;
  /** A connection with no call open for this long is closed. */
  idleTimeoutMs: number;
  /** Most connections open per port. */
  maxConnections: number;
  /** Most connections open per port from one peer address. */
  maxConnectionsPerPeer: number;
}

/** The Slack gateway's settings (SPEC C5). */
export interface SlackConfig {
  /** `SLACK_BOT_TOKEN` (xoxb-…). */
  botToken: string;
  /** `SLACK_SIGNING_SECRET`. */
  signingSecret: string;
  /** `SLACK_APP_TOKEN` (xapp-…): Socket Mode instead of the HTTP endpoint. */
  appToken?: string;
  /** `SLACK_API_URL`: base URL of the Slack Web API (e.g. a test double). */
  webApiUrl?: string;
  /** Where the interactivity endpoint (`/slack/events`) listens. */
  listen: ListenAddress;
  /** When the gateway runs without the API (`--components slack`): the API it calls over gRPC. */
  api?: { url: string; tls?: { cert: string; key: string; ca?: string } };
}

/** Tracing as the OpenTelemetry variables configure it. */
export interface TracingConfig {
  /** `otlp`: OTLP over HTTP, endpoint and headers from `OTEL_EXPORTER_OTLP_*`; `console`: stdout. */
  exporter: "otlp" | "console";
}

/** Raw `serve` options as the command line gives them (strings; undefined when not given). */
export interface ServeFlags {
  grpcListen?: string;
  connectListen?: string;
  opsListen?: string;
  policy?: string;
  watchPolicy?: boolean;
  tlsCert?: string;
  tlsKey?: string;
  tlsClientCa?: string;
  requireClientCert?: boolean;
  requesters?: string;
  deciders?: string;
  identityFrom?: string;
  heartbeatInterval?: string;
  store?: string;
  redisSentinels?: string;
  redisMasterName?: string;
  redisTimeout?: string;
  redisWaitReplicas?: string;
  redisTlsCa?: string;
  redisKeyPrefix?: string;
  archiveDir?: string;
  retention?: string;
  maxMessageBytes?: string;
  logLevel?: string;
  createRateLimit?: string;
  createBurst?: string;
  trustedProxies?: string;
  auditFile?: string;
  auditCheckpointInterval?: string;
  securitySummaryInterval?: string;
  maxClockSkew?: string;
  components?: string;
  slackListen?: string;
  apiUrl?: string;
  apiTlsCert?: string;
  apiTlsKey?: string;
  apiTlsCa?: string;
  maxStreamsPerIdentity?: string;
  maxStreams?: string;
  maxConnectionAge?: string;
  maxConnectionAgeGrace?: string;
  handshakeTimeout?: string;
  idleTimeout?: string;
  maxConnections?: string;
  maxConnectionsPerPeer?: string;
  benchEcho?: boolean;
}

/** Environment variables that mirror each flag. */
export const serveEnv: Record<keyof ServeFlags, string> = {
  grpcListen: "COUNTERSIGN_GRPC_LISTEN",
  connectListen: "COUNTERSIGN_CONNECT_LISTEN",
  opsListen: "COUNTERSIGN_OPS_LISTEN",
  policy: "COUNTERSIGN_POLICY",
  watchPolicy: "COUNTERSIGN_WATCH_POLICY",
  tlsCert: "COUNTERSIGN_TLS_CERT",
  tlsKey: "COUNTERSIGN_TLS_KEY",
  tlsClientCa: "COUNTERSIGN_TLS_CLIENT_CA",
  requireClientCert: "COUNTERSIGN_REQUIRE_CLIENT_CERT",
  requesters: "COUNTERSIGN_REQUESTERS",
  deciders: "COUNTERSIGN_DECIDERS",
  identityFrom: "COUNTERSIGN_IDENTITY_FROM",
  heartbeatInterval: "COUNTERSIGN_HEARTBEAT_INTERVAL",
  store: "COUNTERSIGN_STORE",
  redisSentinels: "COUNTERSIGN_REDIS_SENTINELS",
  redisMasterName: "COUNTERSIGN_REDIS_MASTER_NAME",
  redisTimeout: "COUNTERSIGN_REDIS_TIMEOUT",
  redisWaitReplicas: "COUNTERSIGN_REDIS_WAIT_REPLICAS",
  redisTlsCa: "COUNTERSIGN_REDIS_TLS_CA",
  redisKeyPrefix: "COUNTERSIGN_REDIS_KEY_PREFIX",
  archiveDir: "COUNTERSIGN_ARCHIVE_DIR",
  retention: "COUNTERSIGN_RETENTION",
  maxMessageBytes: "COUNTERSIGN_MAX_MESSAGE_BYTES",
  logLevel: "COUNTERSIGN_LOG_LEVEL",
  createRateLimit: "COUNTERSIGN_CREATE_RATE_LIMIT",
  createBurst: "COUNTERSIGN_CREATE_BURST",
  trustedProxies: "COUNTERSIGN_TRUSTED_PROXIES",
  auditFile: "COUNTERSIGN_AUDIT_FILE",
  auditCheckpointInterval: "COUNTERSIGN_AUDIT_CHECKPOINT_INTERVAL",
  securitySummaryInterval: "COUNTERSIGN_SECURITY_SUMMARY_INTERVAL",
  maxClockSkew: "COUNTERSIGN_MAX_CLOCK_SKEW",
  components: "COUNTERSIGN_COMPONENTS",
  slackListen: "COUNTERSIGN_SLACK_LISTEN",
  apiUrl: "COUNTERSIGN_API_URL",
  apiTlsCert: "COUNTERSIGN_API_TLS_CERT",
  apiTlsKey: "COUNTERSIGN_API_TLS_KEY",
  apiTlsCa: "COUNTERSIGN_API_TLS_CA",
  maxStreamsPerIdentity: "COUNTERSIGN_MAX_STREAMS_PER_IDENTITY",
  maxStreams: "COUNTERSIGN_MAX_STREAMS",
  maxConnectionAge: "COUNTERSIGN_MAX_CONNECTION_AGE",
  maxConnectionAgeGrace: "COUNTERSIGN_MAX_CONNECTION_AGE_GRACE",
  handshakeTimeout: "COUNTERSIGN_HANDSHAKE_TIMEOUT",
  idleTimeout: "COUNTERSIGN_IDLE_TIMEOUT",
  maxConnections: "COUNTERSIGN_MAX_CONNECTIONS",
  maxConnectionsPerPeer: "COUNTERSIGN_MAX_CONNECTIONS_PER_PEER",
  benchEcho: "COUNTERSIGN_BENCH_ECHO",
};

/** Configuration that cannot be used; `problems` has one line per problem. */
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
    this.name = "ConfigError";
  }
}

const defaults = {
  grpcListen: "127.0.0.1:50051",
  connectListen: "127.0.0.1:8080",
  opsListen: "127.0.0.1:9090",
  heartbeatInterval: "15s",
  maxMessageBytes: String(1024 * 1024),
  logLevel: "info",
  maxStreamsPerIdentity: "1000",
  maxStreams: "10000",
  maxConnectionAge: "1h",
  maxConnectionAgeGrace: "1m",
  handshakeTimeout: "10s",
  idleTimeout: "5m",
  maxConnections: "10000",
  maxConnectionsPerPeer: "1000",
};

/** The caps and timeouts of `ConnectionLimits`, from their flags. */
function parseConnectionLimits(
  pick: (key: keyof ServeFlags) => string | undefined,
  problems: string[],
): ConnectionLimits {
  const count = (key: keyof ServeFlags & keyof typeof defaults): number => {
    const text = pick(key) ?? defaults[key];
    const n = Number(text);
    if (!Number.isInteger(n) || n < 1) {
      problems.push(`--${kebab(key)} ${JSON.stringify(text)}: expected a whole number ≥ 1`);
      return Number(defaults[key]);
    }
    return n;
  };
  const duration = (key: keyof ServeFlags & keyof typeof defaults, min: number): number => {
    const text = pick(key) ?? defaults[key];
    try {
      const ms = parseDuration(text);
      if (ms < min) problems.push(`--${kebab(key)} must be at least ${min} ms`);
      return ms;
    } catch (err) {
      problems.push(`--${kebab(key)}: ${(err as Error).message}`);
      return parseDuration(defaults[key]);
    }
  };
  return {
    maxStreamsPerIdentity: count("maxStreamsPerIdentity"),
    maxStreams: count("maxStreams"),
    maxConnectionAgeMs: duration("maxConnectionAge", 1_000),
    maxConnectionAgeGraceMs: duration("maxConnectionAgeGrace", 0),
    handshakeTimeoutMs: duration("handshakeTimeout", 100),
    idleTimeoutMs: duration("idleTimeout", 100),
    maxConnections: count("maxConnections"),
    maxConnectionsPerPeer: count("maxConnectionsPerPeer"),
  };
}

/** The identity of every caller in development mode. */
export const developmentIdentity = "local-dev";

/** True for `localhost`, `::1` and 127.0.0.0/8: addresses only this machine reaches. */
export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || host.startsWith("127.");
}

/**
 * A secret from `NAME` or from the file named by `NAME_FILE` (trailing newline removed); both set is an
 * error.
 */
export function readSecret(env: NodeJS.ProcessEnv, name: string, problems: string[]): string | undefined {
  const direct = env[name];
  const file = env[`${name}_FILE`];
  if (direct !== undefined && file !== undefined) {
    problems.push(`${name} and ${name}_FILE are both set; set one`);
    return undefined;
  }
  if (file !== undefined) {
    try {
      const value = readFileSync(file, "utf8").replace(/\r?\n$/, "");
      if (value === "") problems.push(`${name}_FILE ${file} is empty`);
      return value === "" ? undefined : value;
    } catch (err) {
      problems.push(
        `${name}_FILE: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
      );
      return undefined;
    }
  }
  if (direct === "") {
    problems.push(`${name} is set but empty`);
    return undefined;
  }
  return direct;
}

/** A `host:port` flag (IPv6 in brackets); a problem naming `--name` is added when it is not one. */
export function parseListen(name: string, text: string, problems: string[]): ListenAddress {
  const match = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(text);
  const port = Number(match?.[2]);
  if (match === null || port > 65535) {
    problems.push(`--${name} ${JSON.stringify(text)}: expected host:port, e.g. 127.0.0.1:8080`);
    return { host: "127.0.0.1", port: 0 };
  }
  const host = (match[1] as string).replace(/^\[|\]$/g, "");
  if (host !== "localhost" && isIP(host) === 0 && !/^[A-Za-z0-9.-]+$/.test(host))
    problems.push(`--${name}: ${JSON.stringify(host)} is not a host name or IP address`);
  return { host, port };
}

function parseList(text: string | undefined): string[] {
  return (text ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
}

function parseBool(name: string, text: string, problems: string[]): boolean {
  if (/^(1|true|yes)$/i.test(text)) return true;
  if (/^(0|false|no|)$/i.test(text)) return false;
  problems.push(`${name}=${JSON.stringify(text)}: expected true or false`);
  return false;
}

/**
 * The store settings: `--store memory` (the default), `--store redis://...` / `rediss://...`, or
 * `--redis-sentinels host:port,... --redis-master-name NAME` (with `--store` unset or `redis`). The
 * Redis password comes from `REDIS_PASSWORD` / `REDIS_PASSWORD_FILE` (or the URL).
 */
export function parseStoreSettings(
  pick: (key: keyof ServeFlags) => string | undefined,
  env: NodeJS.ProcessEnv,
  problems: string[],
): { store: "memory" | "redis"; redis?: RedisSettings } {
  const storeText = pick("store");
  const sentinelText = pick("redisSentinels");
  const masterName = pick("redisMasterName");
  const redisFlags = (
    ["redisTimeout", "redisWaitReplicas", "redisTlsCa", "redisKeyPrefix", "redisMasterName"] as const
  ).filter((k) => pick(k) !== undefined);
  const isUrl = storeText !== undefined && /^rediss?:\/\//.test(storeText);
  if (sentinelText === undefined && !isUrl) {
    if (storeText !== undefined && storeText !== "memory")
      problems.push(
        `--store ${JSON.stringify(storeText)}: expected memory, redis://host:port or rediss://host:port (or --redis-sentinels)`,
      );
    else if (redisFlags.length > 0)
      problems.push(
        `--${kebab(redisFlags[0] as string)} needs a Redis store (--store redis://... or --redis-sentinels)`,
      );
    return { store: "memory" };
  }
  const commandTimeoutMs = (() => {
    try {
      const ms = parseDuration(pick("redisTimeout") ?? "2s");
      if (ms < 100 || ms > 60_000) problems.push("--redis-timeout must be between 100ms and 60s");
      return ms;
    } catch (err) {
      problems.push(`--redis-timeout: ${(err as Error).message}`);
      return 2_000;
    }
  })();
  const waitReplicas = Number(pick("redisWaitReplicas") ?? "0");
  if (!Number.isInteger(waitReplicas) || waitReplicas < 0 || waitReplicas > 16)
    problems.push("--redis-wait-replicas must be a whole number between 0 and 16");
  const keyPrefix = pick("redisKeyPrefix") ?? "countersign:";
  if (!/^[A-Za-z0-9:_.{}-]{1,64}$/.test(keyPrefix))
    problems.push("--redis-key-prefix must be 1-64 characters of letters, digits and :_.{}-");
  const password = readSecret(env, "REDIS_PASSWORD", problems);
  const caFile = pick("redisTlsCa");
  let tlsCa: string | undefined;
  if (caFile !== undefined) {
    try {
      tlsCa = readFileSync(caFile, "utf8");
    } catch (err) {
      problems.push(
        `--redis-tls-ca: cannot read ${caFile}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
      );
    }
  }
  const common = {
    commandTimeoutMs,
    waitReplicas,
    keyPrefix,
    ...(password === undefined ? {} : { password }),
    ...(tlsCa === undefined ? {} : { tlsCa }),
  };
  if (sentinelText === undefined) {
    try {
      const url = new URL(storeText as string);
      if (url.hostname === "") throw new Error("no host");
    } catch {
      problems.push(`--store ${JSON.stringify(storeText)}: not a valid redis:// or rediss:// URL`);
    }
    if (caFile !== undefined && !(storeText as string).startsWith("rediss:"))
      problems.push("--redis-tls-ca needs a rediss:// URL");
    return { store: "redis", redis: { url: storeText as string, ...common } };
  }
  if (storeText !== undefined && storeText !== "redis")
    problems.push("--redis-sentinels selects the Redis store: leave --store unset or set it to redis");
  const sentinels = parseList(sentinelText).map((text) => {
    const match = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(text);
    const port = Number(match?.[2]);
    if (match === null || port < 1 || port > 65535) {
      problems.push(`--redis-sentinels: ${JSON.stringify(text)} is not host:port`);
      return { host: "", port: 0 };
    }
    return { host: (match[1] as string).replace(/^\[|\]$/g, ""), port };
  });
  if (sentinels.length === 0) problems.push("--redis-sentinels: give at least one host:port");
  if (masterName === undefined || masterName === "")
    problems.push(
      "--redis-sentinels needs --redis-master-name (the master's name in the Sentinel configuration)",
    );
  if (caFile !== undefined)
    problems.push("--redis-tls-ca is for rediss:// URLs; Sentinel with TLS is not supported");
  return { store: "redis", redis: { sentinels, masterName: masterName ?? "", ...common } };
}

/**
 * The store settings alone, from flags then their environment variables (for commands other than
 * `serve` that open the store, e.g. `countersign archive import`).
 * @throws ConfigError
 */
export function loadStoreConfig(
  flags: ServeFlags,
  env: NodeJS.ProcessEnv,
): { store: "memory" | "redis"; redis?: RedisSettings } {
  const problems: string[] = [];
  const pick = (key: keyof ServeFlags): string | undefined => {
    const flag = flags[key];
    return flag !== undefined ? String(flag) : env[serveEnv[key]];
  };
  const settings = parseStoreSettings(pick, env, problems);
  if (problems.length > 0) throw new ConfigError(problems);
  return settings;
}

function kebab(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/**
 * Builds the serve configuration from flags, falling back to the environment variable of each flag,
 * then to defaults. Reports every problem at once.
 * @throws ConfigError
 */
export function loadServeConfig(flags: ServeFlags, env: NodeJS.ProcessEnv): ServeConfig {
  const problems: string[] = [];
  const pick = (key: keyof ServeFlags): string | undefined => {
    const flag = flags[key];
    if (flag !== undefined) return String(flag);
    return env[serveEnv[key]];
  };
  const flag = (key: keyof ServeFlags): boolean => {
    const value = flags[key];
    if (value === true) return true;
    const fromEnv = env[serveEnv[key]];
    return fromEnv === undefined ? false : parseBool(serveEnv[key], fromEnv, problems);
  };

  const grpcListen = parseListen("grpc-listen", pick("grpcListen") ?? defaults.grpcListen, problems);
  const connectListen = parseListen(
    "connect-listen",
    pick("connectListen") ?? defaults.connectListen,
    problems,
  );
  const opsListen = parseListen("ops-listen", pick("opsListen") ?? defaults.opsListen, problems);

  const components = parseComponents(pick("components"), problems);
  const policyFile = pick("policy");
  if (components.api && (policyFile === undefined || policyFile === ""))
    problems.push("--policy FILE is required (the policy file)");

  const cert = pick("tlsCert");
  const key = pick("tlsKey");
  const clientCa = pick("tlsClientCa");
  const requireClientCert = flag("requireClientCert");
  let tls: ServeConfig["tls"];
  if ((cert === undefined) !== (key === undefined)) {
    problems.push("--tls-cert and --tls-key must be given together");
  } else if (cert !== undefined && key !== undefined) {
    tls =
      clientCa === undefined ? { cert, key, requireClientCert } : { cert, key, clientCa, requireClientCert };
  }
  if (requireClientCert && clientCa === undefined)
    problems.push("--require-client-cert needs --tls-client-ca (the CA that signs client certificates)");
  if (tls === undefined && clientCa !== undefined)
    problems.push("--tls-client-ca needs --tls-cert and --tls-key");
  if (tls === undefined) {
    for (const [name, address] of [
      ["grpc-listen", grpcListen],
      ["connect-listen", connectListen],
    ] as const) {
      if (!isLoopback(address.host))
        problems.push(
          `--${name} ${address.host}: without TLS (--tls-cert/--tls-key) the server listens only on loopback`,
        );
    }
  }

  const requestersText = pick("requesters");
  const requesters =
    requestersText === undefined || requestersText.trim() === "*"
      ? ("any" as const)
      : parseList(requestersText);
  const deciders = parseList(pick("deciders"));
  const identityFrom = parseList(pick("identityFrom")?.toLowerCase() ?? "uri");
  const unknownSources = identityFrom.filter((s) => !(identitySources as readonly string[]).includes(s));
  if (identityFrom.length === 0 || unknownSources.length > 0)
    problems.push(
      `--identity-from ${JSON.stringify(pick("identityFrom") ?? "")}: expected uri, dns or cn, comma-separated (e.g. uri,dns)`,
    );

  let heartbeatMs = 15_000;
  try {
    heartbeatMs = parseDuration(pick("heartbeatInterval") ?? defaults.heartbeatInterval);
    if (heartbeatMs < 100) problems.push("--heartbeat-interval must be at least 100ms");
  } catch (err) {
    problems.push(`--heartbeat-interval: ${(err as Error).message}`);
  }

  const { store, redis } = parseStoreSettings(pick, env, problems);
  let retentionMs = 7 * 24 * 3_600_000;
  try {
    retentionMs = parseDuration(pick("retention") ?? "7d");
    if (retentionMs < 60_000) problems.push("--retention must be at least 1m");
  } catch (err) {
    problems.push(`--retention: ${(err as Error).message}`);
  }
  const archiveDir = pick("archiveDir");
  if (archiveDir === "") problems.push("--archive-dir is set but empty");

  const maxMessageBytes = Number(pick("maxMessageBytes") ?? defaults.maxMessageBytes);
  if (!Number.isInteger(maxMessageBytes) || maxMessageBytes < 1024)
    problems.push("--max-message-bytes must be an integer ≥ 1024");

  const perSecond = Number(pick("createRateLimit") ?? "10");
  const burst = Number(pick("createBurst") ?? "20");
  if (!Number.isInteger(perSecond) || perSecond < 0)
    problems.push("--create-rate-limit must be a whole number of creates per second (0 disables)");
  if (!Number.isInteger(burst) || burst < 0) problems.push("--create-burst must be a whole number ≥ 0");
  const trustedProxies = parseList(pick("trustedProxies"));
  for (const proxy of trustedProxies) {
    if (isIP(proxy) === 0) problems.push(`--trusted-proxies: ${JSON.stringify(proxy)} is not an IP address`);
  }

  const adminToken = readSecret(env, "ADMIN_TOKEN", problems);
  if (adminToken !== undefined && adminToken.length < 16)
    problems.push("ADMIN_TOKEN must be at least 16 characters");

  const auditFile = pick("auditFile");
  const limits = parseConnectionLimits(pick, problems);
  const auditKey = readSecret(env, "AUDIT_KEY", problems);
  if (auditKey !== undefined && auditKey.length < minAuditKeyLength)
    problems.push(
      `AUDIT_KEY must be at least ${minAuditKeyLength} characters (e.g. openssl rand -base64 32)`,
    );
  let auditCheckpointMs = 10_000;
  try {
    auditCheckpointMs = parseDuration(pick("auditCheckpointInterval") ?? "10s");
    if (auditCheckpointMs < 100 || auditCheckpointMs > 3_600_000)
      problems.push("--audit-checkpoint-interval must be between 100ms and 1h");
  } catch (err) {
    problems.push(`--audit-checkpoint-interval: ${(err as Error).message}`);
  }
  let securitySummaryMs = 60_000;
  try {
    securitySummaryMs = parseDuration(pick("securitySummaryInterval") ?? "60s");
    if (securitySummaryMs < 100 || securitySummaryMs > 3_600_000)
      problems.push("--security-summary-interval must be between 100ms and 1h");
  } catch (err) {
    problems.push(`--security-summary-interval: ${(err as Error).message}`);
  }
  let maxClockSkewMs = 2_000;
  try {
    maxClockSkewMs = parseDuration(pick("maxClockSkew") ?? "2s");
    if (maxClockSkewMs !== 0 && (maxClockSkewMs < 100 || maxClockSkewMs > 3_600_000))
      problems.push("--max-clock-skew must be 0 (off) or between 100ms and 1h");
  } catch (err) {
    problems.push(`--max-clock-skew: ${(err as Error).message}`);
  }
  const tracing = tracingFromEnv(env, problems);
  const slack = parseSlackSettings(pick, env, components, problems);

  if (problems.length > 0) throw new ConfigError(problems);
  return {
    grpcListen,
    connectListen,
    opsListen,
    policyFile: policyFile ?? "",
    watchPolicy: flag("watchPolicy"),
    ...(tls === undefined ? { developmentIdentity } : { tls }),
    requesters,
    deciders,
    identitySources: [...new Set(identityFrom as IdentitySource[])],
    ...(adminToken === undefined ? {} : { adminToken }),
    heartbeatMs,
    store,
    ...(redis === undefined ? {} : { redis }),
    ...(archiveDir === undefined || archiveDir === "" ? {} : { archiveDir }),
    retentionMs,
    maxMessageBytes,
    logLevel: pick("logLevel") ?? defaults.logLevel,
    ...(perSecond === 0 ? {} : { createRateLimit: { perSecond, burst } }),
    trustedProxies,
    ...(auditFile === undefined || auditFile === "" || auditFile === "-" ? {} : { auditFile }),
    ...(auditKey === undefined ? {} : { auditKey }),
    auditCheckpointMs,
    securitySummaryMs,
    maxClockSkewMs,
    ...(tracing === undefined ? {} : { tracing }),
    components: { api: components.api, slack: slack !== undefined },
    limits,
    ...(flag("benchEcho") ? { benchEcho: true } : {}),
    ...(slack === undefined ? {} : { slack }),
  };
}

/** `--components`: `api`, `slack`, or both (the default, `all`); `explicit` when named. */
function parseComponents(
  text: string | undefined,
  problems: string[],
): { api: boolean; slack: boolean; explicitSlack: boolean } {
  const names = parseList(text?.toLowerCase() ?? "all");
  const unknown = names.filter((n) => n !== "api" && n !== "slack" && n !== "all");
  if (unknown.length > 0 || names.length === 0) {
    problems.push(`--components ${JSON.stringify(text ?? "")}: expected api, slack or all (comma-separated)`);
    return { api: true, slack: true, explicitSlack: false };
  }
  const all = names.includes("all");
  return {
    api: all || names.includes("api"),
    slack: all || names.includes("slack"),
    explicitSlack: names.includes("slack"),
  };
}

function isLoopbackUrl(url: URL): boolean {
  return isLoopback(url.hostname.replace(/^\[|\]$/g, ""));
}

/**
 * The Slack gateway's settings. It runs when `SLACK_BOT_TOKEN` and `SLACK_SIGNING_SECRET` (or their
 * `*_FILE`) are set and `--components` includes slack; naming slack without them is an error. Without
 * the API in the same process it needs `--api-url` (https with a client certificate, or http on loopback).
 */
function parseSlackSettings(
  pick: (key: keyof ServeFlags) => string | undefined,
  env: NodeJS.ProcessEnv,
  components: { api: boolean; slack: boolean; explicitSlack: boolean },
  problems: string[],
): SlackConfig | undefined {
  const botToken = readSecret(env, "SLACK_BOT_TOKEN", problems);
  const signingSecret = readSecret(env, "SLACK_SIGNING_SECRET", problems);
  const appToken = readSecret(env, "SLACK_APP_TOKEN", problems);
  const webApiUrl = env.SLACK_API_URL;
  const apiUrl = pick("apiUrl");
  const apiCert = pick("apiTlsCert");
  const apiKey = pick("apiTlsKey");
  const apiCa = pick("apiTlsCa");
  if (components.api && apiUrl !== undefined)
    problems.push("--api-url is only for a gateway in its own process (--components slack)");
  if (apiUrl === undefined && (apiCert ?? apiKey ?? apiCa) !== undefined)
    problems.push("--api-tls-cert, --api-tls-key and --api-tls-ca need --api-url");
  if ((botToken === undefined) !== (signingSecret === undefined)) {
    problems.push(
      "SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET must be set together (the Slack gateway needs both)",
    );
    return undefined;
  }
  if (botToken === undefined || signingSecret === undefined) {
    if (components.explicitSlack)
      problems.push(
        "--components slack needs SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET (or SLACK_BOT_TOKEN_FILE, SLACK_SIGNING_SECRET_FILE)",
      );
    return undefined;
  }
  if (!components.slack) return undefined;
  if (!botToken.startsWith("xoxb-")) problems.push("SLACK_BOT_TOKEN must be a bot token (xoxb-…)");
  if (appToken !== undefined && !appToken.startsWith("xapp-"))
    problems.push("SLACK_APP_TOKEN must be an app-level token (xapp-…) for Socket Mode");
  if (webApiUrl !== undefined) {
    let parsed: URL | undefined;
    try {
      parsed = new URL(webApiUrl);
    } catch {
      parsed = undefined;
    }
    if (parsed === undefined || (parsed.protocol !== "https:" && parsed.protocol !== "http:"))
      problems.push(
        `SLACK_API_URL ${JSON.stringify(webApiUrl)}: expected an http(s) URL, e.g. https://slack.com/api/`,
      );
  }
  const listen = parseListen("slack-listen", pick("slackListen") ?? "127.0.0.1:3000", problems);
  let api: SlackConfig["api"];
  if (!components.api) {
    if (apiUrl === undefined) {
      problems.push(
        "--components slack without api needs --api-url (the Countersign API the gateway calls over gRPC)",
      );
    } else {
      let url: URL | undefined;
      try {
        url = new URL(apiUrl);
      } catch {
        url = undefined;
      }
      if (
        url === undefined ||
        (url.protocol !== "https:" && !(url.protocol === "http:" && isLoopbackUrl(url)))
      ) {
        problems.push(
          `--api-url ${JSON.stringify(apiUrl)}: expected https://host:port (mutual TLS), or http:// on loopback`,
        );
      } else if (url.protocol === "https:" && (apiCert === undefined || apiKey === undefined)) {
        problems.push(
          "--api-url https://… needs --api-tls-cert and --api-tls-key (the gateway's client certificate)",
        );
      } else {
        api =
          apiCert === undefined || apiKey === undefined
            ? { url: apiUrl }
            : {
                url: apiUrl,
                tls: { cert: apiCert, key: apiKey, ...(apiCa === undefined ? {} : { ca: apiCa }) },
              };
      }
    }
  }
  return {
    botToken,
    signingSecret,
    ...(appToken === undefined ? {} : { appToken }),
    ...(webApiUrl === undefined ? {} : { webApiUrl }),
    listen,
    ...(api === undefined ? {} : { api }),
  };
}

/**
 * Tracing as the standard OpenTelemetry variables ask for it. Off by default; on when
 * `OTEL_TRACES_EXPORTER` names `otlp` or `console`, or when `OTEL_EXPORTER_OTLP_ENDPOINT` /
 * `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set; `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`
 * keep it off. The exporter reads the other `OTEL_EXPORTER_OTLP_*` variables itself.
 */
export function tracingFromEnv(env: NodeJS.ProcessEnv, problems: string[] = []): TracingConfig | undefined {
  if ((env.OTEL_SDK_DISABLED ?? "").trim().toLowerCase() === "true") return undefined;
  const names = parseList(env.OTEL_TRACES_EXPORTER?.toLowerCase());
  const unsupported = names.filter((n) => n !== "otlp" && n !== "console" && n !== "none");
  if (unsupported.length > 0)
    problems.push(
      `OTEL_TRACES_EXPORTER=${env.OTEL_TRACES_EXPORTER}: supported exporters: otlp, console, none`,
    );
  if (names.includes("none")) return undefined;
  if (names.includes("otlp")) return { exporter: "otlp" };
  if (names.includes("console")) return { exporter: "console" };
  const endpoint = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? env.OTEL_EXPORTER_OTLP_ENDPOINT;
  return endpoint === undefined || endpoint === "" ? undefined : { exporter: "otlp" };
}
