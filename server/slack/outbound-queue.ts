/**
 * The outbound queue: everything the gateway shows in Slack. Callers only say what an approval looks like
 * now (`show`) or that a reminder is due (`notify`); the queue brings Slack there in the background, so a
 * slow or unreachable Slack never slows the API.
 *
 * - One worker per approval, holding the approval's lease for each pass: a pass posts the messages that
 *   do not exist yet and edits the others to the latest version. Versions that arrive while a pass runs
 *   or waits are coalesced: the next pass renders only the newest.
 * - A failed pass is retried, never dropped: after `Retry-After` for a 429, else after an exponential
 *   backoff with jitter. Only a call Slack refuses for good (the request itself is wrong) is given up,
 *   with a `post_failed` event.
 * - A post is never repeated blindly. Every message carries a metadata marker (approval id and message
 *   key); the message store records each post before it is sent. If a post's outcome is unknown (time-out,
 *   5xx, reset), the next attempt first looks for the marker in the channel (`conversations.history`, or
 *   `conversations.replies` in a thread) and only posts when it is not there.
 */
import type { Clock } from "../domain/clock.js";
import { type Approval, isTerminal } from "../domain/types.js";
import {
  renderApprovalMessage,
  renderEscalation,
  renderEscalationNotice,
  renderReminder,
  type SlackMessageContent,
} from "./blocks.js";
import type { SlackGatewayEventListener } from "./gateway-events.js";
import type { Leases } from "./leases.js";
import { isSlackUserId } from "./mrkdwn.js";
import { SlackCallError, type SlackCaller, type SlackResult } from "./slack-calls.js";
import type { SlackMessageRecord, SlackMessageStore } from "./slack-message-store.js";
import type { UserGroupResolver } from "./user-groups.js";

/** The `event_type` of the metadata marker on every message the gateway posts. */
export const slackMessageMarker = "countersign_message";

/** A notice posted in the thread of an approval's messages: `reminder:<n>` (0-based) or `escalation`. */
export type SlackNotice = `reminder:${number}` | "escalation";

/** Options of `createOutboundQueue`. */
export interface OutboundQueueOptions {
  caller: SlackCaller;
  messages: SlackMessageStore;
  leases: Leases;
  /** The product clock: record times and the search window of the no-duplicate check. */
  clock: Clock;
  onEvent: SlackGatewayEventListener;
  /** Lists the members of the user groups of `dm: true` approvals, who get the request by DM too. */
  userGroups?: Pick<UserGroupResolver, "membersOf">;
  /** Receives failures that are not Slack's (e.g. the message store); the work is retried. */
  onError?: (err: unknown, approvalId: string) => void;
  /** The bot's id (from `auth.test`), to recognise our own messages; undefined while unknown. */
  botId?: () => string | undefined;
  /** First retry delay after a failure. @default 1000 */
  backoffBaseMs?: number;
  /** Longest retry delay while Slack fails or is unreachable. @default 60000 */
  backoffMaxMs?: number;
  /** Longest retry delay while Slack refuses for a reason an operator must fix. @default 300000 */
  blockedMaxMs?: number;
  /** How long a pass may hold an approval's lease. @default 60000 */
  leaseMs?: number;
  /** How long the records of a finished approval are kept. @default 24 h */
  retainMs?: number;
  /** How long an ephemeral message or a modal update may wait for Slack before it is dropped. @default 120000 */
  oneOffTtlMs?: number;
  /** Source of jitter. @default Math.random */
  random?: () => number;
}

/** The queue of Slack work. */
export interface OutboundQueue {
  /**
   * Brings the approval's messages to this version (posting them first when they do not exist). Never
   * waits for Slack. Older versions than one already seen are ignored.
   * @param options.verify the approval was not seen being created (a snapshot after a start or a
   *   reconnect): look for earlier posts before posting, and post nothing for an approval already finished
   */
  show(approval: Approval, options?: { verify?: boolean }): void;
  /** Posts a notice in the thread of each of the approval's messages, once, while it is pending. */
  notify(approval: Approval, notice: SlackNotice): void;
  /** Sends an ephemeral message to `user` in `channel`: retried while Slack cannot be reached, at most once otherwise. */
  ephemeral(channel: string, user: string, content: SlackMessageContent): void;
  /** Replaces an open modal's view (idempotent, so retried). */
  updateView(viewId: string, view: Record<string, unknown>): void;
  /** Work items waiting or running, and the age of the oldest, in ms. */
  stats(): { depth: number; oldestAgeMs: number };
  /** Stops retrying and waits (at most `graceMs`) for passes in flight. */
  close(graceMs?: number): Promise<void>;
}

interface Worker {
  latest: Approval;
  verify: boolean;
  notices: Set<SlackNotice>;
  running: boolean;
  dirty: boolean;
  timer: NodeJS.Timeout | undefined;
  failures: number;
  /** When the oldest change this worker has not shown yet arrived (epoch ms, real time). */
  since: number;
  /** Record keys Slack refused for good. */
  gaveUp: Set<string>;
}

interface OneOff {
  method: string;
  args: Record<string, unknown>;
  retryAmbiguous: boolean;
  createdAt: number;
  attempt: number;
  timer: NodeJS.Timeout | undefined;
}

/** Where an approval's request message goes: its channel, or each approver's DM. */
export function destinations(a: Approval): string[] {
  if (a.overrides.channel !== undefined) return [a.overrides.channel];
  if (!a.rules.dm) return a.rules.channel === "" ? [] : [a.rules.channel];
  const users = [...a.rules.stages.flatMap((s) => s.members.users), ...a.rules.approvers.users];
  return [...new Set(users.filter(isSlackUserId))];
}

/** The user groups whose members get an approval's request by DM (none unless the approval is in DM mode). */
function dmGroups(a: Approval): string[] {
  if (a.overrides.channel !== undefined || !a.rules.dm) return [];
  return [...new Set([...a.rules.approvers.groups, ...a.rules.stages.flatMap((s) => s.members.groups)])];
}

/** Creates the outbound queue. */
export function createOutboundQueue(options: OutboundQueueOptions): OutboundQueue {
  const { caller, messages, leases, clock, onEvent } = options;
  const backoffBaseMs = options.backoffBaseMs ?? 1000;
  const backoffMaxMs = options.backoffMaxMs ?? 60_000;
  const blockedMaxMs = options.blockedMaxMs ?? 300_000;
  const leaseMs = options.leaseMs ?? 60_000;
  const retainMs = options.retainMs ?? 24 * 3_600_000;
  const oneOffTtlMs = options.oneOffTtlMs ?? 120_000;
  const random = options.random ?? Math.random;
  const botId = options.botId ?? (() => undefined);
  const workers = new Map<string, Worker>();
  const oneOffs = new Set<OneOff>();
  const passes = new Set<Promise<void>>();
  let closed = false;
  let lastDepth = 0;

  function stats() {
    let oldest = Number.POSITIVE_INFINITY;
    for (const w of workers.values()) if (w.since > 0) oldest = Math.min(oldest, w.since);
    for (const job of oneOffs) oldest = Math.min(oldest, job.createdAt);
    const depth = workers.size + oneOffs.size;
    return {
      depth,
      oldestAgeMs: depth === 0 || oldest === Number.POSITIVE_INFINITY ? 0 : Date.now() - oldest,
    };
  }

  function reportDepth(): void {
    const s = stats();
    if (s.depth === lastDepth) return;
    lastDepth = s.depth;
    onEvent({ type: "queue", ...s });
  }

  /** Exponential backoff with jitter: between half and all of min(cap, base·2^failures). */
  function backoff(failures: number, cap: number): number {
    const ceiling = Math.min(cap, backoffBaseMs * 2 ** Math.min(failures, 30));
    return ceiling / 2 + random() * (ceiling / 2);
  }

  function retryDelay(err: unknown, failures: number): number {
    if (err instanceof SlackCallError) {
      if (err.outcome === "rate_limited") return err.retryAfterMs + random() * 250;
      return backoff(failures, err.outcome === "blocked" ? blockedMaxMs : backoffMaxMs);
    }
    return backoff(failures, backoffMaxMs);
  }

  function marker(approvalId: string, key: string) {
    return { event_type: slackMessageMarker, event_payload: { approval_id: approvalId, key } };
  }

  /** Finds our message with this marker in a channel (or thread) since `since`; its ts, or undefined. */
  async function findPosted(
    channel: string,
    approvalId: string,
    key: string,
    since: number,
    threadTs: string | undefined,
  ): Promise<string | undefined> {
    const method = threadTs === undefined ? "conversations.history" : "conversations.replies";
    const oldest = (Math.max(0, since - 10 * 60_000) / 1000).toFixed(6);
    let cursor: string | undefined;
    for (let page = 0; page < 20; page++) {
      const result = await caller.call(method, {
        channel,
        oldest,
        limit: 200,
        include_all_metadata: true,
        ...(threadTs === undefined ? {} : { ts: threadTs }),
        ...(cursor === undefined ? {} : { cursor }),
      });
      const list = (result.messages ?? []) as {
        ts?: string;
        bot_id?: string;
        metadata?: { event_type?: string; event_payload?: Record<string, unknown> };
      }[];
      const ours = botId();
      for (const m of list) {
        const payload = m.metadata?.event_payload;
        if (
          m.metadata?.event_type === slackMessageMarker &&
          payload?.approval_id === approvalId &&
          payload.key === key &&
          (ours === undefined || m.bot_id === undefined || m.bot_id === ours) &&
          typeof m.ts === "string"
        )
          return m.ts;
      }
      cursor = (result.response_metadata as { next_cursor?: string } | undefined)?.next_cursor;
      if (cursor === undefined || cursor === "") return undefined;
    }
    return undefined;
  }

  /** The channel to post to: the channel id itself, or the DM channel of a user id. */
  async function channelOf(destination: string): Promise<string> {
    if (!isSlackUserId(destination)) return destination;
    const result = await caller.call("conversations.open", { users: destination });
    const id = (result.channel as { id?: string } | undefined)?.id;
    if (id === undefined) throw new SlackCallError("conversations.open", "rejected", "no_channel_id", 200, 0);
    return id;
  }

  /**
   * Posts one message exactly once: a record is stored before the post; after an unknown outcome the
   * message is looked for before posting again.
   */
  async function post(
    w: Worker,
    spec: {
      key: string;
      channel: () => Promise<string>;
      threadTs?: string;
      content: () => Promise<SlackMessageContent> | SlackMessageContent;
      version: number;
    },
    existing: SlackMessageRecord | undefined,
  ): Promise<SlackMessageRecord> {
    const id = w.latest.id;
    const channel =
      existing !== undefined && existing.channel !== "" ? existing.channel : await spec.channel();
    const attemptedAt = existing?.attemptedAt ?? clock.now();
    if (existing !== undefined || w.verify) {
      const ts = await findPosted(
        channel,
        id,
        spec.key,
        existing?.attemptedAt ?? w.latest.createTime,
        spec.threadTs,
      );
      if (ts !== undefined) {
        const found: SlackMessageRecord = { key: spec.key, channel, ts, attemptedAt, version: 0 };
        await messages.put(id, found);
        onEvent({ type: "post_recovered", approvalId: id, key: spec.key, channel, ts });
        return found;
      }
    }
    const content = await spec.content();
    const pending: SlackMessageRecord = { key: spec.key, channel, ts: "", attemptedAt, version: 0 };
    await messages.put(id, pending);
    let result: SlackResult;
    try {
      result = await caller.call(
        "chat.postMessage",
        {
          channel,
          text: content.text,
          blocks: content.blocks,
          metadata: marker(id, spec.key),
          unfurl_links: false,
          unfurl_media: false,
          ...(spec.threadTs === undefined ? {} : { thread_ts: spec.threadTs }),
        },
        { attempt: w.failures + 1 },
      );
    } catch (err) {
      if (err instanceof SlackCallError && err.certainlyNotApplied) await messages.remove(id, spec.key);
      throw err;
    }
    const posted: SlackMessageRecord = {
      ...pending,
      channel: typeof result.channel === "string" ? result.channel : channel,
      ts: String(result.ts),
      version: spec.version,
    };
    await messages.put(id, posted);
    return posted;
  }

  /** Runs `step`; a call Slack refuses for good is given up (reported) instead of retried. */
  async function unlessRejected(w: Worker, key: string, step: () => Promise<void>): Promise<void> {
    try {
      await step();
    } catch (err) {
      if (!(err instanceof SlackCallError) || err.outcome !== "rejected") throw err;
      w.gaveUp.add(key);
      onEvent({ type: "post_failed", approvalId: w.latest.id, key, method: err.method, error: err.code });
    }
  }

  /** One pass over an approval's messages; false when another replica holds its lease. */
  async function pass(w: Worker): Promise<boolean> {
    const id = w.latest.id;
    const lease = await leases.acquire(`slack:${id}`, leaseMs);
    if (lease === undefined) return false;
    try {
      const records = new Map((await messages.list(id)).map((r) => [r.key, r]));
      const targets = await destinationsOf(w, records);
      if (targets.length === 0 && !w.gaveUp.has("request")) {
        w.gaveUp.add("request");
        onEvent({
          type: "post_failed",
          approvalId: id,
          key: "request",
          method: "chat.postMessage",
          error: "no_channel",
        });
      }
      for (const destination of targets) {
        const key = `request:${destination}`;
        if (w.gaveUp.has(key)) continue;
        let record = records.get(key);
        if (
          (record === undefined || record.ts === "") &&
          !(w.verify && isTerminal(w.latest.state) && record === undefined)
        ) {
          await unlessRejected(w, key, async () => {
            const shown = w.latest;
            record = await post(
              w,
              {
                key,
                channel: () => channelOf(destination),
                content: () => renderApprovalMessage(shown),
                version: shown.version,
              },
              record,
            );
            records.set(key, record);
          });
        }
        const current = records.get(key);
        if (current === undefined || current.ts === "" || w.gaveUp.has(key)) continue;
        if (current.version < w.latest.version) {
          await unlessRejected(w, key, async () => {
            const shown = w.latest;
            const content = renderApprovalMessage(shown);
            await caller.call(
              "chat.update",
              {
                channel: current.channel,
                ts: current.ts,
                text: content.text,
                blocks: content.blocks,
                metadata: marker(id, key),
              },
              { attempt: w.failures + 1 },
            );
            const updated = { ...current, version: shown.version };
            await messages.put(id, updated);
            records.set(key, updated);
          });
        }
      }
      if (w.latest.state === "pending") await postNotices(w, records, targets);
      else w.notices.clear();
      w.verify = false;
      const finished =
        isTerminal(w.latest.state) &&
        targets.every((d) => {
          const r = records.get(`request:${d}`);
          return (
            w.gaveUp.has(`request:${d}`) || r === undefined || (r.ts !== "" && r.version >= w.latest.version)
          );
        });
      if (finished) await messages.expire(id, retainMs);
      return true;
    } finally {
      await leases.release(`slack:${id}`, lease).catch((err: unknown) => options.onError?.(err, id));
    }
  }

  /**
   * Where the request goes now: `destinations()`, plus in DM mode each member of the approval's user
   * groups while it is pending, plus every DM already posted (so a member who left a group still sees the
   * outcome). A group Slack refuses to list (e.g. `no_such_subteam`, `missing_scope`) is reported once as
   * a failed post and skipped; other failures to list one fail the pass, which is retried.
   */
  async function destinationsOf(w: Worker, records: Map<string, SlackMessageRecord>): Promise<string[]> {
    const groups = dmGroups(w.latest);
    const listed = destinations(w.latest);
    if (groups.length === 0 || options.userGroups === undefined) return listed;
    const targets = new Set(listed);
    for (const key of records.keys())
      if (key.startsWith("request:") && isSlackUserId(key.slice("request:".length)))
        targets.add(key.slice("request:".length));
    if (w.latest.state !== "pending") return [...targets];
    for (const group of groups) {
      const key = `request-group:${group}`;
      if (w.gaveUp.has(key)) continue;
      try {
        for (const user of await options.userGroups.membersOf(group))
          if (isSlackUserId(user)) targets.add(user);
      } catch (err) {
        if (!(err instanceof SlackCallError) || err.outcome !== "rejected") throw err;
        w.gaveUp.add(key);
        onEvent({ type: "post_failed", approvalId: w.latest.id, key, method: err.method, error: err.code });
      }
    }
    return [...targets];
  }

  async function postNotices(
    w: Worker,
    records: Map<string, SlackMessageRecord>,
    targets: string[],
  ): Promise<void> {
    for (const notice of [...w.notices]) {
      for (const destination of targets) {
        const parent = records.get(`request:${destination}`);
        if (parent === undefined || parent.ts === "") continue;
        const key = `${notice}:${destination}`;
        const done = records.get(key);
        if ((done !== undefined && done.ts !== "") || w.gaveUp.has(key)) continue;
        await unlessRejected(w, key, async () => {
          const shown = w.latest;
          const index = notice === "escalation" ? -1 : Number(notice.slice("reminder:".length));
          const posted = await post(
            w,
            {
              key,
              channel: async () => parent.channel,
              threadTs: parent.ts,
              content: () => (index < 0 ? renderEscalation(shown) : renderReminder(shown, index)),
              version: 0,
            },
            done,
          );
          records.set(key, posted);
          onEvent({
            type: "notice_posted",
            approval: shown,
            notice: index < 0 ? "escalation" : "reminder",
            index,
            channel: parent.channel,
          });
        });
      }
      // The escalation also goes, with a link to the request, to the fallback channel and in a DM to each
      // escalation user: not only mentioned where they may not look.
      if (notice === "escalation") await postEscalationNotices(w, records, targets);
      w.notices.delete(notice);
    }
  }

  /** The escalation notice in the fallback channel and in a DM to each escalation user, once each. */
  async function postEscalationNotices(
    w: Worker,
    records: Map<string, SlackMessageRecord>,
    targets: string[],
  ): Promise<void> {
    const parent = targets
      .map((d) => records.get(`request:${d}`))
      .find((r) => r !== undefined && r.ts !== "");
    const escalation = w.latest.rules.escalation;
    const places = [
      ...(escalation === undefined || escalation.channel === ""
        ? []
        : [
            {
              key: `escalation-notice:${escalation.channel}`,
              notice: "escalation_notice" as const,
              to: escalation.channel,
            },
          ]),
      ...(escalation?.users ?? [])
        .filter(isSlackUserId)
        .map((user) => ({ key: `escalation-dm:${user}`, notice: "escalation_dm" as const, to: user })),
    ];
    for (const { key, notice, to } of places) {
      const done = records.get(key);
      if ((done !== undefined && done.ts !== "") || w.gaveUp.has(key)) continue;
      await unlessRejected(w, key, async () => {
        const shown = w.latest;
        const posted = await post(
          w,
          {
            key,
            channel: () => channelOf(to),
            content: async () =>
              renderEscalationNotice(shown, parent === undefined ? undefined : await permalink(parent)),
            version: 0,
          },
          done,
        );
        records.set(key, posted);
        onEvent({ type: "notice_posted", approval: shown, notice, index: -1, channel: to });
      });
    }
  }

  async function permalink(record: SlackMessageRecord): Promise<string | undefined> {
    try {
      const result = await caller.call("chat.getPermalink", {
        channel: record.channel,
        message_ts: record.ts,
      });
      return typeof result.permalink === "string" ? result.permalink : undefined;
    } catch (err) {
      if (err instanceof SlackCallError && err.outcome === "rejected") return undefined;
      throw err;
    }
  }

  function start(w: Worker): void {
    if (closed || w.running || w.timer !== undefined) {
      if (w.running) w.dirty = true;
      return;
    }
    w.running = true;
    const run = (async () => {
      for (;;) {
        w.dirty = false;
        let delay: number | undefined;
        try {
          if (!(await pass(w))) delay = backoff(w.failures++, leaseMs);
          else w.failures = 0;
        } catch (err) {
          if (!(err instanceof SlackCallError)) options.onError?.(err, w.latest.id);
          delay = retryDelay(err, w.failures++);
        }
        if (closed) break;
        if (delay !== undefined) {
          w.timer = setTimeout(() => {
            w.timer = undefined;
            start(w);
          }, delay);
          w.timer.unref();
          break;
        }
        if (!w.dirty) {
          workers.delete(w.latest.id);
          break;
        }
      }
    })().finally(() => {
      w.running = false;
      passes.delete(run);
      reportDepth();
    });
    passes.add(run);
  }

  function worker(a: Approval): Worker {
    let w = workers.get(a.id);
    if (w === undefined) {
      w = {
        latest: a,
        verify: false,
        notices: new Set(),
        running: false,
        dirty: false,
        timer: undefined,
        failures: 0,
        since: Date.now(),
        gaveUp: new Set(),
      };
      workers.set(a.id, w);
      reportDepth();
    } else if (a.version > w.latest.version) {
      w.latest = a;
    }
    return w;
  }

  function runOneOff(job: OneOff): void {
    if (closed) return;
    job.attempt++;
    const attempt = caller.call(job.method, job.args, { priority: "interactive", attempt: job.attempt });
    const run = attempt.then(
      () => {
        oneOffs.delete(job);
      },
      (err: unknown) => {
        const retryable =
          err instanceof SlackCallError &&
          err.outcome !== "rejected" &&
          (err.certainlyNotApplied || job.retryAmbiguous) &&
          Date.now() - job.createdAt < oneOffTtlMs;
        if (!retryable || closed) {
          oneOffs.delete(job);
          return;
        }
        job.timer = setTimeout(
          () => {
            job.timer = undefined;
            runOneOff(job);
          },
          retryDelay(err, job.attempt - 1),
        );
        job.timer.unref();
      },
    );
    const tracked = run.finally(() => {
      passes.delete(tracked);
      reportDepth();
    });
    passes.add(tracked);
  }

  function oneOff(method: string, args: Record<string, unknown>, retryAmbiguous: boolean): void {
    if (closed) return;
    const job: OneOff = { method, args, retryAmbiguous, createdAt: Date.now(), attempt: 0, timer: undefined };
    oneOffs.add(job);
    reportDepth();
    runOneOff(job);
  }

  return {
    show(approval, showOptions = {}) {
      if (closed) return;
      const existing = workers.get(approval.id);
      if (existing !== undefined && approval.version <= existing.latest.version && !showOptions.verify)
        return;
      const w = worker(approval);
      if (showOptions.verify) w.verify = true;
      start(w);
    },
    notify(approval, notice) {
      if (closed || approval.state !== "pending") return;
      const w = worker(approval);
      w.notices.add(notice);
      start(w);
    },
    ephemeral(channel, user, content) {
      oneOff("chat.postEphemeral", { channel, user, text: content.text, blocks: content.blocks }, false);
    },
    updateView(viewId, view) {
      oneOff("views.update", { view_id: viewId, view }, true);
    },
    stats,
    async close(graceMs = 2_000) {
      closed = true;
      for (const w of workers.values()) if (w.timer !== undefined) clearTimeout(w.timer);
      for (const job of oneOffs) if (job.timer !== undefined) clearTimeout(job.timer);
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.allSettled([...passes]),
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, graceMs);
        }),
      ]);
      clearTimeout(timer);
    },
  };
}
