import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { type Client, Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
  Http2SessionManager,
} from "@connectrpc/connect-node";
import { type Command, Option } from "commander";
import { Gauge, Pushgateway, Registry } from "prom-client";
import { Decision, State } from "../../gen/countersign/v1/approval_pb.js";
import { ApprovalService } from "../../gen/countersign/v1/approval_service_pb.js";
import { parseDuration } from "../../server/policy/duration.js";

/** The wire protocols the probe can use. */
export type ProbeProtocol = "connect" | "grpc" | "grpc-web";

/** Options of `runProbe`. */
export interface ProbeOptions {
  /** Base URL: the Connect port, or the gRPC port with `protocol: "grpc"`. */
  server: string;
  protocol: ProbeProtocol;
  /** The action of the probe policy. @default "countersign.probe" */
  action?: string;
  /** The approver the probe policy names. @default "probe-bot" */
  approver?: string;
  /** The whole probe must finish within this. @default 30000 */
  timeoutMs?: number;
  /** PEM: the CA of the server certificate, and the probe's client certificate and key (mutual TLS). */
  tls?: { ca?: string; cert?: string; key?: string };
}

/** What one probe run measured, in milliseconds. */
export interface ProbeResult {
  approvalId: string;
  outcome: "approved";
  /** CreateApproval sent → answered. */
  createMs: number;
  /** SubmitDecision sent → answered (the vote is stored and published). */
  decideMs: number;
  /** CreateApproval sent → the decision seen on the WatchApproval stream. */
  endToEndMs: number;
}

/** A probe that did not end approved; the message says where it stopped. */
export class ProbeError extends Error {
  override name = "ProbeError";
}

/** The transport of the probe, and how to release its connection. */
function transportFor(options: ProbeOptions): { transport: Transport; close(): void } {
  const nodeOptions = {
    ...(options.tls?.ca === undefined ? {} : { ca: options.tls.ca }),
    ...(options.tls?.cert === undefined ? {} : { cert: options.tls.cert }),
    ...(options.tls?.key === undefined ? {} : { key: options.tls.key }),
  };
  if (options.protocol === "grpc" || options.server.startsWith("https:")) {
    const sessionManager = new Http2SessionManager(options.server, {}, nodeOptions);
    const common = { baseUrl: options.server, nodeOptions, sessionManager };
    const transport =
      options.protocol === "grpc"
        ? createGrpcTransport(common)
        : options.protocol === "connect"
          ? createConnectTransport({ ...common, httpVersion: "2" })
          : createGrpcWebTransport({ ...common, httpVersion: "2" });
    return { transport, close: () => sessionManager.abort() };
  }
  const common = { baseUrl: options.server, nodeOptions, httpVersion: "1.1" as const };
  return {
    transport:
      options.protocol === "connect" ? createConnectTransport(common) : createGrpcWebTransport(common),
    close: () => undefined,
  };
}

/**
 * The synthetic approval probe (the seed's "synthetic approval latency probe"): creates an approval under
 * the probe policy, watches it, approves it as the probe's approver, and measures how long each step
 * took, end to end until the decision arrives on the watch stream. The probe's identity needs the
 * requester and decider roles.
 * @throws ProbeError when the approval does not end approved; ConnectError when a call fails
 */
export async function runProbe(options: ProbeOptions): Promise<ProbeResult> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  const signal = AbortSignal.timeout(timeoutMs);
  try {
    return await probe(options, signal);
  } catch (err) {
    if (signal.aborted) throw new ProbeError(`no decision within ${timeoutMs} ms`);
    throw err;
  }
}

async function probe(options: ProbeOptions, signal: AbortSignal): Promise<ProbeResult> {
  const { transport, close } = transportFor(options);
  try {
    return await probeWith(createClient(ApprovalService, transport), options, signal);
  } finally {
    close();
  }
}

async function probeWith(
  client: Client<typeof ApprovalService>,
  options: ProbeOptions,
  signal: AbortSignal,
): Promise<ProbeResult> {
  const action = options.action ?? "countersign.probe";
  const approver = options.approver ?? "probe-bot";
  const start = performance.now();
  const created = await client.createApproval(
    {
      action,
      title: "Synthetic approval probe",
      justification: "countersign probe: checks the approval path end to end",
      params: { probe: true },
      idempotencyKey: `probe-${randomUUID()}`,
    },
    { signal },
  );
  const createMs = performance.now() - start;
  const approval = created.approval;
  if (approval === undefined) throw new ProbeError("CreateApproval answered without an approval");
  if (approval.state !== State.PENDING)
    throw new ProbeError(
      `approval ${approval.id} for action ${action} is ${State[approval.state]} at once` +
        (approval.reason === "" ? "" : `: ${approval.reason}`),
    );

  const decided = (async () => {
    for await (const event of client.watchApproval({ id: approval.id }, { signal })) {
      const state = event.approval?.state;
      if (state !== undefined && state !== State.PENDING && state !== State.UNSPECIFIED)
        return { state, at: performance.now(), reason: event.approval?.reason ?? "" };
    }
    throw new ProbeError(`the watch of approval ${approval.id} ended before a decision`);
  })();
  decided.catch(() => undefined);

  const decideStart = performance.now();
  await client.submitDecision(
    {
      id: approval.id,
      approver,
      decision: Decision.APPROVE,
      reason: "synthetic probe",
      interactionId: `probe-${approval.id}`,
    },
    { signal },
  );
  const decideMs = performance.now() - decideStart;
  const outcome = await decided;
  if (outcome.state !== State.APPROVED)
    throw new ProbeError(`approval ${approval.id} ended ${State[outcome.state]}: ${outcome.reason}`);
  return { approvalId: approval.id, outcome: "approved", createMs, decideMs, endToEndMs: outcome.at - start };
}

/** Pushes a probe's result to a Prometheus Pushgateway (replacing the job's previous push). */
export async function pushProbeResult(
  url: string,
  job: string,
  result: ProbeResult | undefined,
): Promise<void> {
  const registry = new Registry();
  const gauge = (name: string, help: string, value: number) => {
    new Gauge({ name, help, registers: [registry] }).set(value);
  };
  gauge("countersign_probe_success", "1 when the last probe ended approved, else 0.", result ? 1 : 0);
  gauge("countersign_probe_last_run_timestamp_seconds", "Unix time of the last probe.", Date.now() / 1000);
  if (result !== undefined) {
    gauge(
      "countersign_probe_end_to_end_seconds",
      "Create → decision seen on the watch.",
      result.endToEndMs / 1000,
    );
    gauge("countersign_probe_create_seconds", "CreateApproval latency of the probe.", result.createMs / 1000);
    gauge("countersign_probe_decide_seconds", "SubmitDecision latency of the probe.", result.decideMs / 1000);
  }
  await new Pushgateway(url, { timeout: 10_000 }, registry).push({ jobName: job });
}

function readPem(file: string | undefined, what: string): string | undefined {
  if (file === undefined) return undefined;
  try {
    return readFileSync(file, "utf8");
  } catch (err) {
    throw new Error(`cannot read the ${what} ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
}

const ms = (n: number) => `${n.toFixed(1)} ms`;

/** `countersign probe`: the synthetic end-to-end approval probe. */
export function addProbeCommand(program: Command): void {
  program
    .command("probe")
    .description(
      "create an approval under the probe policy, approve it as the probe's approver, and report the " +
        "end-to-end latency; exit status 1 unless it ends approved (needs the requester and decider roles)",
    )
    .option("--server <url>", "Connect URL, or the gRPC URL with --protocol grpc", "http://127.0.0.1:8080")
    .addOption(
      new Option("--protocol <protocol>", "wire protocol")
        .choices(["connect", "grpc", "grpc-web"])
        .default("connect"),
    )
    .option("--action <action>", "the probe policy's action", "countersign.probe")
    .option("--approver <id>", "the approver the probe policy names", "probe-bot")
    .option("--timeout <duration>", "give up after this long", "30s")
    .option("--tls-ca <file>", "CA of the server certificate (PEM)")
    .option("--tls-cert <file>", "the probe's client certificate (PEM), for mutual TLS")
    .option("--tls-key <file>", "the probe's client key (PEM)")
    .option("--output <format>", "text or json", "text")
    .option("--pushgateway <url>", "push the result to this Prometheus Pushgateway")
    .option("--job <name>", "the Pushgateway job name", "countersign_probe")
    .action(
      async (opts: {
        server: string;
        protocol: ProbeProtocol;
        action: string;
        approver: string;
        timeout: string;
        tlsCa?: string;
        tlsCert?: string;
        tlsKey?: string;
        output: string;
        pushgateway?: string;
        job: string;
      }) => {
        const ca = readPem(opts.tlsCa, "CA file");
        const cert = readPem(opts.tlsCert, "certificate");
        const key = readPem(opts.tlsKey, "key");
        let result: ProbeResult | undefined;
        let failure: string | undefined;
        try {
          result = await runProbe({
            server: opts.server,
            protocol: opts.protocol,
            action: opts.action,
            approver: opts.approver,
            timeoutMs: parseDuration(opts.timeout),
            tls: {
              ...(ca === undefined ? {} : { ca }),
              ...(cert === undefined ? {} : { cert }),
              ...(key === undefined ? {} : { key }),
            },
          });
        } catch (err) {
          if (!(err instanceof ProbeError || err instanceof ConnectError)) throw err;
          failure = err instanceof ConnectError ? `${Code[err.code]}: ${err.rawMessage}` : err.message;
        }
        if (opts.pushgateway !== undefined) await pushProbeResult(opts.pushgateway, opts.job, result);
        if (opts.output === "json") {
          process.stdout.write(`${JSON.stringify(result ?? { outcome: "failed", error: failure })}\n`);
        } else if (result !== undefined) {
          process.stdout.write(
            `probe approved ${result.approvalId}: end to end ${ms(result.endToEndMs)} ` +
              `(create ${ms(result.createMs)}, decision ${ms(result.decideMs)})\n`,
          );
        }
        if (failure !== undefined) {
          process.stderr.write(`countersign probe: failed: ${failure}\n`);
          process.exitCode = 1;
        }
      },
    );
}
