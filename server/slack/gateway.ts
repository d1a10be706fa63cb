/**
 * The Slack gateway: Bolt app and receiver, the outbound queue, reminders and escalations, and the
 * interaction handlers, wired together. It learns about approvals from a feed (the change feed in
 * process, or `WatchApprovals` from another process), shows them in Slack through the queue, and turns
 * clicks into `SubmitDecision` calls of the generated client.
 */
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import type { Client } from "@connectrpc/connect";
import {
  App,
  type Logger as BoltLogger,
  HTTPReceiver,
  LogLevel,
  SocketModeReceiver,
  webApi,
} from "@slack/bolt";
import type { Logger } from "pino";
import type { ApprovalService } from "../../gen/countersign/v1/approval_service_pb.js";
import type { Clock } from "../domain/clock.js";
import { type Approval, isTerminal } from "../domain/types.js";
import { type Claims, createMemoryClaims } from "../store/claims.js";
import type { ApprovalFeed } from "./approval-feed.js";
import { type SlackGatewayEventListener, safeListener } from "./gateway-events.js";
import { registerInteractions } from "./interactions.js";
import type { Leases } from "./leases.js";
import { createMemoryLeases } from "./memory-leases.js";
import { createMemorySlackMessageStore } from "./memory-slack-message-store.js";
import { dueNotices } from "./notices.js";
import { createOutboundQueue, type SlackNotice } from "./outbound-queue.js";
import { classifySlackError, createSlackCaller } from "./slack-calls.js";
import { createSlackRequestHandler, slackEventsPath } from "./slack-http.js";
import type { SlackMessageStore } from "./slack-message-store.js";
import { createUserEmailResolver } from "./user-emails.js";
import { createUserGroupResolver } from "./user-groups.js";

/** Timings and limits of the gateway; the defaults suit production, tests shorten them. */
export interface SlackGatewayTuning {
  /** Time-out of one Slack Web API call. @default 10000 */
  requestTimeoutMs: number;
  /** Slack calls in flight at once. @default 4 */
  concurrency: number;
  /** First retry delay of the outbound queue. @default 1000 */
  backoffBaseMs: number;
  /** Longest retry delay of the outbound queue. @default 60000 */
  backoffMaxMs: number;
  /** How often due reminders and escalations are looked for. @default 1000 */
  reminderTickMs: number;
  /** How long a modal submission waits for the decision before answering "working on it". @default 2000 */
  ackBudgetMs: number;
  /** Largest interactivity request body. @default 262144 */
  maxBodyBytes: number;
  /** Deadline of one SubmitDecision call. @default 15000 */
  decisionTimeoutMs: number;
  /** First delay before watching the API again after the feed failed; doubles up to 30 s. @default 500 */
  feedRetryMs: number;
}

const defaultTuning: SlackGatewayTuning = {
  requestTimeoutMs: 10_000,
  concurrency: 4,
  backoffBaseMs: 1_000,
  backoffMaxMs: 60_000,
  reminderTickMs: 1_000,
  ackBudgetMs: 2_000,
  maxBodyBytes: 256 * 1024,
  decisionTimeoutMs: 15_000,
  feedRetryMs: 500,
};

/** Options of `startSlackGateway`. */
export interface SlackGatewayOptions {
  /** `SLACK_BOT_TOKEN` (xoxb-…). */
  botToken: string;
  /** `SLACK_SIGNING_SECRET`. */
  signingSecret: string;
  /** `SLACK_APP_TOKEN` (xapp-…): use Socket Mode instead of the HTTP endpoint. */
  appToken?: string;
  /** Base URL of the Slack Web API (`SLACK_API_URL`). @default "https://slack.com/api/" */
  webApiUrl?: string;
  /** Where the interactivity endpoint listens (HTTP mode). */
  listen: { host: string; port: number };
  /** The generated ApprovalService client clicks become calls of. */
  decider: Client<typeof ApprovalService>;
  /** Where approvals and their changes come from. */
  feed: ApprovalFeed;
  clock: Clock;
  logger: Logger;
  /** Receives what the gateway did (Slack calls, 429s, queue, security events); for metrics and audit. */
  onEvent?: SlackGatewayEventListener;
  /** Where message records live. @default in memory */
  messages?: SlackMessageStore;
  /** Leases on approvals' messages. @default in memory */
  leases?: Leases;
  /** The replay cache's claims. @default in memory */
  claims?: Claims;
  tuning?: Partial<SlackGatewayTuning>;
}

/** A running gateway. */
export interface SlackGateway {
  /** URL of the interactivity endpoint; undefined in Socket Mode. */
  readonly eventsUrl: string | undefined;
  /** True once the first snapshot of pending approvals has been read. */
  ready(): boolean;
  /** Depth of the outbound queue and age of its oldest item, in ms. */
  queueStats(): { depth: number; oldestAgeMs: number };
  /** Stops receiving, stops the queue and the feed, and releases everything. */
  close(): Promise<void>;
}

/** Slack refused the bot token at start. */
export class SlackTokenError extends Error {
  override name = "SlackTokenError";
}

/** Bolt's logger interface on top of pino (Bolt's info messages are debug for us). */
function boltLogger(logger: Logger): BoltLogger {
  let level = LogLevel.WARN;
  const text = (msg: unknown[]) => msg.map((m) => (m instanceof Error ? m.message : String(m))).join(" ");
  return {
    debug: (...msg: unknown[]) => logger.debug(text(msg)),
    info: (...msg: unknown[]) => logger.debug(text(msg)),
    warn: (...msg: unknown[]) => logger.warn(text(msg)),
    error: (...msg: unknown[]) => logger.error(text(msg)),
    setLevel: (l: LogLevel) => {
      level = l;
    },
    getLevel: () => level,
    setName: () => {},
  };
}

/** Errors of `auth.test` that mean the token itself is wrong. */
const tokenErrors = new Set([
  "invalid_auth",
  "not_authed",
  "token_revoked",
  "token_expired",
  "account_inactive",
]);

/**
 * Starts the gateway: checks the bot token with `auth.test` (a token Slack rejects stops the start with
 * a clear message; an unreachable Slack does not: posts wait in the queue), then receives interactions
 * and follows the feed.
 * @throws SlackTokenError when Slack rejects the bot token
 */
export async function startSlackGateway(options: SlackGatewayOptions): Promise<SlackGateway> {
  const tuning = { ...defaultTuning, ...options.tuning };
  const { clock } = options;
  const logger = options.logger;
  const onEvent = safeListener(options.onEvent);
  const bolt = boltLogger(logger);
  const clientOptions: webApi.WebClientOptions = {
    ...(options.webApiUrl === undefined ? {} : { slackApiUrl: options.webApiUrl }),
    // The outbound queue owns retries: the client's own retries can post a message twice.
    retryConfig: { retries: 0 },
    rejectRateLimitedCalls: true,
    timeout: tuning.requestTimeoutMs,
    logger: bolt,
  };

  let botId: string | undefined;
  let botUserId: string | undefined;
  const probe = new webApi.WebClient(options.botToken, clientOptions);
  const checkToken = async (): Promise<boolean> => {
    try {
      const result = await probe.auth.test();
      botId = result.bot_id;
      botUserId = result.user_id;
      logger.info({ bot_user: botUserId, team: result.team }, "Slack bot token accepted");
      return true;
    } catch (err) {
      const c = classifySlackError(err);
      if (c.outcome === "rejected" || tokenErrors.has(c.code))
        throw new SlackTokenError(
          `Slack rejected SLACK_BOT_TOKEN: auth.test answered "${c.code}"; check the bot token (xoxb-…) of the installed app`,
        );
      logger.warn({ code: c.code }, "cannot reach the Slack Web API to check the bot token; will retry");
      return false;
    }
  };
  const tokenChecked = await checkToken();

  const receiver =
    options.appToken !== undefined
      ? new SocketModeReceiver({
          appToken: options.appToken,
          logger: bolt,
          ...(options.webApiUrl === undefined
            ? {}
            : { installerOptions: { clientOptions: { slackApiUrl: options.webApiUrl } } }),
        })
      : new HTTPReceiver({
          signingSecret: options.signingSecret,
          // Verified (signature, both-way timestamp window, replay, size) before Bolt sees the request.
          signatureVerification: false,
          endpoints: slackEventsPath,
          logger: bolt,
          dispatchErrorHandler: ({ response }) => {
            if (!response.headersSent) response.writeHead(404);
            response.end();
          },
          processEventErrorHandler: async ({ error, response }) => {
            logger.error({ err: error }, "Slack listener failed");
            if (!response.headersSent) {
              response.writeHead(200);
              response.end();
            }
            return true;
          },
        });
  const app = new App({
    receiver,
    token: options.botToken,
    // Known ids keep Bolt from calling auth.test itself on a click (which fails while Slack is down).
    botId: botId ?? "B00UNKNOWN",
    botUserId: botUserId ?? "U00UNKNOWN",
    clientOptions,
    logger: bolt,
    convoStore: false,
  });

  const messages = options.messages ?? createMemorySlackMessageStore({ clock });
  const leases = options.leases ?? createMemoryLeases(clock);
  const claims = options.claims ?? createMemoryClaims(() => clock.now());
  const caller = createSlackCaller({ client: app.client, concurrency: tuning.concurrency, onEvent });
  const userGroups = createUserGroupResolver({
    caller,
    onError: (err, group) => logger.warn({ err, group }, "cannot list a Slack user group"),
  });
  const queue = createOutboundQueue({
    caller,
    userGroups,
    messages,
    leases,
    clock,
    onEvent,
    onError: (err, approvalId) =>
      logger.error({ err, approval: approvalId }, "Slack outbound work failed; retrying"),
    botId: () => botId,
    backoffBaseMs: tuning.backoffBaseMs,
    backoffMaxMs: tuning.backoffMaxMs,
  });

  /** The latest snapshot of every pending approval, and of finished ones for a while. */
  const approvals = new Map<string, Approval>();
  /** Notices already handed to the queue, per approval. */
  const handed = new Map<string, Set<SlackNotice>>();
  let snapshotRead = false;

  const interactions = registerInteractions({
    app,
    decider: options.decider,
    queue,
    caller,
    approval: (id) => approvals.get(id),
    userGroups,
    userEmails: createUserEmailResolver({ caller }),
    onEvent,
    logger,
    ackBudgetMs: tuning.ackBudgetMs,
    decisionTimeoutMs: tuning.decisionTimeoutMs,
  });

  function onApproval(a: Approval, inSnapshot: boolean): void {
    const known = approvals.get(a.id);
    if (known !== undefined && known.version >= a.version) return;
    approvals.set(a.id, a);
    // Not seen being created: it may have been posted before (by an earlier process or another replica).
    const verify = known === undefined && (inSnapshot || a.version > 1);
    queue.show(a, { verify });
  }

  const stopping = new AbortController();
  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        stopping.signal.removeEventListener("abort", done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      stopping.signal.addEventListener("abort", done, { once: true });
    });

  /** Follows the feed for as long as the gateway runs, watching again (state first) after a failure. */
  async function follow(): Promise<void> {
    let failures = 0;
    while (!stopping.signal.aborted) {
      let inSnapshot = true;
      try {
        // Approvals still shown as undecided: their outcome may have come while the feed was down.
        const shown = await messages.openApprovals(1000).catch((err: unknown) => {
          logger.warn({ err }, "cannot list the approvals shown in Slack");
          return [] as string[];
        });
        const cached = [...approvals.values()].filter((a) => !isTerminal(a.state)).map((a) => a.id);
        const open = [...new Set([...cached, ...shown])].slice(0, 1000);
        for await (const event of options.feed(open, stopping.signal)) {
          if (event.type === "approval") onApproval(event.approval, inSnapshot);
          else if (event.type === "snapshot_complete") {
            inSnapshot = false;
            snapshotRead = true;
            failures = 0;
          }
        }
      } catch (err) {
        if (stopping.signal.aborted) return;
        logger.warn({ err: (err as Error).message }, "the approval feed failed; watching again");
      }
      if (stopping.signal.aborted) return;
      await sleep(Math.min(30_000, tuning.feedRetryMs * 2 ** Math.min(failures++, 10)));
    }
  }

  /** Hands due notices to the queue and forgets finished approvals after a while. */
  function tick(): void {
    const now = clock.now();
    const due = { reminders: 0, escalations: 0, approvals: 0 };
    for (const [id, a] of approvals) {
      if (isTerminal(a.state)) {
        if (now - a.decideTime > 3_600_000) {
          approvals.delete(id);
          handed.delete(id);
        }
        continue;
      }
      let handedNow = false;
      for (const notice of dueNotices(a, now)) {
        let done = handed.get(id);
        if (done === undefined) {
          done = new Set();
          handed.set(id, done);
        }
        if (done.has(notice)) continue;
        done.add(notice);
        queue.notify(a, notice);
        handedNow = true;
        if (notice === "escalation") due.escalations++;
        else due.reminders++;
      }
      if (handedNow) due.approvals++;
    }
    if (due.approvals > 0) onEvent({ type: "notices_due", ...due });
  }

  let server: http.Server | undefined;
  let eventsUrl: string | undefined;
  if (receiver instanceof HTTPReceiver) {
    const httpReceiver = receiver;
    server = http.createServer(
      { requestTimeout: 10_000, headersTimeout: 10_000 },
      createSlackRequestHandler({
        signingSecret: options.signingSecret,
        claims,
        clock,
        onEvent,
        maxBodyBytes: tuning.maxBodyBytes,
        next: (req, res) => {
          try {
            httpReceiver.requestListener(req, res);
          } catch {
            if (!res.headersSent) res.writeHead(404);
            res.end();
          }
        },
      }),
    );
    const s = server;
    const port = await new Promise<number>((resolve, reject) => {
      s.once("error", reject);
      s.listen(options.listen.port, options.listen.host, () => {
        s.off("error", reject);
        resolve((s.address() as AddressInfo).port);
      });
    }).catch(async (err: unknown) => {
      await interactions.close();
      caller.close();
      await queue.close();
      throw new Error(
        `cannot listen for Slack on ${options.listen.host}:${options.listen.port}: ${(err as Error).message}`,
      );
    });
    const host = options.listen.host.includes(":") ? `[${options.listen.host}]` : options.listen.host;
    eventsUrl = `http://${host}:${port}${slackEventsPath}`;
  } else {
    try {
      await app.start();
    } catch (err) {
      await interactions.close();
      caller.close();
      await queue.close();
      throw new Error(`cannot connect to Slack in Socket Mode: ${(err as Error).message}`);
    }
  }

  // Receiving works: now follow the approvals, run the reminders, and keep checking the token if needed.
  const following = follow();
  const ticker = setInterval(tick, tuning.reminderTickMs);
  ticker.unref();
  let tokenRetry: NodeJS.Timeout | undefined;
  if (!tokenChecked) {
    const retry = () => {
      tokenRetry = setTimeout(() => {
        checkToken().then(
          (ok) => {
            if (!ok && !stopping.signal.aborted) retry();
          },
          (err: unknown) => logger.error({ err: (err as Error).message }, "Slack bot token rejected"),
        );
      }, 30_000);
      tokenRetry.unref();
    };
    retry();
  }

  logger.info({ events: eventsUrl ?? "socket mode" }, "Slack gateway started");

  return {
    eventsUrl,
    ready: () => snapshotRead,
    queueStats: () => queue.stats(),
    async close() {
      stopping.abort();
      clearInterval(ticker);
      clearTimeout(tokenRetry);
      if (server !== undefined) {
        const s = server;
        await new Promise<void>((resolve) => {
          s.close(() => resolve());
          s.closeIdleConnections();
          setTimeout(() => s.closeAllConnections(), 1_000).unref();
        });
      } else {
        await app.stop().catch(() => undefined);
      }
      await interactions.close();
      // Calls waiting for a slot or a Retry-After fail now; calls in flight end within their time-out.
      caller.close();
      await queue.close();
      await following.catch(() => undefined);
      if (options.messages === undefined) await messages.close();
      if (options.leases === undefined) await leases.close();
    },
  };
}
