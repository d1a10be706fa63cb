import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { type WebSocket, WebSocketServer } from "ws";
import type { ServeFlags } from "../../server/config/config.js";
import type { Clock } from "../../server/domain/clock.js";
import type { SlackGatewayTuning } from "../../server/slack/gateway.js";
import type { SlackGatewayEvent } from "../../server/slack/gateway-events.js";
import type { ApprovalStore } from "../../server/store/approval-store.js";
import type { TestPki } from "./certs.js";
import { blockActionPayload, interactionBody, postSigned, type SlackPostResult } from "./slack-signing.js";
import { startTestServer, type TestServer } from "./test-server.js";

/** One Web API call the fake received, and how it answered. */
export interface FakeSlackCall {
  method: string;
  /** The form fields, with the JSON ones (blocks, metadata, view, attachments) decoded. */
  args: Record<string, unknown>;
  /** The bearer token sent. */
  token: string | undefined;
  /** When it arrived (the fake's clock, epoch ms). */
  receivedAt: number;
  /** HTTP status answered; undefined while the fake hangs on it. */
  status?: number;
  /** When it was answered (the fake's clock). */
  answeredAt?: number;
  /** The JSON answered. */
  response?: Record<string, unknown>;
  /** The fault injected into this call, if any. */
  fault?: FakeSlackFault["kind"];
}

/** A message as the fake stores it. */
export interface FakeSlackMessage {
  channel: string;
  ts: string;
  text: string;
  blocks: unknown[];
  metadata?: { event_type: string; event_payload: Record<string, unknown> };
  /** Set on thread replies. */
  threadTs?: string;
  botId: string;
  /** Number of `chat.update`s applied. */
  updates: number;
}

/** A failure the fake answers a call with instead of (or after) doing it. */
export type FakeSlackFault =
  /** HTTP 429 with `Retry-After`; nothing happens. */
  | { kind: "rate_limited"; retryAfterSec: number }
  /** `ok: false` with this error; nothing happens. */
  | { kind: "error"; error: string }
  /** This HTTP status; nothing happens. */
  | { kind: "http"; status: number }
  /** The call takes effect, then the answer is this HTTP status (the caller cannot know it worked). */
  | { kind: "http_after_apply"; status: number }
  /** No answer, ever; nothing happens. */
  | { kind: "hang" }
  /** The call takes effect, then no answer, ever. */
  | { kind: "hang_after_apply" };

/** A running fake of the Slack Web API. */
export interface FakeSlack {
  /** Base URL for `SLACK_API_URL`, ending in `/api/`. */
  readonly apiUrl: string;
  /** The bot token it accepts. */
  readonly token: string;
  /** The app-level token it accepts for Socket Mode (`apps.connections.open`). */
  readonly appToken: string;
  readonly botId: string;
  readonly botUserId: string;
  /** Every call received, in order. */
  readonly calls: FakeSlackCall[];
  /** Calls of one method. */
  callsTo(method: string): FakeSlackCall[];
  /** Every message posted (thread replies too), optionally in one channel. */
  messages(channel?: string): FakeSlackMessage[];
  /** Ephemeral messages sent. */
  ephemerals(): { channel: string; user: string; text: string; blocks: unknown[] }[];
  /** Views opened or updated, by view id (the latest view of each). */
  views(): Map<string, Record<string, unknown>>;
  /** The next `times` calls of `method` ("*": any) fail with `fault`. */
  inject(method: string, fault: FakeSlackFault, times?: number): void;
  /** Forgets the faults not used yet. */
  clearFaults(): void;
  /** Slack is down: every call answers 503 and nothing happens. */
  setDown(down: boolean): void;
  /** Members of a user group, for `usergroups.users.list`. */
  setUserGroup(group: string, users: string[]): void;
  /** A user's profile e-mail, for `users.info`; a user without one has no e-mail in their profile. */
  setUserEmail(user: string, email: string): void;
  /** True while a Socket Mode client is connected. */
  socketConnected(): boolean;
  /**
   * Sends an envelope to the Socket Mode client, as Slack does, and resolves with the client's
   * acknowledgement (its `payload`, e.g. a view submission's `response_action`).
   */
  sendEnvelope(
    type: "interactive" | "events_api",
    payload: unknown,
  ): Promise<{ payload?: unknown; elapsedMs: number }>;
  /**
   * Resolves with the first value `probe` returns (anything but undefined or false), checked now and
   * after every call the fake handles; fails after `timeoutMs`.
   */
  waitFor<T>(probe: () => T | undefined | false, what: string, timeoutMs?: number): Promise<T>;
  close(): Promise<void>;
}

const jsonFields = new Set(["blocks", "attachments", "metadata", "view"]);

/**
 * Starts a fake of the Slack Web API on a free port: `auth.test`, `chat.postMessage`, `chat.update`,
 * `chat.postEphemeral`, `chat.getPermalink`, `conversations.open`, `conversations.history`,
 * `conversations.replies`, `views.open`, `views.update`, `usergroups.users.list`. It records every call
 * and can answer 429 with `Retry-After`, fail before or after doing the call, or hang.
 * @param options.clock the fake's time (message ts, call times); give it the server's clock in tests
 *   that move time
 */
export async function startFakeSlack(
  options: { token?: string; clock?: () => number } = {},
): Promise<FakeSlack> {
  const token = options.token ?? "xoxb-fake-bot-token";
  const appToken = "xapp-fake-app-token";
  const sockets = new Set<WebSocket>();
  const acks = new Map<string, (payload: unknown) => void>();
  let envelopeSeq = 0;
  const now = options.clock ?? Date.now;
  const botId = "BFAKEBOT";
  const botUserId = "UFAKEBOT";
  const calls: FakeSlackCall[] = [];
  const messages: FakeSlackMessage[] = [];
  const ephemerals: { channel: string; user: string; text: string; blocks: unknown[] }[] = [];
  const views = new Map<string, Record<string, unknown>>();
  const groups = new Map<string, string[]>();
  const emails = new Map<string, string>();
  const faults: { method: string; fault: FakeSlackFault; left: number }[] = [];
  const hanging = new Set<http.ServerResponse>();
  const waiters = new Set<() => void>();
  let down = false;
  let seq = 0;
  let viewSeq = 0;

  const notify = () => {
    for (const w of [...waiters]) w();
  };

  const nextTs = () => {
    seq++;
    return `${Math.floor(now() / 1000)}.${String(seq).padStart(6, "0")}`;
  };
  const dmOf = (user: string) => `D${user}`;
  const channelOf = (channel: string) => (/^[UW]/.test(channel) ? dmOf(channel) : channel);
  const find = (channel: string, ts: string) => messages.find((m) => m.channel === channel && m.ts === ts);
  const publicMessage = (m: FakeSlackMessage, withMetadata: boolean) => ({
    type: "message",
    ts: m.ts,
    text: m.text,
    blocks: m.blocks,
    bot_id: m.botId,
    ...(m.threadTs === undefined ? {} : { thread_ts: m.threadTs }),
    ...(withMetadata && m.metadata !== undefined ? { metadata: m.metadata } : {}),
  });
  const page = <T>(list: T[], args: Record<string, unknown>) => {
    const limit = Math.max(1, Number(args.limit ?? 100));
    const start = Number(args.cursor ?? 0);
    const slice = list.slice(start, start + limit);
    const more = start + limit < list.length;
    return {
      slice,
      meta: { has_more: more, response_metadata: { next_cursor: more ? String(start + limit) : "" } },
    };
  };

  /** Does the call; returns Slack's answer. */
  function apply(method: string, args: Record<string, unknown>): Record<string, unknown> {
    switch (method) {
      case "auth.test":
        return {
          ok: true,
          url: "https://fake.slack.test/",
          team: "Fake",
          user: "countersign",
          team_id: "TFAKE",
          user_id: botUserId,
          bot_id: botId,
        };
      case "chat.postMessage": {
        const channel = String(args.channel ?? "");
        if (channel === "") return { ok: false, error: "channel_not_found" };
        const message: FakeSlackMessage = {
          channel: channelOf(channel),
          ts: nextTs(),
          text: String(args.text ?? ""),
          blocks: (args.blocks as unknown[]) ?? [],
          ...(args.metadata === undefined
            ? {}
            : { metadata: args.metadata as FakeSlackMessage["metadata"] & object }),
          ...(args.thread_ts === undefined ? {} : { threadTs: String(args.thread_ts) }),
          botId,
          updates: 0,
        };
        messages.push(message);
        return { ok: true, channel: message.channel, ts: message.ts, message: publicMessage(message, true) };
      }
      case "chat.update": {
        const message = find(String(args.channel), String(args.ts));
        if (message === undefined) return { ok: false, error: "message_not_found" };
        message.text = String(args.text ?? message.text);
        message.blocks = (args.blocks as unknown[]) ?? message.blocks;
        if (args.metadata !== undefined)
          message.metadata = args.metadata as FakeSlackMessage["metadata"] & object;
        message.updates++;
        return { ok: true, channel: message.channel, ts: message.ts, text: message.text };
      }
      case "chat.postEphemeral":
        ephemerals.push({
          channel: String(args.channel),
          user: String(args.user),
          text: String(args.text ?? ""),
          blocks: (args.blocks as unknown[]) ?? [],
        });
        return { ok: true, message_ts: nextTs() };
      case "chat.getPermalink":
        return {
          ok: true,
          channel: args.channel,
          permalink: `https://fake.slack.test/archives/${String(args.channel)}/p${String(args.message_ts).replace(".", "")}`,
        };
      case "conversations.open": {
        const users = String(args.users ?? "")
          .split(",")
          .filter((u) => u !== "");
        if (users.length !== 1) return { ok: false, error: "invalid_users" };
        return { ok: true, channel: { id: dmOf(users[0] as string) } };
      }
      case "conversations.history": {
        const channel = String(args.channel);
        const oldest = Number(args.oldest ?? 0);
        const list = messages
          .filter((m) => m.channel === channel && m.threadTs === undefined && Number(m.ts) >= oldest)
          .reverse();
        const { slice, meta } = page(list, args);
        return {
          ok: true,
          messages: slice.map((m) => publicMessage(m, args.include_all_metadata === "true")),
          ...meta,
        };
      }
      case "conversations.replies": {
        const channel = String(args.channel);
        const parent = find(channel, String(args.ts));
        if (parent === undefined) return { ok: false, error: "thread_not_found" };
        const list = [parent, ...messages.filter((m) => m.channel === channel && m.threadTs === parent.ts)];
        const { slice, meta } = page(list, args);
        return {
          ok: true,
          messages: slice.map((m) => publicMessage(m, args.include_all_metadata === "true")),
          ...meta,
        };
      }
      case "views.open": {
        if (typeof args.trigger_id !== "string" || args.trigger_id === "")
          return { ok: false, error: "invalid_trigger_id" };
        const id = `VFAKE${++viewSeq}`;
        const view = { ...(args.view as Record<string, unknown>), id, hash: `hash-${id}` };
        views.set(id, view);
        return { ok: true, view };
      }
      case "views.update": {
        const id = String(args.view_id);
        if (!views.has(id)) return { ok: false, error: "not_found" };
        const view = { ...(args.view as Record<string, unknown>), id, hash: `hash-${id}-${++viewSeq}` };
        views.set(id, view);
        return { ok: true, view };
      }
      case "users.info": {
        const user = String(args.user);
        const email = emails.get(user);
        return { ok: true, user: { id: user, profile: email === undefined ? {} : { email } } };
      }
      case "usergroups.users.list": {
        const users = groups.get(String(args.usergroup));
        return users === undefined ? { ok: false, error: "no_such_subteam" } : { ok: true, users };
      }
      default:
        return { ok: false, error: "unknown_method" };
    }
  }

  function takeFault(method: string): FakeSlackFault | undefined {
    const index = faults.findIndex((f) => f.method === method || f.method === "*");
    if (index < 0) return undefined;
    const entry = faults[index] as (typeof faults)[number];
    if (--entry.left <= 0) faults.splice(index, 1);
    return entry.fault;
  }

  async function readArgs(req: http.IncomingMessage): Promise<Record<string, unknown>> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const text = Buffer.concat(chunks).toString("utf8");
    if ((req.headers["content-type"] ?? "").includes("application/json"))
      return text === "" ? {} : JSON.parse(text);
    const args: Record<string, unknown> = {};
    for (const [key, value] of new URLSearchParams(text)) {
      args[key] = jsonFields.has(key) ? JSON.parse(value) : value;
    }
    return args;
  }

  const server = http.createServer((req, res) => {
    void (async () => {
      const method = new URL(req.url ?? "/", "http://fake").pathname.replace(/^\/api\//, "");
      const args = await readArgs(req);
      const auth = req.headers.authorization;
      const call: FakeSlackCall = {
        method,
        args,
        token: auth?.startsWith("Bearer ") ? auth.slice("Bearer ".length) : undefined,
        receivedAt: now(),
      };
      calls.push(call);
      const answer = (
        status: number,
        body: Record<string, unknown>,
        headers: Record<string, string> = {},
      ) => {
        call.status = status;
        call.answeredAt = now();
        call.response = body;
        res.writeHead(status, { "content-type": "application/json", ...headers });
        res.end(JSON.stringify(body));
        notify();
      };
      if (down) return answer(503, { ok: false, error: "service_unavailable" });
      if (method === "apps.connections.open")
        return call.token === appToken
          ? answer(200, { ok: true, url: `ws://127.0.0.1:${port}/socket` })
          : answer(200, { ok: false, error: "invalid_auth" });
      if (call.token !== token) return answer(200, { ok: false, error: "invalid_auth" });
      const fault = takeFault(method);
      if (fault !== undefined) call.fault = fault.kind;
      switch (fault?.kind) {
        case "rate_limited":
          return answer(
            429,
            { ok: false, error: "ratelimited" },
            { "retry-after": String(fault.retryAfterSec) },
          );
        case "error":
          return answer(200, { ok: false, error: fault.error });
        case "http":
          return answer(fault.status, { ok: false, error: "http_error" });
        case "http_after_apply":
          apply(method, args);
          return answer(fault.status, { ok: false, error: "http_error" });
        case "hang":
        case "hang_after_apply":
          if (fault.kind === "hang_after_apply") apply(method, args);
          hanging.add(res);
          res.once("close", () => hanging.delete(res));
          notify();
          return;
        case undefined:
          return answer(200, apply(method, args));
      }
    })().catch((err: unknown) => {
      res.writeHead(500);
      res.end(String(err));
    });
  });
  const wss = new WebSocketServer({ noServer: true });
  server.on("upgrade", (req, socket, head) => {
    if (new URL(req.url ?? "/", "http://fake").pathname !== "/socket") {
      socket.destroy();
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      sockets.add(ws);
      ws.on("close", () => {
        sockets.delete(ws);
        notify();
      });
      ws.on("message", (data) => {
        const message = JSON.parse(String(data)) as { envelope_id?: string; payload?: unknown };
        if (message.envelope_id !== undefined) acks.get(message.envelope_id)?.(message.payload);
      });
      ws.send(JSON.stringify({ type: "hello", num_connections: 1, connection_info: { app_id: "AFAKE" } }));
      notify();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;

  return {
    apiUrl: `http://127.0.0.1:${port}/api/`,
    token,
    appToken,
    botId,
    botUserId,
    calls,
    callsTo: (method) => calls.filter((c) => c.method === method),
    messages: (channel) => messages.filter((m) => channel === undefined || m.channel === channel),
    ephemerals: () => ephemerals,
    views: () => views,
    inject(method, fault, times = 1) {
      faults.push({ method, fault, left: times });
    },
    clearFaults() {
      faults.length = 0;
    },
    setDown(value) {
      down = value;
    },
    setUserEmail(user, email) {
      emails.set(user, email);
    },
    setUserGroup(group, users) {
      groups.set(group, users);
    },
    socketConnected: () => sockets.size > 0,
    sendEnvelope(type, payload) {
      const socket = [...sockets][0];
      if (socket === undefined) return Promise.reject(new Error("no Socket Mode client is connected"));
      const id = `envelope-${++envelopeSeq}`;
      const started = performance.now();
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          acks.delete(id);
          reject(new Error(`envelope ${id} was not acknowledged within 10 s`));
        }, 10_000);
        acks.set(id, (ack) => {
          clearTimeout(timer);
          acks.delete(id);
          resolve({ ...(ack === undefined ? {} : { payload: ack }), elapsedMs: performance.now() - started });
        });
        socket.send(
          JSON.stringify({
            envelope_id: id,
            type,
            payload,
            accepts_response_payload: true,
            retry_attempt: 0,
          }),
        );
      });
    },
    waitFor<T>(probe: () => T | undefined | false, what: string, timeoutMs = 15_000): Promise<T> {
      return new Promise<T>((resolve, reject) => {
        const check = () => {
          let value: T | undefined | false;
          try {
            value = probe();
          } catch (err) {
            cleanup();
            reject(err);
            return;
          }
          if (value !== undefined && value !== false) {
            cleanup();
            resolve(value);
          }
        };
        const timer = setTimeout(() => {
          cleanup();
          const recent = calls
            .slice(-15)
            .map((c) => `${c.method}→${c.status ?? "hanging"}${c.fault ? `(${c.fault})` : ""}`);
          reject(
            new Error(
              `timed out after ${timeoutMs} ms waiting for: ${what}; last calls: ${recent.join(", ")}`,
            ),
          );
        }, timeoutMs);
        const cleanup = () => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      });
    },
    async close() {
      for (const socket of sockets) socket.terminate();
      wss.close();
      for (const res of hanging) res.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A Countersign server with its Slack gateway pointed at a fake Slack, for the Slack tests. */
export interface SlackTestbed {
  ts: TestServer;
  slack: FakeSlack;
  /** Everything the gateway reported. */
  events: SlackGatewayEvent[];
  /** The same, with when each was reported (performance.now()). */
  timedEvents: { at: number; event: SlackGatewayEvent }[];
  signingSecret: string;
  /** The gateway's interactivity endpoint. */
  eventsUrl: string;
  /** The server's clock, for signing timestamps. */
  nowSec(): number;
  /** Signs and posts an interaction payload, as Slack would. */
  interact(payload: unknown, options?: { timestampSec?: number }): Promise<SlackPostResult>;
  /** Clicks a button of an approval's message (the first message posted for it). */
  click(user: string, actionId: string, approvalId: string): Promise<SlackPostResult>;
  /** The request message of an approval in a channel (its marker says which approval). */
  requestMessage(approvalId: string): FakeSlackMessage | undefined;
  /** Waits for the request message of an approval to satisfy `probe`. */
  waitForMessage(
    approvalId: string,
    probe: (m: FakeSlackMessage) => boolean,
    what: string,
  ): Promise<FakeSlackMessage>;
  close(): Promise<void>;
}

/** A policy with Slack-style people for the Slack tests. */
export const slackTestPolicy = `
version: 1
defaults:
  channel: C0DEFAULT
  timeout: 10m
  unknown_action: deny
  super_approvers: [UADMIN]
policies:
  - name: production-deploy
    match: "deploy.production*"
    channel: C0PROD
    approvers: { users: [U1, U2, U3], groups: [S0RELEASE] }
    required_approvals: 2
    timeout: 30m
    reminders: [10m, 20m]
    escalation: { after: 25m, channel: C0ESC, users: [UONCALL] }
    redaction: { mode: denylist, keys: [api_token] }
    rerequest: { allowed: true, cooldown: 0s, max_per_day: 3 }
  - name: staging-deploy
    match: "deploy.staging"
    channel: C0STAGE
    approvers: { users: [U1, U2] }
    required_approvals: 1
    deny_reason_required: true
    overrides:
      keys: [version, replicas]
      max_keys: 1
      max_diff_bytes: 24
      schema:
        type: object
        properties:
          version: { type: string, pattern: "^v[0-9]+$" }
          replicas: { type: integer, minimum: 1, maximum: 10 }
  - name: db-migrate
    match: "db.migrate"
    channel: C0DB
    approvers: { users: [U1, U2] }
    stages:
      - { name: qa, users: [UQA], required: 1 }
    required_approvals: 1
  - name: secret-rotation
    match: "secrets.rotate"
    dm: true
    approvers: { users: [U1, U2] }
    redaction: { mode: allowlist, keys: [secret_name] }
`;

/** Starts a server whose Slack gateway talks to a new fake Slack. */
export async function startSlackTestbed(
  options: {
    pki?: TestPki;
    policy?: string;
    clock?: Clock;
    store?: ApprovalStore;
    flags?: ServeFlags;
    tuning?: Partial<SlackGatewayTuning>;
    slackToken?: string;
    /** Receive interactions over Socket Mode (SLACK_APP_TOKEN) instead of HTTP. */
    socketMode?: boolean;
  } = {},
): Promise<SlackTestbed> {
  const clock = options.clock;
  const slack = await startFakeSlack(clock === undefined ? {} : { clock: () => clock.now() });
  const signingSecret = "test-signing-secret-0123456789abcdef";
  const events: SlackGatewayEvent[] = [];
  const timedEvents: { at: number; event: SlackGatewayEvent }[] = [];
  let ts: TestServer;
  try {
    ts = await startTestServer({
      ...(options.pki === undefined ? {} : { pki: options.pki }),
      policy: options.policy ?? slackTestPolicy,
      ...(clock === undefined ? {} : { clock }),
      ...(options.store === undefined ? {} : { store: options.store }),
      flags: { slackListen: "127.0.0.1:0", ...options.flags },
      env: {
        SLACK_BOT_TOKEN: options.slackToken ?? slack.token,
        SLACK_SIGNING_SECRET: signingSecret,
        SLACK_API_URL: slack.apiUrl,
        ...(options.socketMode === true ? { SLACK_APP_TOKEN: slack.appToken } : {}),
      },
      slack: {
        onEvent: (e) => {
          events.push(e);
          timedEvents.push({ at: performance.now(), event: e });
        },
        tuning: {
          requestTimeoutMs: 1_000,
          backoffBaseMs: 50,
          backoffMaxMs: 400,
          reminderTickMs: 20,
          ...options.tuning,
        },
      },
    });
  } catch (err) {
    await slack.close();
    throw err;
  }
  const eventsUrl = ts.server.slackEventsUrl ?? "";
  const nowSec = () => Math.floor((clock?.now() ?? Date.now()) / 1000);
  const requestMessage = (approvalId: string) =>
    slack
      .messages()
      .find(
        (m) =>
          m.threadTs === undefined &&
          m.metadata?.event_payload.approval_id === approvalId &&
          String(m.metadata.event_payload.key).startsWith("request:"),
      );
  const interact = (payload: unknown, o: { timestampSec?: number } = {}) =>
    postSigned(eventsUrl, {
      signingSecret,
      body: interactionBody(payload),
      timestampSec: o.timestampSec ?? nowSec(),
    });
  return {
    ts,
    slack,
    events,
    timedEvents,
    signingSecret,
    eventsUrl,
    nowSec,
    interact,
    async click(user, actionId, approvalId) {
      const message = await slack.waitFor(() => requestMessage(approvalId), `the message of ${approvalId}`);
      return interact(
        blockActionPayload({ user, actionId, approvalId, channel: message.channel, messageTs: message.ts }),
      );
    },
    requestMessage,
    waitForMessage(approvalId, probe, what) {
      return slack.waitFor(() => {
        const m = requestMessage(approvalId);
        return m !== undefined && probe(m) ? m : undefined;
      }, what);
    },
    async close() {
      await ts.close();
      await slack.close();
    },
  };
}
