/**
 * Fault drills (issue #8): a TCP fault proxy between Countersign and one dependency at a time. The Slack
 * Web API hangs; Redis is slow; Redis is gone (connections refused, then held without an answer) and
 * comes back; the connection of a Slack gateway in its own process to the API is cut. In each, what a
 * user observes: calls succeed or fail fast with UNAVAILABLE (never hang), nothing acknowledged is lost,
 * Slack interactions are acked within 3 s, and the service recovers by itself.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { type Client, Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Approval, Decision, State } from "../gen/countersign/v1/approval_pb.js";
import type { ApprovalService } from "../gen/countersign/v1/approval_service_pb.js";
import { slackActions } from "../server/slack/blocks.js";
import type { SlackGatewayEvent } from "../server/slack/gateway-events.js";
import { createTestPki, type TestPki, testIdentities, writePemFiles } from "./support/certs.js";
import { type FakeSlack, type FakeSlackMessage, startFakeSlack } from "./support/fake-slack.js";
import { pollUntil, type RedisServer, startRedis } from "./support/redis.js";
import {
  blockActionPayload,
  interactionBody,
  postSigned,
  type SlackPostResult,
} from "./support/slack-signing.js";
import { createTcpProxy, type TcpProxy } from "./support/tcp-proxy.js";
import { startTestServer, type TestServer } from "./support/test-server.js";
import { waitFor } from "./support/wait.js";

type Approvals = Client<typeof ApprovalService>;

const policy = `
version: 1
defaults: { channel: C0FAULTS, timeout: 10m, unknown_action: deny }
policies:
  - name: faults
    match: "faults.*"
    channel: C0FAULTS
    approvers: { users: [U1, U2, U3] }
    required_approvals: 1
`;
const signingSecret = "faults-signing-secret";
/** `--redis-timeout` of the Redis drills: a call waits this long for a connection, then for its reply. */
const redisTimeoutMs = 1_000;
/** The longest a call may take while Redis misbehaves and still count as failing fast. */
const failFastMs = 2 * redisTimeoutMs + 1_500;
/** Slack wants every interaction acknowledged within this. */
const slackAckMs = 3_000;

let pki: TestPki;
beforeAll(() => {
  pki = createTestPki();
});

/** How a call ended, and how long it took. */
async function outcome<T>(call: Promise<T>): Promise<{ code: Code | "ok"; value?: T; ms: number }> {
  const started = performance.now();
  try {
    const value = await call;
    return { code: "ok", value, ms: performance.now() - started };
  } catch (err) {
    return { code: ConnectError.from(err).code, ms: performance.now() - started };
  }
}

/**
 * Watches an approval: `snapshot` resolves with the first state sent, `final` with the terminal snapshot;
 * both reject when the stream fails first.
 */
function watch(client: Approvals, id: string): { snapshot: Promise<State>; final: Promise<Approval> } {
  const iterator = client.watchApproval({ id })[Symbol.asyncIterator]();
  let seen: { resolve: (state: State) => void; reject: (err: unknown) => void } | undefined;
  const snapshot = new Promise<State>((resolve, reject) => {
    seen = { resolve, reject };
  });
  const final = (async () => {
    for (let msg = await iterator.next(); msg.done !== true; msg = await iterator.next()) {
      const approval = msg.value.approval;
      if (msg.value.heartbeat || approval === undefined) continue;
      seen?.resolve(approval.state);
      if (approval.state !== State.PENDING) return approval;
    }
    throw new Error(`the watch of ${id} ended without a decision`);
  })();
  final.catch((err: unknown) => seen?.reject(err));
  // Handled here; awaiting either still sees the failure.
  snapshot.catch(() => undefined);
  return { snapshot, final };
}

/** The request message of an approval in the fake Slack (its marker names the approval). */
function requestMessage(slack: FakeSlack, id: string): FakeSlackMessage | undefined {
  return slack
    .messages()
    .find(
      (m) =>
        m.threadTs === undefined &&
        m.metadata?.event_payload.approval_id === id &&
        String(m.metadata.event_payload.key).startsWith("request:"),
    );
}

/** Every message posted for an approval (requests, thread replies). */
function messagesOf(slack: FakeSlack, id: string): FakeSlackMessage[] {
  return slack.messages().filter((m) => m.metadata?.event_payload.approval_id === id);
}

/** Signs and posts a button click on an approval's message, as Slack does. */
function click(
  eventsUrl: string,
  user: string,
  actionId: string,
  approvalId: string,
  message: { channel: string; ts: string } = { channel: "C0FAULTS", ts: "1700000000.000001" },
): Promise<SlackPostResult> {
  return postSigned(eventsUrl, {
    signingSecret,
    body: interactionBody(
      blockActionPayload({ user, actionId, approvalId, channel: message.channel, messageTs: message.ts }),
    ),
  });
}

async function create(client: Approvals, title: string): Promise<string> {
  const res = await client.createApproval({ action: "faults.drill", title });
  return res.approval?.id ?? "";
}

describe("fault drill: the Slack Web API hangs", () => {
  let slack: FakeSlack;
  let proxy: TcpProxy;
  let ts: TestServer;
  const events: SlackGatewayEvent[] = [];

  beforeAll(async () => {
    slack = await startFakeSlack();
    proxy = await createTcpProxy({ target: new URL(slack.apiUrl).host });
    ts = await startTestServer({
      pki,
      policy,
      flags: { slackListen: "127.0.0.1:0", deciders: testIdentities.decider },
      env: {
        SLACK_BOT_TOKEN: slack.token,
        SLACK_SIGNING_SECRET: signingSecret,
        SLACK_API_URL: `http://${proxy.address}/api/`,
      },
      slack: {
        onEvent: (e) => events.push(e),
        tuning: { requestTimeoutMs: 1_000, backoffBaseMs: 50, backoffMaxMs: 400 },
      },
    });
  });
  afterAll(async () => {
    await ts?.close();
    await proxy?.close();
    await slack?.close();
  });

  it("creates and decides through the API, acks every click within 3 s, then posts each approval once", async () => {
    const eventsUrl = ts.server.slackEventsUrl ?? "";
    const requester = ts.clients(pki.requester, "grpc").approvals;
    const decider = ts.clients(pki.decider, "connect").approvals;
    const before = await create(requester, "before");
    await slack.waitFor(
      () => requestMessage(slack, before),
      "the message of an approval made before the fault",
    );

    // Slack stops answering: connections open, requests go nowhere.
    proxy.setMode("blackhole");
    const seen = events.length;
    const ids: string[] = [];
    for (let i = 0; i < 6; i++) {
      const created = await outcome(create(requester, `while Slack hangs ${i}`));
      expect(created.code).toBe("ok");
      ids.push(created.value as string);
    }
    const [approvedByApi, deniedByApi, clickedApprove, clickedDeny, clickedInfo] = ids as [
      string,
      string,
      string,
      string,
      string,
    ];
    const watches = new Map(ids.map((id) => [id, watch(requester, id)]));
    for (const w of watches.values()) expect(await w.snapshot).toBe(State.PENDING);

    // People decide through the API (the CLI, an operator) and in Slack.
    const approved = await outcome(
      decider.submitDecision({ id: approvedByApi, approver: "U1", decision: Decision.APPROVE }),
    );
    const denied = await outcome(
      decider.submitDecision({ id: deniedByApi, approver: "U2", decision: Decision.DENY, reason: "no" }),
    );
    expect([approved.code, denied.code]).toEqual(["ok", "ok"]);
    const clicks = [
      await click(eventsUrl, "U1", slackActions.approve, clickedApprove),
      await click(eventsUrl, "U2", slackActions.deny, clickedDeny),
      await click(eventsUrl, "U3", slackActions.info, clickedInfo),
    ];
    for (const c of clicks) {
      expect(c.status).toBe(200);
      expect(c.elapsedMs).toBeLessThan(slackAckMs);
    }
    const byClick = await watches.get(clickedApprove)?.final;
    expect(byClick?.state).toBe(State.APPROVED);
    expect(byClick?.decidedBy).toBe("U1");

    // The gateway has been trying, and nothing reached Slack.
    await waitFor(
      () =>
        events
          .slice(seen)
          .some((e) => e.type === "api_call" && e.method === "chat.postMessage" && e.outcome !== "ok"),
      15_000,
      "a post timing out",
    );
    expect(ids.filter((id) => messagesOf(slack, id).length > 0)).toEqual([]);
    const deny = await outcome(decider.getApproval({ id: clickedDeny }));
    expect(deny.value?.approval?.state).toBe(State.PENDING);

    // Slack answers again; its first two posts land but their answers are lost (the worst case).
    slack.inject("chat.postMessage", { kind: "hang_after_apply" }, 2);
    proxy.setMode("forward");
    const expected = new Map<string, string>([
      [before, "Approval requested"],
      [approvedByApi, "Approved"],
      [deniedByApi, "Denied"],
      [clickedApprove, "Approved"],
      [clickedDeny, "Approval requested"],
      [clickedInfo, "Approval requested"],
      [ids[5] as string, "Approval requested"],
    ]);
    await slack.waitFor(
      () => [...expected].every(([id, word]) => requestMessage(slack, id)?.text.startsWith(word)),
      "every approval shown in Slack as it is now",
      30_000,
    );
    expect(slack.calls.filter((c) => c.fault === "hang_after_apply")).toHaveLength(2);
    // None lost, none duplicated: one message per approval, although two posts were never answered.
    for (const id of expected.keys()) expect(messagesOf(slack, id), id).toHaveLength(1);
    expect(events.some((e) => e.type === "post_recovered")).toBe(true);

    // Recovered: a click on the posted message decides.
    const message = requestMessage(slack, clickedDeny) as FakeSlackMessage;
    const later = await click(eventsUrl, "U3", slackActions.approve, clickedDeny, message);
    expect(later.status).toBe(200);
    expect((await watches.get(clickedDeny)?.final)?.decidedBy).toBe("U3");
    await slack.waitFor(
      () => requestMessage(slack, clickedDeny)?.text.startsWith("Approved"),
      "the message updated to the decision",
    );
  }, 90_000);
});

describe("fault drills: Redis slow, gone and back", () => {
  let redis: RedisServer;
  let proxy: TcpProxy;
  let slack: FakeSlack;
  let ts: TestServer;
  let requester: Approvals;
  let decider: Approvals;
  let eventsUrl: string;
  /** Every approval whose create was acknowledged: each must be in Slack exactly once in the end. */
  const created = new Set<string>();

  beforeAll(async () => {
    redis = await startRedis();
    proxy = await createTcpProxy({ target: { host: "127.0.0.1", port: redis.port } });
    slack = await startFakeSlack();
    // The Slack gateway runs too: its replay cache, message records and leases are in Redis.
    ts = await startTestServer({
      pki,
      policy,
      flags: {
        deciders: testIdentities.decider,
        store: `redis://${proxy.address}`,
        redisTimeout: `${redisTimeoutMs}ms`,
        slackListen: "127.0.0.1:0",
      },
      env: { SLACK_BOT_TOKEN: slack.token, SLACK_SIGNING_SECRET: signingSecret, SLACK_API_URL: slack.apiUrl },
      slack: { tuning: { requestTimeoutMs: 1_000, backoffBaseMs: 50, backoffMaxMs: 400 } },
    });
    requester = ts.clients(pki.requester, "grpc").approvals;
    decider = ts.clients(pki.decider, "grpc").approvals;
    eventsUrl = ts.server.slackEventsUrl ?? "";
  });
  afterAll(async () => {
    await ts?.close();
    await proxy?.close();
    await redis?.stop();
    await slack?.close();
  });

  const readyz = async () => (await fetch(`${ts.server.opsUrl}/readyz`)).status;

  /** Creates and decides, returning what was acknowledged and how every call ended. */
  async function createAndDecide(label: string, count: number) {
    const acknowledged: { id: string; state: State }[] = [];
    const unacknowledged: string[] = [];
    const calls: { code: Code | "ok"; ms: number }[] = [];
    await Promise.all(
      Array.from({ length: count }, async (_, i) => {
        const key = `${label}-${i}`;
        const made = await outcome(
          requester.createApproval({ action: `faults.${label}`, title: key, idempotencyKey: key }),
        );
        calls.push(made);
        const id = made.value?.approval?.id;
        if (id === undefined) {
          unacknowledged.push(key);
          return;
        }
        created.add(id);
        acknowledged.push({ id, state: State.PENDING });
        const decision = i % 2 === 0 ? Decision.APPROVE : Decision.DENY;
        const decided = await outcome(
          decider.submitDecision({ id, approver: "U1", decision, interactionId: `click-${key}` }),
        );
        calls.push(decided);
        if (decided.code === "ok") acknowledged.push({ id, state: decided.value?.approval?.state ?? 0 });
      }),
    );
    return { acknowledged, unacknowledged, calls };
  }

  /** Retries creates that were not acknowledged (they may have been stored): each exists once after. */
  async function retryCreates(action: string, keys: string[]) {
    for (const key of keys) {
      const first = await requester.createApproval({ action, title: key, idempotencyKey: key });
      const again = await requester.createApproval({ action, title: key, idempotencyKey: key });
      expect(again.approval?.id).toBe(first.approval?.id);
      created.add(first.approval?.id ?? "");
    }
  }

  /** Every acknowledged create is there, and every acknowledged decision stands. */
  async function expectNothingLost(acknowledged: { id: string; state: State }[]) {
    const latest = new Map<string, State>();
    for (const a of acknowledged)
      if (a.state !== State.PENDING || !latest.has(a.id)) latest.set(a.id, a.state);
    for (const [id, state] of latest) {
      const { approval } = await decider.getApproval({ id });
      if (state === State.PENDING) expect(approval?.id).toBe(id);
      else expect(approval?.state, id).toBe(state);
    }
  }

  /** A pending approval whose Slack message is posted, with a watcher that has its snapshot. */
  async function shownInSlack(title: string) {
    const id = await create(requester, title);
    created.add(id);
    const watcher = watch(requester, id);
    expect(await watcher.snapshot).toBe(State.PENDING);
    const message = await slack.waitFor(() => requestMessage(slack, id), `the message of ${title}`, 30_000);
    return { id, watcher, message };
  }

  /**
   * After a click made while Redis misbehaved: the decision lands once Redis is back, or the clicker is
   * told to try again and nothing changed, in which case the click is repeated. Resolves with the decision.
   */
  async function clickOutcome(
    id: string,
    user: string,
    watcher: ReturnType<typeof watch>,
    message: FakeSlackMessage,
  ) {
    const told = () => slack.ephemerals().some((e) => e.user === user && e.text.includes("Please try again"));
    const first = await Promise.race([
      watcher.final,
      slack
        .waitFor(() => told(), `the decision of ${id} or a notice to ${user}`, 45_000)
        .then(() => undefined),
    ]);
    if (first !== undefined) return first;
    expect((await decider.getApproval({ id })).approval?.state).toBe(State.PENDING);
    const again = await click(eventsUrl, user, slackActions.approve, id, message);
    expect(again.status).toBe(200);
    return watcher.final;
  }

  it("keeps answering while Redis is slow, and fails fast with UNAVAILABLE when it is slower than the timeout", async () => {
    const clicked = await shownInSlack("clicked while Redis is slow");

    // Slow: 100 ms each way, well within the timeout.
    proxy.setLatency(100);
    const slow = await createAndDecide("slow", 20);
    for (const c of slow.calls) {
      expect(["ok", Code.Unavailable]).toContain(c.code);
      expect(c.ms).toBeLessThan(failFastMs);
    }
    expect(slow.calls.filter((c) => c.code === "ok").length).toBeGreaterThan(slow.calls.length / 2);

    // Slower than the timeout: every call fails fast, none hangs; a click is still acked in time.
    proxy.setLatency(redisTimeoutMs + 500);
    const slower = await createAndDecide("slower", 10);
    for (const c of slower.calls) {
      expect(c.code).toBe(Code.Unavailable);
      expect(c.ms).toBeLessThan(failFastMs);
    }
    const ack = await click(eventsUrl, "U2", slackActions.approve, clicked.id, clicked.message);
    expect(ack.status).toBe(200);
    expect(ack.elapsedMs).toBeLessThan(slackAckMs);

    // Fast again: nothing acknowledged was lost, and each create that was not acknowledged (it may still
    // have been stored) exists exactly once after its retry with the same idempotency key. (The slow
    // connections are cut as the latency drops: the test proxy could reorder bytes already delayed.)
    proxy.setLatency(0);
    proxy.dropConnections();
    await pollUntil(async () => (await readyz()) === 200, 30_000, "/readyz 200 once Redis is fast again");
    await expectNothingLost(slow.acknowledged);
    await retryCreates("faults.slow", slow.unacknowledged);
    await retryCreates("faults.slower", slower.unacknowledged);
    const decided = await clickOutcome(clicked.id, "U2", clicked.watcher, clicked.message);
    expect([decided.state, decided.decidedBy]).toEqual([State.APPROVED, "U2"]);
    const after = await createAndDecide("fast-again", 5);
    expect(after.calls.map((c) => c.code)).toEqual(after.calls.map(() => "ok"));
  }, 90_000);

  it("fails fast while Redis is gone, reports not ready, and recovers by itself; watchers hear later decisions", async () => {
    expect(await readyz()).toBe(200);
    const before = await createAndDecide("before-outage", 4);
    const pending = [await create(requester, "watched 1"), await create(requester, "watched 2")];
    const watches = pending.map((id) => watch(requester, id));
    for (const w of watches) expect(await w.snapshot).toBe(State.PENDING);

    for (const fault of ["refuse", "blackhole"] as const) {
      const clicked = await shownInSlack(`clicked while Redis is ${fault}`);
      // Its post may still be on its way when Redis goes.
      created.add(await create(requester, `made just before Redis is ${fault}`));

      // Gone: new connections are refused and open ones cut, or everything is held without an answer.
      proxy.setMode(fault);
      if (fault === "refuse") proxy.dropConnections();
      const gap = await createAndDecide(`during-${fault}`, 4);
      const reads = await Promise.all(pending.map((id) => outcome(decider.getApproval({ id }))));
      for (const c of [...gap.calls, ...reads]) {
        expect(c.code, fault).toBe(Code.Unavailable);
        expect(c.ms, fault).toBeLessThan(failFastMs);
      }
      expect(await readyz()).toBe(503);
      const ack = await click(eventsUrl, "U3", slackActions.approve, clicked.id, clicked.message);
      expect(ack.status, fault).toBe(200);
      expect(ack.elapsedMs, fault).toBeLessThan(slackAckMs);

      // Back: ready again without anyone's help, and every call works.
      proxy.setMode("forward");
      await pollUntil(async () => (await readyz()) === 200, 30_000, `/readyz 200 after Redis was ${fault}`);
      const recovered = await createAndDecide(`after-${fault}`, 4);
      expect(recovered.calls.map((c) => c.code)).toEqual(recovered.calls.map(() => "ok"));
      await retryCreates(`faults.during-${fault}`, gap.unacknowledged);
      const decided = await clickOutcome(clicked.id, "U3", clicked.watcher, clicked.message);
      expect([decided.state, decided.decidedBy], fault).toEqual([State.APPROVED, "U3"]);
    }

    // Nothing acknowledged before the outages was lost, and the watchers opened before them hear the
    // decisions made after them.
    await expectNothingLost(before.acknowledged);
    await decider.submitDecision({ id: pending[0] as string, approver: "U2", decision: Decision.APPROVE });
    await decider.submitDecision({ id: pending[1] as string, approver: "U3", decision: Decision.DENY });
    const finals = await Promise.all(watches.map((w) => w.final));
    expect(finals.map((a) => [a.state, a.decidedBy])).toEqual([
      [State.APPROVED, "U2"],
      [State.DENIED, "U3"],
    ]);
    for (const id of pending) created.add(id);

    // Slack caught up with everything, and posted each approval once through slowness and outages.
    await slack.waitFor(
      () => [...created].every((id) => requestMessage(slack, id) !== undefined),
      "every approval posted",
      45_000,
    );
    expect([...created].filter((id) => messagesOf(slack, id).length !== 1)).toEqual([]);
  }, 120_000);
});

/** A Slack gateway started as its own process (`countersign serve --components slack`). */
interface GatewayProcess {
  child: ChildProcess;
  eventsUrl: string;
  opsUrl: string;
  output(): string;
  exited: Promise<number | null>;
}

function startGatewayProcess(args: string[], env: NodeJS.ProcessEnv): Promise<GatewayProcess> {
  const child = spawn(
    process.execPath,
    ["--import", "tsx", join(import.meta.dirname, "../clients/cli/countersign.ts"), "serve", ...args],
    { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] },
  );
  let output = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    output += chunk.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`the gateway did not start within 30 s:\n${output}`));
    }, 30_000);
    exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`the gateway exited (${code}) before serving:\n${output}`));
    }, reject);
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on("line", (line) => {
      output += `${line}\n`;
      if (!line.includes('"Slack gateway is serving"')) return;
      clearTimeout(timer);
      const info = JSON.parse(line) as { slack: string; ops: string };
      resolve({ child, eventsUrl: info.slack, opsUrl: info.ops, output: () => output, exited });
    });
  });
}

describe("fault drill: the gateway's connection to the API is cut", () => {
  let slack: FakeSlack;
  let api: TestServer;
  let proxy: TcpProxy;
  let gateway: GatewayProcess;

  beforeAll(async () => {
    slack = await startFakeSlack();
    api = await startTestServer({ pki, policy, flags: { deciders: testIdentities.decider } });
    proxy = await createTcpProxy({ target: api.server.grpcAddress });
    const files = writePemFiles({
      "gateway.pem": pki.decider.cert,
      "gateway-key.pem": pki.decider.key,
      "ca.pem": pki.ca,
    });
    gateway = await startGatewayProcess(
      [
        "--components",
        "slack",
        "--api-url",
        `https://${proxy.address}`,
        "--api-tls-cert",
        files["gateway.pem"] as string,
        "--api-tls-key",
        files["gateway-key.pem"] as string,
        "--api-tls-ca",
        files["ca.pem"] as string,
        "--slack-listen",
        "127.0.0.1:0",
        "--ops-listen",
        "127.0.0.1:0",
      ],
      { SLACK_BOT_TOKEN: slack.token, SLACK_SIGNING_SECRET: signingSecret, SLACK_API_URL: slack.apiUrl },
    );
  }, 60_000);
  afterAll(async () => {
    gateway?.child.kill("SIGKILL");
    await gateway?.exited;
    // Each teardown is bounded: a slow close on a loaded machine must not fail the drill after it passed.
    const bounded = (what: string, p: Promise<unknown> | undefined) =>
      Promise.race([p, new Promise((resolve) => setTimeout(resolve, 20_000, what)).then(() => undefined)]);
    await bounded("proxy", proxy?.close());
    await Promise.all([bounded("api", api?.close()), bounded("slack", slack?.close())]);
  }, 90_000);

  it("acks clicks within 3 s while cut, loses no decision (it lands, or the user is told to retry), and recovers by itself", async () => {
    const requester = api.clients(pki.requester, "grpc").approvals;
    const [first, second] = [await create(requester, "cut 1"), await create(requester, "cut 2")];
    const watches = new Map([first, second].map((id) => [id, watch(requester, id)]));
    const shown = (id: string) =>
      slack.waitFor(() => requestMessage(slack, id), `the message of ${id}`, 30_000);
    const [firstMessage, secondMessage] = [await shown(first), await shown(second)];
    const retryNotices = (user: string) =>
      slack.ephemerals().filter((e) => e.user === user && e.text.includes("Please try again"));

    // Cut while a click is on its way: it is acked, and lands once the connection is back.
    proxy.setMode("refuse");
    proxy.dropConnections();
    const refused = proxy.stats().refused;
    const landing = await click(gateway.eventsUrl, "U1", slackActions.approve, first, firstMessage);
    expect(landing.status).toBe(200);
    expect(landing.elapsedMs).toBeLessThan(slackAckMs);
    await waitFor(() => proxy.stats().refused > refused, 10_000, "the gateway trying to reach the API");
    proxy.setMode("forward");
    const landed = await watches.get(first)?.final;
    expect([landed?.state, landed?.decidedBy]).toEqual([State.APPROVED, "U1"]);
    expect(retryNotices("U1")).toEqual([]);

    // Cut for longer than the gateway keeps trying: the clicker is told to retry, and nothing changed.
    proxy.setMode("refuse");
    proxy.dropConnections();
    const meanwhile = await create(requester, "made during the cut");
    const told = await click(gateway.eventsUrl, "U2", slackActions.approve, second, secondMessage);
    expect(told.status).toBe(200);
    expect(told.elapsedMs).toBeLessThan(slackAckMs);
    await slack.waitFor(() => retryNotices("U2").length > 0, "U2 told to try again", 45_000);
    const unchanged = (await requester.getApproval({ id: second })).approval;
    expect([unchanged?.state, unchanged?.votes.length]).toEqual([State.PENDING, 0]);

    // Back: the gateway reconnects by itself, shows what happened meanwhile, and the retried click lands.
    proxy.setMode("forward");
    await slack.waitFor(
      () => requestMessage(slack, meanwhile),
      "the approval made during the cut posted",
      45_000,
    );
    await slack.waitFor(
      () => requestMessage(slack, first)?.text.startsWith("Approved"),
      "the first message showing its decision",
      45_000,
    );
    const retried = await click(gateway.eventsUrl, "U2", slackActions.approve, second, secondMessage);
    expect(retried.status).toBe(200);
    const decided = await watches.get(second)?.final;
    expect([decided?.state, decided?.decidedBy]).toEqual([State.APPROVED, "U2"]);
    await slack.waitFor(
      () => requestMessage(slack, second)?.text.startsWith("Approved"),
      "the second message showing its decision",
      30_000,
    );
    for (const id of [first, second, meanwhile]) expect(messagesOf(slack, id), id).toHaveLength(1);
    expect((await fetch(`${gateway.opsUrl}/readyz`)).status).toBe(200);

    gateway.child.kill("SIGTERM");
    expect(await gateway.exited).toBe(0);
  }, 120_000);
});
