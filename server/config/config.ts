import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import { parseDuration } from "../policy/duration.js";

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
  adminToken?: string;
  heartbeatMs: number;
  store: "memory";
  maxMessageBytes: number;
  logLevel: string;
  /** Create rate limit per client; undefined when disabled (`--create-rate-limit 0`). */
  createRateLimit?: { perSecond: number; burst: number };
  /** Proxies whose x-forwarded-for header is trusted. */
  trustedProxies: string[];
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
  heartbeatInterval?: string;
  store?: string;
  maxMessageBytes?: string;
  logLevel?: string;
  createRateLimit?: string;
  createBurst?: string;
  trustedProxies?: string;
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
  heartbeatInterval: "COUNTERSIGN_HEARTBEAT_INTERVAL",
  store: "COUNTERSIGN_STORE",
  maxMessageBytes: "COUNTERSIGN_MAX_MESSAGE_BYTES",
  logLevel: "COUNTERSIGN_LOG_LEVEL",
  createRateLimit: "COUNTERSIGN_CREATE_RATE_LIMIT",
  createBurst: "COUNTERSIGN_CREATE_BURST",
  trustedProxies: "COUNTERSIGN_TRUSTED_PROXIES",
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
};

/** The identity of every caller in development mode. */
export const developmentIdentity = "local-dev";

function isLoopback(host: string): boolean {
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

function parseListen(name: string, text: string, problems: string[]): ListenAddress {
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

  const policyFile = pick("policy");
  if (policyFile === undefined || policyFile === "")
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

  let heartbeatMs = 15_000;
  try {
    heartbeatMs = parseDuration(pick("heartbeatInterval") ?? defaults.heartbeatInterval);
    if (heartbeatMs < 100) problems.push("--heartbeat-interval must be at least 100ms");
  } catch (err) {
    problems.push(`--heartbeat-interval: ${(err as Error).message}`);
  }

  const store = pick("store") ?? "memory";
  if (store !== "memory") problems.push(`--store ${JSON.stringify(store)}: supported stores: memory`);

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

  if (problems.length > 0) throw new ConfigError(problems);
  return {
    grpcListen,
    connectListen,
    opsListen,
    policyFile: policyFile as string,
    watchPolicy: flag("watchPolicy"),
    ...(tls === undefined ? { developmentIdentity } : { tls }),
    requesters,
    deciders,
    ...(adminToken === undefined ? {} : { adminToken }),
    heartbeatMs,
    store: "memory",
    maxMessageBytes,
    logLevel: pick("logLevel") ?? defaults.logLevel,
    ...(perSecond === 0 ? {} : { createRateLimit: { perSecond, burst } }),
    trustedProxies,
  };
}
