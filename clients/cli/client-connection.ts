import { readFileSync } from "node:fs";
import {
  type CountersignClient,
  createCountersignClient,
  FailedPreconditionError,
  InvalidArgumentError,
  type Protocol,
  type ReconnectOptions,
  RpcError,
  TlsError,
  UnauthenticatedError,
  UnavailableError,
} from "@countersign/sdk";
import { type Command, Option } from "commander";
import { readSecret } from "../../server/config/config.js";
import { visibleText } from "../../server/domain/display-text.js";
import { parseDuration } from "../../server/policy/duration.js";

/** Exit statuses of the client commands: the outcome of an approval, or why there is none. */
export const exitCodes = {
  approved: 0,
  error: 1,
  denied: 10,
  expired: 11,
  cancelled: 12,
  /** Interrupted by SIGINT / SIGTERM (128 + 2, as shells report Ctrl-C). */
  interrupted: 130,
} as const;

/** Connection settings of every client command, as the command line gives them. */
export interface ConnectionFlags {
  url?: string;
  protocol?: string;
  ca?: string;
  cert?: string;
  key?: string;
  giveUpAfter?: string;
}

/** Where the development server (`npm start`) listens. */
const developmentUrls: Record<Protocol, string> = {
  connect: "http://127.0.0.1:8080",
  "grpc-web": "http://127.0.0.1:8080",
  grpc: "http://127.0.0.1:50051",
};

/** A problem with the command line or its files; printed as is, exit status 1. */
export class UsageError extends Error {
  override name = "UsageError";
}

/**
 * A duration flag (`90s`, `30m`, `1h30m`) in milliseconds; undefined when not given.
 * @throws UsageError naming the flag
 */
export function durationFlag(flag: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  try {
    return parseDuration(text);
  } catch (err) {
    throw new UsageError(`${flag}: ${(err as Error).message}`);
  }
}

/** Adds --url, --protocol, --ca, --cert and --key (each also from its environment variable). */
export function addConnectionOptions(command: Command): Command {
  return command
    .addOption(
      new Option(
        "--url <url>",
        "server URL, https://host:port with TLS (default: the development server, http://127.0.0.1:8080, or :50051 for grpc)",
      ).env("COUNTERSIGN_URL"),
    )
    .addOption(
      new Option("--protocol <protocol>", "wire protocol (default: connect)")
        .choices(["connect", "grpc", "grpc-web"])
        .env("COUNTERSIGN_PROTOCOL"),
    )
    .addOption(new Option("--ca <file>", "CA certificate(s) of the server (PEM)").env("COUNTERSIGN_CA"))
    .addOption(
      new Option("--cert <file>", "client certificate for mutual TLS (PEM); its identity is you").env(
        "COUNTERSIGN_CERT",
      ),
    )
    .addOption(new Option("--key <file>", "private key of --cert (PEM)").env("COUNTERSIGN_KEY"))
    .addOption(
      new Option(
        "--give-up-after <duration>",
        "a wait that gets no answer from the server for this long gives up (exit status 1)",
      )
        .env("COUNTERSIGN_GIVE_UP_AFTER")
        .default(defaultGiveUpAfter),
    );
}

/** How long `watch` and `request --wait` retry a server that does not answer. */
const defaultGiveUpAfter = "5m";

/** Adds --admin-token to an admin command. */
export function addAdminTokenOption(command: Command): Command {
  return command.addOption(
    new Option(
      "--admin-token <token>",
      "admin bearer token (prefer the environment: ADMIN_TOKEN, or ADMIN_TOKEN_FILE naming a file)",
    ),
  );
}

function readPem(flag: string, path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    throw new UsageError(
      `cannot read the ${flag} file ${path}: ${(err as NodeJS.ErrnoException).code ?? err}`,
    );
  }
}

/** A connected client and the URL it talks to. */
export interface Connection {
  client: CountersignClient;
  url: string;
}

/**
 * Builds the SDK client from the connection flags (and, for admin commands, the admin token from the
 * flag, ADMIN_TOKEN or ADMIN_TOKEN_FILE); `reconnect` bounds how waits resume after a broken connection.
 * @throws UsageError for a file that cannot be read or a missing admin token
 */
export function connect(
  flags: ConnectionFlags & { adminToken?: string },
  env: NodeJS.ProcessEnv,
  options: { admin?: boolean; reconnect?: ReconnectOptions } = {},
): Connection {
  // An empty environment variable counts as unset.
  const given = (value: string | undefined) => (value === "" ? undefined : value);
  const protocol = (given(flags.protocol) ?? "connect") as Protocol;
  const url = given(flags.url) ?? developmentUrls[protocol];
  const ca = given(flags.ca);
  const cert = given(flags.cert);
  const key = given(flags.key);
  if ((cert === undefined) !== (key === undefined))
    throw new UsageError("--cert and --key (COUNTERSIGN_CERT, COUNTERSIGN_KEY) must be given together");
  const tls = {
    ...(ca === undefined ? {} : { ca: readPem("--ca", ca) }),
    ...(cert === undefined ? {} : { cert: readPem("--cert", cert) }),
    ...(key === undefined ? {} : { key: readPem("--key", key) }),
  };
  let adminToken = flags.adminToken;
  if (options.admin === true && adminToken === undefined) {
    const problems: string[] = [];
    adminToken = readSecret(env, "ADMIN_TOKEN", problems);
    if (problems.length > 0) throw new UsageError(problems.join("; "));
    if (adminToken === undefined)
      throw new UsageError(
        "admin commands need the admin token: set ADMIN_TOKEN (or ADMIN_TOKEN_FILE), or pass --admin-token",
      );
  }
  const giveUpAfterMs = durationFlag("--give-up-after", given(flags.giveUpAfter));
  const reconnect = {
    ...(giveUpAfterMs === undefined ? {} : { giveUpAfterMs }),
    ...options.reconnect,
  };
  try {
    const client = createCountersignClient({
      baseUrl: url,
      protocol,
      ...(Object.keys(tls).length === 0 ? {} : { tls }),
      ...(adminToken === undefined ? {} : { adminToken }),
      ...(Object.keys(reconnect).length === 0 ? {} : { reconnect }),
    });
    return { client, url };
  } catch (err) {
    if (err instanceof TypeError) throw new UsageError(err.message.replaceAll("baseUrl", "--url"));
    throw err;
  }
}

/** What went wrong, in words that say what to do about it. */
export function describeError(err: unknown): string {
  if (err instanceof TlsError) {
    if (err.reason === "ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED")
      return `${err.rawMessage}\n  hint: pass --cert and --key (or COUNTERSIGN_CERT and COUNTERSIGN_KEY)`;
    if (err.message.includes("is not trusted"))
      return `${err.rawMessage}\n  hint: pass the server's CA with --ca (or COUNTERSIGN_CA)`;
    return err.rawMessage;
  }
  if (err instanceof UnavailableError) {
    if (err.rawMessage.includes("client certificate"))
      return `${err.rawMessage}\n  hint: check --cert and --key (COUNTERSIGN_CERT, COUNTERSIGN_KEY)`;
    return `${err.rawMessage}\n  hint: is the server running there? Set --url or COUNTERSIGN_URL (and --protocol grpc for the gRPC port)`;
  }
  if (err instanceof InvalidArgumentError || err instanceof FailedPreconditionError) {
    if (err.fieldViolations.length === 0) return err.rawMessage;
    const head =
      err instanceof InvalidArgumentError ? "the request is invalid:" : (err.rawMessage.split("\n")[0] ?? "");
    return [head, ...err.fieldViolations.map((v) => `  ${v.field}: ${v.description}`)].join("\n");
  }
  if (err instanceof UnauthenticatedError) {
    return `${err.rawMessage}\n  hint: with mutual TLS pass --cert and --key; admin commands need ADMIN_TOKEN or --admin-token`;
  }
  if (err instanceof RpcError) return err.rawMessage;
  return err instanceof Error ? err.message : String(err);
}

/**
 * Runs a command body and sets the exit status it returns; any error is printed as
 * `countersign: <message>` with exit status 1.
 */
export async function runCommand(body: () => Promise<number>): Promise<void> {
  try {
    process.exitCode = await body();
  } catch (err) {
    // An error's message can quote what a caller sent: shown with its control characters as escapes.
    process.stderr.write(`countersign: ${visibleText(describeError(err), { multiline: true })}\n`);
    process.exitCode = exitCodes.error;
  }
}
