/**
 * Clicks and modal submissions. Every one is acknowledged first (Slack wants an answer within 3 s,
 * whatever the store or Slack is doing) and then turned into a call of the generated ApprovalService
 * client: `SubmitDecision` with the Slack user as the approver and the Slack interaction as the
 * interaction id, so a retried call is a no-op. A click that is not allowed gets an ephemeral answer that
 * says why, and changes nothing.
 */
import { parse as parseQuery } from "node:querystring";
import type { Client } from "@connectrpc/connect";
import { Code, ConnectError } from "@connectrpc/connect";
import type { App, BlockAction, ButtonAction, ViewSubmitAction } from "@slack/bolt";
import type { Logger } from "pino";
import { Decision as DecisionMessage } from "../../gen/countersign/v1/approval_pb.js";
import type { ApprovalService } from "../../gen/countersign/v1/approval_service_pb.js";
import { BadRequestSchema } from "../../gen/google/rpc/error_details_pb.js";
import type { FieldViolation } from "../domain/errors.js";
import { type Approval, type Decision, isTerminal, type JsonObject } from "../domain/types.js";
import { renderApprovalDetails, type SlackMessageContent, slackActions } from "./blocks.js";
import type { SlackGatewayEventListener } from "./gateway-events.js";
import {
  denyModal,
  editModal,
  type ModalContext,
  modalErrors,
  noticeModal,
  parseModalContext,
  readEditSubmission,
  readReason,
  slackViews,
  type ViewStateValues,
} from "./modals.js";
import { escapeText } from "./mrkdwn.js";
import type { OutboundQueue } from "./outbound-queue.js";
import { SlackCallError, type SlackCaller } from "./slack-calls.js";
import type { UserEmailResolver } from "./user-emails.js";
import { namesPeopleByEmail, requesterByEmail } from "./user-emails.js";
import type { UserGroupResolver } from "./user-groups.js";

/** Options of `registerInteractions`. */
export interface InteractionsOptions {
  app: App;
  /** The generated client the clicks become calls of (in process, or over gRPC with mTLS). */
  decider: Client<typeof ApprovalService>;
  queue: OutboundQueue;
  caller: SlackCaller;
  /** The gateway's latest snapshot of an approval (from the change feed). */
  approval: (id: string) => Approval | undefined;
  userGroups: UserGroupResolver;
  userEmails: UserEmailResolver;
  onEvent: SlackGatewayEventListener;
  logger: Logger;
  /** How long a modal submission waits for the decision before answering "working on it". @default 2000 */
  ackBudgetMs?: number;
  /** Deadline of one SubmitDecision call. @default 15000 */
  decisionTimeoutMs?: number;
  /** Calls of SubmitDecision while the API is unavailable (same interaction id each time). @default 5 */
  decisionAttempts?: number;
  /** First delay between those calls; doubles each time. @default 500 */
  decisionRetryMs?: number;
}

/** Running interaction handlers. */
export interface Interactions {
  /** Waits (at most `graceMs`) for the work of clicks already acknowledged. */
  close(graceMs?: number): Promise<void>;
}

/** How a decision submitted for a click ended. */
type Outcome =
  | { kind: "recorded"; approval: Approval | undefined }
  | { kind: "unchanged" }
  | { kind: "refused"; code: "permission_denied" | "failed_precondition"; message: string }
  | { kind: "invalid"; violations: FieldViolation[]; message: string }
  | { kind: "not_found" }
  | { kind: "unavailable"; message: string };

const decisionEnum: Record<Decision, DecisionMessage> = {
  approve: DecisionMessage.APPROVE,
  deny: DecisionMessage.DENY,
  acknowledge: DecisionMessage.ACKNOWLEDGE,
};

/** Codes after which the same call (same interaction id) is safe and useful to repeat. */
const transient = new Set([
  Code.Unavailable,
  Code.DeadlineExceeded,
  Code.ResourceExhausted,
  Code.Aborted,
  Code.Unknown,
]);

function ephemeralText(text: string): SlackMessageContent {
  return { text, blocks: [{ type: "section", text: { type: "mrkdwn", text } }] };
}

/** What to tell the clicker about an outcome that was not a plain success. */
function outcomeText(outcome: Outcome): string {
  switch (outcome.kind) {
    case "recorded":
      return "Your decision was recorded.";
    case "unchanged":
      return "You already decided on this request; your first decision stands.";
    case "refused":
      return `Nothing changed: ${escapeText(outcome.message)}.`;
    case "invalid":
      return `Nothing changed: ${escapeText(outcome.message)}`;
    case "not_found":
      return "Nothing changed: this request no longer exists.";
    case "unavailable":
      return `Nothing changed: Countersign could not record it (${escapeText(outcome.message)}). Please try again in a moment.`;
  }
}

/** The action ids of Countersign's buttons: every one the gateway's action listener takes. */
const countersignActionIds = /^countersign_/;
/** The callback ids of Countersign's modals: every one the gateway's view listener takes. */
const countersignViewIds = new RegExp(`^(${slackViews.deny}|${slackViews.edit})$`);

const formContentType = "application/x-www-form-urlencoded";

type JsonRecord = Record<string, unknown>;

function isRecord(value: unknown): value is JsonRecord {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** The first of these optional fields (by path) that is present but not a string. */
function nonString(fields: [string, unknown][]): string | undefined {
  for (const [path, value] of fields)
    if (value !== undefined && value !== null && typeof value !== "string")
      return `${path}: expected a string`;
  return undefined;
}

/** Why a submitted view's `state.values` is not block id → action id → `{ value: string | null }`. */
function viewStateProblem(state: unknown): string | undefined {
  if (state === undefined) return undefined;
  if (!isRecord(state)) return "payload.view.state: expected an object";
  if (state.values === undefined) return undefined;
  if (!isRecord(state.values)) return "payload.view.state.values: expected an object";
  for (const [block, actions] of Object.entries(state.values)) {
    if (!isRecord(actions)) return `payload.view.state.values.${block}: expected an object`;
    for (const [action, element] of Object.entries(actions)) {
      const path = `payload.view.state.values.${block}.${action}`;
      if (!isRecord(element)) return `${path}: expected an object`;
      const problem = nonString([[`${path}.value`, element.value]]);
      if (problem !== undefined) return problem;
    }
  }
  return undefined;
}

/** Why a parsed interaction payload is not a click on a Countersign button or a Countersign form. */
function payloadProblem(p: JsonRecord): string | undefined {
  // Bolt routes by these before `type`: a payload with one of them would reach no listener.
  for (const key of ["event", "command", "name"])
    if (p[key] !== undefined) return `payload.${key}: not part of an interaction`;
  if (!isRecord(p.user) || typeof p.user.id !== "string" || p.user.id === "")
    return "payload.user.id: expected the id of the Slack user who acted";
  for (const key of ["team", "enterprise", "channel", "container", "message"])
    if (p[key] !== undefined && p[key] !== null && !isRecord(p[key]))
      return `payload.${key}: expected an object`;
  const field = (object: string, key: string): unknown => {
    const parent = p[object];
    return isRecord(parent) ? parent[key] : undefined;
  };
  const common = nonString([
    ["payload.trigger_id", p.trigger_id],
    ["payload.response_url", p.response_url],
    ["payload.user.team_id", p.user.team_id],
    ["payload.team.id", field("team", "id")],
    ["payload.enterprise.id", field("enterprise", "id")],
    ["payload.channel.id", field("channel", "id")],
    ["payload.container.channel_id", field("container", "channel_id")],
    ["payload.container.message_ts", field("container", "message_ts")],
    ["payload.message.ts", field("message", "ts")],
  ]);
  if (common !== undefined) return common;
  switch (p.type) {
    case "block_actions": {
      if (!Array.isArray(p.actions) || p.actions.length === 0)
        return "payload.actions: expected the clicked action";
      const action: unknown = p.actions[0];
      if (!isRecord(action)) return "payload.actions[0]: expected an object";
      if (typeof action.action_id !== "string" || !countersignActionIds.test(action.action_id))
        return "payload.actions[0].action_id: not one of Countersign's buttons";
      return nonString([
        ["payload.actions[0].value", action.value],
        ["payload.actions[0].action_ts", action.action_ts],
        ["payload.actions[0].block_id", action.block_id],
        ["payload.actions[0].type", action.type],
      ]);
    }
    case "view_submission": {
      if (p.actions !== undefined) return "payload.actions: not part of a form submission";
      const view = p.view;
      if (!isRecord(view)) return "payload.view: expected the submitted form";
      if (typeof view.callback_id !== "string" || !countersignViewIds.test(view.callback_id))
        return "payload.view.callback_id: not one of Countersign's forms";
      if (typeof view.id !== "string" || view.id === "") return "payload.view.id: expected the form's id";
      return (
        nonString([
          ["payload.view.private_metadata", view.private_metadata],
          ["payload.view.team_id", view.team_id],
        ]) ?? viewStateProblem(view.state)
      );
    }
    default:
      return typeof p.type === "string"
        ? `payload.type ${JSON.stringify(p.type.slice(0, 40))}: Countersign handles only block_actions and view_submission`
        : "payload.type: expected block_actions or view_submission";
  }
}

/**
 * Why a verified request to the interactivity endpoint is not one the gateway handles, naming the field;
 * undefined when it is (a click on a Countersign button, a Countersign form submitted, or Slack's own
 * `ssl_check` / `url_verification`). Checked before Bolt parses the body: Bolt trusts the payload's
 * shape (a `null` payload throws in its receiver) and never answers a payload no listener takes.
 * @param contentType the request's `content-type` (Bolt parses a form only under exactly this type)
 */
export function interactionRequestProblem(contentType: string | undefined, body: Buffer): string | undefined {
  const text = body.toString("utf8");
  if (contentType !== formContentType) {
    // Bolt parses any other body as JSON; of those, it answers only Slack's URL verification.
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      return `content-type ${JSON.stringify(contentType ?? "")}: expected ${formContentType} with a payload field`;
    }
    if (isRecord(parsed) && parsed.type === "url_verification" && typeof parsed.challenge === "string")
      return undefined;
    return `expected ${formContentType} with a payload field: only interactions are handled here`;
  }
  const fields = parseQuery(text);
  const payload = fields.payload;
  if (payload === undefined)
    return fields.ssl_check === "1" ? undefined : "no payload field: not a Slack interaction";
  if (typeof payload !== "string") return "payload: given more than once";
  let parsed: unknown;
  try {
    parsed = JSON.parse(payload);
  } catch {
    return "payload: not valid JSON";
  }
  return isRecord(parsed) ? payloadProblem(parsed) : "payload: expected a JSON object";
}

/** Registers the gateway's action and view handlers on the Bolt app. */
export function registerInteractions(options: InteractionsOptions): Interactions {
  const { app, decider, queue, caller, userGroups, userEmails, onEvent, logger } = options;
  const ackBudgetMs = options.ackBudgetMs ?? 2_000;
  const decisionTimeoutMs = options.decisionTimeoutMs ?? 15_000;
  const decisionAttempts = options.decisionAttempts ?? 5;
  const decisionRetryMs = options.decisionRetryMs ?? 500;
  const inFlight = new Set<Promise<void>>();
  const closing = new AbortController();

  /** Runs work after the ack, tracked for shutdown; its failures are logged, never thrown. */
  function detach(work: () => Promise<void>): void {
    const run = work()
      .catch((err: unknown) => logger.error({ err }, "Slack interaction failed"))
      .finally(() => inFlight.delete(run));
    inFlight.add(run);
  }

  function tell(channel: string, user: string, text: string): void {
    if (channel === "") {
      logger.warn({ user }, "no channel to answer a Slack interaction in");
      return;
    }
    queue.ephemeral(channel, user, ephemeralText(text));
  }

  async function wait(ms: number): Promise<void> {
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        closing.signal.removeEventListener("abort", done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      closing.signal.addEventListener("abort", done, { once: true });
    });
  }

  /** SubmitDecision for a click, retried with the same interaction id while the API is unavailable. */
  async function decide(input: {
    approvalId: string;
    user: string;
    decision: Decision;
    interactionId: string;
    action: string;
    reason?: string;
    editedParams?: JsonObject;
  }): Promise<Outcome> {
    const known = options.approval(input.approvalId);
    let groups: string[] = [];
    if (known !== undefined) groups = await userGroups.groupsOf(input.user, known);
    // Where a rule names people by e-mail, the clicker's e-mail goes with the vote; when the requester is
    // named by e-mail and the clicker's address cannot be found, the vote is refused, never allowed.
    let aliases: string[] = [];
    if (known !== undefined && namesPeopleByEmail(known)) {
      try {
        aliases = [await userEmails.emailOf(input.user)];
      } catch (err) {
        if (requesterByEmail(known)) {
          const message = `Countersign could not look up your e-mail address in Slack (${err instanceof Error ? err.message : String(err)}), so it cannot check that you did not request this approval; nothing changed`;
          onEvent({
            type: "unauthorized",
            source: "gateway",
            approvalId: input.approvalId,
            user: input.user,
            action: input.action,
            code: "permission_denied",
            message,
          });
          return { kind: "refused", code: "permission_denied", message };
        }
      }
    }
    let last = "";
    for (let attempt = 1; attempt <= decisionAttempts; attempt++) {
      try {
        const res = await decider.submitDecision(
          {
            id: input.approvalId,
            approver: input.user,
            approverGroups: groups,
            approverAliases: aliases,
            decision: decisionEnum[input.decision],
            reason: input.reason ?? "",
            interactionId: input.interactionId,
            ...(input.editedParams === undefined ? {} : { editedParams: input.editedParams }),
          },
          { timeoutMs: decisionTimeoutMs },
        );
        // A repeat of our own call after a lost answer reports "not recorded": it was, the first time.
        if (!res.recorded && attempt === 1) return { kind: "unchanged" };
        return { kind: "recorded", approval: known };
      } catch (err) {
        const ce = ConnectError.from(err);
        if (ce.code === Code.PermissionDenied || ce.code === Code.FailedPrecondition) {
          const code = ce.code === Code.PermissionDenied ? "permission_denied" : "failed_precondition";
          onEvent({
            type: "unauthorized",
            source: "service",
            approvalId: input.approvalId,
            user: input.user,
            action: input.action,
            code,
            message: ce.rawMessage,
          });
          return { kind: "refused", code, message: ce.rawMessage };
        }
        if (ce.code === Code.InvalidArgument) {
          const violations = ce
            .findDetails(BadRequestSchema)
            .flatMap((d) => d.fieldViolations.map((v) => ({ field: v.field, description: v.description })));
          return { kind: "invalid", violations, message: ce.rawMessage };
        }
        if (ce.code === Code.NotFound) return { kind: "not_found" };
        last = ce.rawMessage;
        if (!transient.has(ce.code) || attempt === decisionAttempts || closing.signal.aborted)
          return { kind: "unavailable", message: last };
        await wait(decisionRetryMs * 2 ** (attempt - 1));
      }
    }
    return { kind: "unavailable", message: last };
  }

  async function openModal(
    kind: "deny" | "edit",
    body: BlockAction<ButtonAction>,
    approvalId: string,
    channel: string,
    deadline: number,
  ): Promise<void> {
    const user = body.user.id;
    const approval = options.approval(approvalId);
    if (approval === undefined) {
      tell(channel, user, "Countersign does not know this request (yet); please try again in a moment.");
      return;
    }
    if (isTerminal(approval.state)) {
      onEvent({
        type: "unauthorized",
        source: "gateway",
        approvalId,
        user,
        action: kind,
        code: "failed_precondition",
        message: `approval ${approvalId} is already ${approval.state}`,
      });
      tell(channel, user, `Nothing changed: this request is already ${approval.state}.`);
      return;
    }
    if (kind === "edit" && approval.rules.overrides.keys.length === 0) {
      tell(channel, user, "Nothing changed: this request's policy does not allow edits.");
      return;
    }
    const ctx: ModalContext = { approvalId, channel };
    const view = kind === "deny" ? denyModal(approval, ctx) : editModal(approval, ctx);
    try {
      await caller.call(
        "views.open",
        { trigger_id: body.trigger_id, view },
        { priority: "interactive", deadline },
      );
    } catch (err) {
      const code = err instanceof SlackCallError ? err.code : String(err);
      logger.warn({ approval: approvalId, code }, "Slack did not open the modal");
      tell(channel, user, "Slack did not open the form in time; nothing changed. Please click again.");
    }
  }

  async function onAction(body: BlockAction<ButtonAction>, action: ButtonAction, receivedAt: number) {
    const user = body.user.id;
    const approvalId = action.value ?? "";
    const channel = body.channel?.id ?? body.container?.channel_id ?? "";
    const messageTs = body.message?.ts ?? body.container?.message_ts ?? "";
    const interactionId = `${messageTs}:${action.action_ts}:${user}`.slice(0, 120);
    switch (action.action_id) {
      case slackActions.approve:
      case slackActions.acknowledge: {
        const decision = action.action_id === slackActions.approve ? "approve" : "acknowledge";
        const outcome = await decide({ approvalId, user, decision, interactionId, action: decision });
        if (outcome.kind !== "recorded") tell(channel, user, outcomeText(outcome));
        return;
      }
      case slackActions.deny:
        // A trigger id is valid for 3 s from the click.
        return openModal("deny", body, approvalId, channel, receivedAt + 2_500);
      case slackActions.edit:
        return openModal("edit", body, approvalId, channel, receivedAt + 2_500);
      case slackActions.info: {
        const approval = options.approval(approvalId);
        if (approval === undefined) tell(channel, user, "Countersign does not know this request (yet).");
        else for (const page of renderApprovalDetails(approval)) queue.ephemeral(channel, user, page);
        return;
      }
      case slackActions.rerequest: {
        try {
          const res = await decider.rerequestApproval(
            { id: approvalId, requestedBy: user, interactionId },
            { timeoutMs: decisionTimeoutMs },
          );
          tell(
            channel,
            user,
            `Asked again: request \`${escapeText(res.approval?.id ?? "")}\` is posted for approval.`,
          );
        } catch (err) {
          const ce = ConnectError.from(err);
          if (ce.code === Code.PermissionDenied || ce.code === Code.FailedPrecondition)
            onEvent({
              type: "unauthorized",
              source: "service",
              approvalId,
              user,
              action: "rerequest",
              code: ce.code === Code.PermissionDenied ? "permission_denied" : "failed_precondition",
              message: ce.rawMessage,
            });
          tell(channel, user, `Nothing changed: ${escapeText(ce.rawMessage)}.`);
        }
        return;
      }
      default:
        logger.warn({ action: action.action_id }, "unknown Slack action");
    }
  }

  app.action<BlockAction<ButtonAction>>(countersignActionIds, async ({ ack, body, action }) => {
    const receivedAt = Date.now();
    await ack();
    detach(() => onAction(body, action, receivedAt));
  });

  app.view<ViewSubmitAction>(
    { callback_id: countersignViewIds, type: "view_submission" },
    async ({ ack, body, view }) => {
      const ctx = parseModalContext(view.private_metadata);
      const kind = view.callback_id === slackViews.deny ? "deny" : "edit";
      const title = kind === "deny" ? "Deny request" : "Approve with edits";
      if (ctx === undefined) {
        await ack({
          response_action: "update",
          view: noticeModal(title, "This form is not one of Countersign's."),
        });
        return;
      }
      const user = body.user.id;
      const approval = options.approval(ctx.approvalId);
      const values = view.state.values as ViewStateValues;
      let editedParams: JsonObject | undefined;
      if (kind === "edit") {
        if (approval === undefined) {
          await ack({
            response_action: "update",
            view: noticeModal(title, outcomeText({ kind: "not_found" })),
          });
          return;
        }
        const read = readEditSubmission(approval, values);
        if (!read.ok) {
          await ack({ response_action: "errors", errors: read.errors });
          return;
        }
        editedParams = read.editedParams;
      }
      const pending = decide({
        approvalId: ctx.approvalId,
        user,
        decision: kind === "deny" ? "deny" : "approve",
        interactionId: `view:${view.id}`,
        action: kind,
        reason: readReason(values),
        ...(editedParams === undefined ? {} : { editedParams }),
      });
      let timer: NodeJS.Timeout | undefined;
      const first = await Promise.race([
        pending,
        new Promise<undefined>((resolve) => {
          timer = setTimeout(() => resolve(undefined), ackBudgetMs);
        }),
      ]);
      clearTimeout(timer);
      if (first === undefined) {
        // Slack needs an answer now: say we are on it, and show the outcome in the same modal later.
        await ack({ response_action: "update", view: noticeModal(title, "Recording your decision…") });
        detach(async () => {
          const outcome = await pending;
          queue.updateView(
            view.id,
            noticeModal(title, outcomeText(outcome)) as unknown as Record<string, unknown>,
          );
        });
        return;
      }
      switch (first.kind) {
        case "recorded":
          await ack();
          return;
        case "invalid":
          if (approval !== undefined && first.violations.length > 0) {
            await ack({ response_action: "errors", errors: modalErrors(approval, kind, first.violations) });
            return;
          }
          await ack({ response_action: "update", view: noticeModal(title, outcomeText(first)) });
          return;
        case "unchanged":
        case "refused":
        case "not_found":
        case "unavailable":
          await ack({ response_action: "update", view: noticeModal(title, outcomeText(first)) });
          return;
      }
    },
  );

  return {
    async close(graceMs = 2_000) {
      closing.abort();
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.allSettled([...inFlight]),
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, graceMs);
        }),
      ]);
      clearTimeout(timer);
    },
  };
}
