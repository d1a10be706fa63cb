/**
 * Starting the gateway in the two ways `countersign serve` runs it: next to the API in one process (the
 * default), or as its own process talking to the API over gRPC with mutual TLS (`--components slack`).
 */
import { createClient, type Interceptor, type ServiceImpl } from "@connectrpc/connect";
import type { Logger } from "pino";
import { ApprovalService } from "../../gen/countersign/v1/approval_service_pb.js";
import type { SlackConfig } from "../config/config.js";
import type { Clock } from "../domain/clock.js";
import type { ApprovalOperations } from "../services/approval-operations.js";
import type { Claims } from "../store/claims.js";
import { createInProcessFeed, createRemoteFeed } from "./approval-feed.js";
import { createInProcessTransport, createRemoteTransport } from "./decider-transport.js";
import { type SlackGateway, type SlackGatewayOptions, startSlackGateway } from "./gateway.js";

/** What a test or an embedding program may give the gateway. */
export type SlackGatewayDependencies = Pick<
  SlackGatewayOptions,
  "onEvent" | "messages" | "leases" | "tuning"
>;

/** What the gateway needs from its process besides its configuration. */
export interface SlackGatewayContext {
  clock: Clock;
  logger: Logger;
  /** The replay cache's claims, shared by replicas through the store. */
  claims: Claims;
  deps?: SlackGatewayDependencies;
}

function common(config: SlackConfig, ctx: SlackGatewayContext) {
  return {
    botToken: config.botToken,
    signingSecret: config.signingSecret,
    ...(config.appToken === undefined ? {} : { appToken: config.appToken }),
    ...(config.webApiUrl === undefined ? {} : { webApiUrl: config.webApiUrl }),
    listen: config.listen,
    clock: ctx.clock,
    logger: ctx.logger,
    claims: ctx.claims,
    ...ctx.deps,
  };
}

/**
 * Starts the gateway of the API running in this process: it follows the store's change feed and calls
 * the same ApprovalService implementation through the same interceptors (in process, no network).
 * @throws SlackTokenError when Slack rejects the bot token
 */
export function startInProcessSlackGateway(
  config: SlackConfig,
  ctx: SlackGatewayContext & {
    approvalService: ServiceImpl<typeof ApprovalService>;
    interceptors: Interceptor[];
    operations: Pick<ApprovalOperations, "watchAll">;
  },
): Promise<SlackGateway> {
  const transport = createInProcessTransport({
    service: ctx.approvalService,
    interceptors: ctx.interceptors,
  });
  return startSlackGateway({
    ...common(config, ctx),
    decider: createClient(ApprovalService, transport),
    feed: createInProcessFeed(ctx.operations),
  });
}

/**
 * Starts a gateway in its own process: it watches every approval with `WatchApprovals` and submits
 * decisions over gRPC (mutual TLS with the gateway's client certificate) to `config.api.url`.
 * @throws Error when `config.api` is missing or a TLS file cannot be read; SlackTokenError
 */
export async function startRemoteSlackGateway(
  config: SlackConfig,
  ctx: SlackGatewayContext,
): Promise<SlackGateway> {
  if (config.api === undefined) throw new Error("the Slack gateway in its own process needs --api-url");
  const remote = await createRemoteTransport(config.api);
  const client = createClient(ApprovalService, remote.transport);
  let gateway: SlackGateway;
  try {
    gateway = await startSlackGateway({
      ...common(config, ctx),
      decider: client,
      feed: createRemoteFeed(client),
    });
  } catch (err) {
    remote.close();
    throw err;
  }
  return {
    eventsUrl: gateway.eventsUrl,
    ready: () => gateway.ready(),
    queueStats: () => gateway.queueStats(),
    async close() {
      await gateway.close();
      remote.close();
    },
  };
}
