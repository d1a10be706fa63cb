import { execFile } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { Code, ConnectError } from "@connectrpc/connect";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { State } from "../gen/countersign/v1/approval_pb.js";
import { BadRequestSchema } from "../gen/google/rpc/error_details_pb.js";
import { ConfigError, loadServeConfig, type ServeFlags } from "../server/config/config.js";
import { systemClock } from "../server/domain/clock.js";
import { type RunningSlackGateway, startSlackGatewayProcess } from "../server/main.js";
import { createMemorySlackMessageStore } from "../server/slack/memory-slack-message-store.js";
import { parsePrometheusText } from "../server/telemetry/prometheus-text.js";
import { createTestPki, type TestPki, testIdentities, writePemFiles } from "./support/certs.js";
import { type FakeSlack, slackTestPolicy, startFakeSlack } from "./support/fake-slack.js";
import { blockActionPayload, interactionBody, postSigned } from "./support/slack-signing.js";
import { startTestServer, type TestServer } from "./support/test-server.js";

const run = promisify(execFile);
const cli = ["--import", "tsx", join(import.meta.dirname, "../clients/cli/countersign.ts")];
const signingSecret = "process-test-signing-secret";

let pki: TestPki;
let api: TestServer;
let slack: FakeSlack;
let gatewayFlags: ServeFlags;
const messages = createMemorySlackMessageStore({ clock: systemClock });

beforeAll(async () => {
  pki = createTestPki();
  api = await startTestServer({ pki, policy: slackTestPolicy, flags: { deciders: testIdentities.decider } });
  slack = await startFakeSlack();
  const files = writePemFiles({
    "gateway.pem": pki.decider.cert,
    "gateway-key.pem": pki.decider.key,
    "ca.pem": pki.ca,
  });
  gatewayFlags = {
    components: "slack",
    apiUrl: `https://${api.server.grpcAddress}`,
    apiTlsCert: files["gateway.pem"] as string,
    apiTlsKey: files["gateway-key.pem"] as string,
    apiTlsCa: files["ca.pem"] as string,
    slackListen: "127.0.0.1:0",
    opsListen: "127.0.0.1:0",
  };
});
afterAll(async () => {
  await api?.close();
  await slack?.close();
});

function slackEnv(token = slack.token): NodeJS.ProcessEnv {
  return { SLACK_BOT_TOKEN: token, SLACK_SIGNING_SECRET: signingSecret, SLACK_API_URL: slack.apiUrl };
}

function startGateway(): Promise<RunningSlackGateway> {
  return startSlackGatewayProcess(loadServeConfig(gatewayFlags, slackEnv()), {
    logger: pino({ level: "silent" }),
    slack: {
      messages,
      tuning: { requestTimeoutMs: 1_000, backoffBaseMs: 50, backoffMaxMs: 400, feedRetryMs: 50 },
    },
  });
}

function requestMessage(id: string) {
  return slack
    .messages()
    .find((m) => m.threadTs === undefined && m.metadata?.event_payload.approval_id === id);
}

async function click(gateway: RunningSlackGateway, user: string, id: string) {
  const m = await slack.waitFor(() => requestMessage(id), `the message of ${id}`);
  const body = interactionBody(
    blockActionPayload({
      user,
      actionId: "countersign_approve",
      approvalId: id,
      channel: m.channel,
      messageTs: m.ts,
    }),
  );
  return postSigned(gateway.slackEventsUrl ?? "", { signingSecret, body });
}

describe("the Slack gateway in its own process", () => {
  it("watches approvals over WatchApprovals and submits clicks over gRPC with mutual TLS", async () => {
    const gateway = await startGateway();
    try {
      const { approvals } = api.clients(pki.requester, "grpc");
      const id =
        (await approvals.createApproval({ action: "deploy.production", title: "Remote" })).approval?.id ?? "";
      const states: State[] = [];
      const watching = (async () => {
        for await (const msg of approvals.watchApproval({ id }))
          if (!msg.heartbeat) states.push(msg.approval?.state ?? 0);
      })();
      expect((await click(gateway, "U1", id)).status).toBe(200);
      await slack.waitFor(
        () => JSON.stringify(requestMessage(id)?.blocks ?? []).includes("<@U1> approved"),
        "U1's vote",
      );
      expect((await click(gateway, "U2", id)).status).toBe(200);
      await watching;
      expect(states.at(-1)).toBe(State.APPROVED);
      const votes = (await approvals.getApproval({ id })).approval?.votes ?? [];
      expect(votes.map((v) => [v.approver, v.submittedBy])).toEqual([
        ["U1", testIdentities.decider],
        ["U2", testIdentities.decider],
      ]);
      await slack.waitFor(
        () => JSON.stringify(requestMessage(id)?.blocks ?? []).includes("Approved"),
        "the outcome",
      );
      const ready = await fetch(`${gateway.opsUrl}/readyz`);
      expect(ready.status).toBe(200);
    } finally {
      await gateway.close();
    }
  });

  it("exports its own metrics and health on its ops port", async () => {
    const gateway = await startGateway();
    try {
      const { approvals } = api.clients(pki.requester, "grpc");
      const id =
        (await approvals.createApproval({ action: "deploy.production", title: "Metrics" })).approval?.id ??
        "";
      await slack.waitFor(() => requestMessage(id), "the message");
      expect((await fetch(`${gateway.opsUrl}/healthz`)).status).toBe(200);
      const scrape = await fetch(`${gateway.opsUrl}/metrics`);
      expect(scrape.status).toBe(200);
      const page = parsePrometheusText(await scrape.text());
      expect(
        page.value("countersign_slack_api_calls_total", { method: "chat.postMessage", result: "ok" }),
      ).toBeGreaterThanOrEqual(1);
      expect(page.families.get("countersign_slack_queue_depth")).toBe("gauge");
      expect(page.families.get("countersign_reminders_total")).toBe("counter");
      expect(page.families.get("process_cpu_user_seconds_total")).toBe("counter");
    } finally {
      await gateway.close();
    }
  });

  it("catches up, when it starts again, on a decision made while no gateway ran", async () => {
    const { approvals } = api.clients(pki.requester, "grpc");
    const first = await startGateway();
    let id: string;
    try {
      id =
        (await approvals.createApproval({ action: "deploy.production", title: "While away" })).approval?.id ??
        "";
      await slack.waitFor(() => requestMessage(id), "the message");
    } finally {
      await first.close();
    }
    await approvals.cancelApproval({ id, reason: "not needed" });
    const second = await startGateway();
    try {
      await slack.waitFor(
        () => JSON.stringify(requestMessage(id)?.blocks ?? []).includes("Cancelled"),
        "the catch-up",
      );
      expect(slack.messages().filter((m) => m.metadata?.event_payload.approval_id === id)).toHaveLength(1);
    } finally {
      await second.close();
    }
  });

  it("says clearly at start when Slack rejects the bot token", async () => {
    await expect(
      startSlackGatewayProcess(loadServeConfig(gatewayFlags, slackEnv("xoxb-wrong-token")), {
        logger: pino({ level: "silent" }),
      }),
    ).rejects.toThrow('Slack rejected SLACK_BOT_TOKEN: auth.test answered "invalid_auth"');

    const dir = mkdtempSync(join(tmpdir(), "countersign-slack-"));
    writeFileSync(join(dir, "policies.yaml"), slackTestPolicy);
    const result = await run(
      process.execPath,
      [
        ...cli,
        "serve",
        "--policy",
        join(dir, "policies.yaml"),
        "--grpc-listen",
        "127.0.0.1:0",
        "--connect-listen",
        "127.0.0.1:0",
        "--ops-listen",
        "127.0.0.1:0",
        "--slack-listen",
        "127.0.0.1:0",
      ],
      { env: { ...process.env, ...slackEnv("xoxb-wrong-token"), COUNTERSIGN_LOG_LEVEL: "silent" } },
    ).catch((err: { code: number; stderr: string }) => err);
    expect("code" in result && result.code).toBe(1);
    expect(result.stderr).toContain(
      'countersign serve: Slack rejected SLACK_BOT_TOKEN: auth.test answered "invalid_auth"; check the bot token',
    );
  });
});

describe("the decider-only RPCs", () => {
  it("refuse requesters, and name the invalid field", async () => {
    const { approvals } = api.clients(pki.requester, "grpc");
    const { approvals: decider } = api.clients(pki.decider, "connect");
    const id =
      (await approvals.createApproval({ action: "deploy.production", title: "Roles" })).approval?.id ?? "";
    const failure = async (call: Promise<unknown>) => {
      try {
        await call;
      } catch (err) {
        const ce = ConnectError.from(err);
        return {
          code: ce.code,
          fields: ce.findDetails(BadRequestSchema).flatMap((d) => d.fieldViolations.map((v) => v.field)),
        };
      }
      throw new Error("the call succeeded");
    };
    const drain = async (stream: AsyncIterable<unknown>) => {
      for await (const _ of stream) break;
    };
    expect((await failure(drain(approvals.watchApprovals({})))).code).toBe(Code.PermissionDenied);
    expect((await failure(approvals.rerequestApproval({ id, requestedBy: "U9" }))).code).toBe(
      Code.PermissionDenied,
    );
    expect(await failure(drain(decider.watchApprovals({ ids: ["bad id!"] })))).toEqual({
      code: Code.InvalidArgument,
      fields: ["ids[0]"],
    });
    expect(await failure(decider.rerequestApproval({ id, requestedBy: "" }))).toEqual({
      code: Code.InvalidArgument,
      fields: ["requested_by"],
    });
    // Still pending: nothing to re-request.
    expect((await failure(decider.rerequestApproval({ id, requestedBy: "U9" }))).code).toBe(
      Code.PermissionDenied,
    );
  });
});

describe("Slack configuration", () => {
  function problems(flags: ServeFlags, env: NodeJS.ProcessEnv): string[] {
    try {
      loadServeConfig(flags, env);
      return [];
    } catch (err) {
      if (err instanceof ConfigError) return err.problems;
      throw err;
    }
  }

  it("enables the gateway when both secrets are set (or their *_FILE), and reports each problem", () => {
    const dir = mkdtempSync(join(tmpdir(), "countersign-slack-config-"));
    writeFileSync(join(dir, "secret"), "from-a-file\n");
    const config = loadServeConfig(
      { policy: "p.yaml" },
      { SLACK_BOT_TOKEN: "xoxb-1", SLACK_SIGNING_SECRET_FILE: join(dir, "secret") },
    );
    expect(config.slack).toMatchObject({
      botToken: "xoxb-1",
      signingSecret: "from-a-file",
      listen: { host: "127.0.0.1", port: 3000 },
    });
    expect(config.components).toEqual({ api: true, slack: true });
    expect(loadServeConfig({ policy: "p.yaml" }, {}).slack).toBeUndefined();
    expect(
      loadServeConfig(
        { policy: "p.yaml", components: "api" },
        { SLACK_BOT_TOKEN: "xoxb-1", SLACK_SIGNING_SECRET: "s" },
      ).slack,
    ).toBeUndefined();

    expect(problems({ policy: "p.yaml" }, { SLACK_BOT_TOKEN: "xoxb-1" })).toEqual([
      "SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET must be set together (the Slack gateway needs both)",
    ]);
    expect(problems({ components: "slack" }, {})).toEqual([
      "--components slack needs SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET (or SLACK_BOT_TOKEN_FILE, SLACK_SIGNING_SECRET_FILE)",
    ]);
    expect(
      problems(
        { components: "slack" },
        { SLACK_BOT_TOKEN: "not-a-bot-token", SLACK_SIGNING_SECRET: "s", SLACK_API_URL: "ftp://x" },
      ),
    ).toEqual([
      "SLACK_BOT_TOKEN must be a bot token (xoxb-…)",
      'SLACK_API_URL "ftp://x": expected an http(s) URL, e.g. https://slack.com/api/',
      "--components slack without api needs --api-url (the Countersign API the gateway calls over gRPC)",
    ]);
    expect(
      problems(
        { components: "slack", apiUrl: "https://api:50051" },
        { SLACK_BOT_TOKEN: "xoxb-1", SLACK_SIGNING_SECRET: "s" },
      ),
    ).toEqual([
      "--api-url https://… needs --api-tls-cert and --api-tls-key (the gateway's client certificate)",
    ]);
    expect(problems({ policy: "p.yaml", apiUrl: "https://api:50051", components: "bogus" }, {})).toEqual([
      '--components "bogus": expected api, slack or all (comma-separated)',
      "--api-url is only for a gateway in its own process (--components slack)",
    ]);
  });
});
