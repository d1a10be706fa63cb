/**
 * Where the gateway learns about approvals: a stream of every pending approval, then every change. In
 * process it is the store's change feed (through the application layer); in its own process it is the
 * decider-only `WatchApprovals` RPC, rebuilt into domain approvals.
 */
import type { Client } from "@connectrpc/connect";
import type { ApprovalService } from "../../gen/countersign/v1/approval_service_pb.js";
import type { ApprovalOperations, WatchAllEvent } from "../services/approval-operations.js";
import { approvalFromMessage, rulesFromMessage } from "../services/convert.js";

/**
 * Opens one watch: a snapshot of every pending approval and of the approvals in `ids`, a
 * `snapshot_complete` marker, then every change, until `signal` aborts or the stream fails.
 */
export type ApprovalFeed = (ids: readonly string[], signal: AbortSignal) => AsyncIterable<WatchAllEvent>;

/** The feed of this process's store. */
export function createInProcessFeed(operations: Pick<ApprovalOperations, "watchAll">): ApprovalFeed {
  return (ids, signal) => operations.watchAll({ signal, heartbeatMs: 60_000, ids });
}

/** The feed of a Countersign API in another process, over `WatchApprovals`. */
export function createRemoteFeed(client: Client<typeof ApprovalService>): ApprovalFeed {
  return async function* (ids, signal) {
    for await (const message of client.watchApprovals({ ids: [...ids] }, { signal })) {
      if (message.snapshotComplete) yield { type: "snapshot_complete" };
      else if (message.heartbeat) yield { type: "heartbeat" };
      else if (message.approval !== undefined && message.rules !== undefined)
        yield {
          type: "approval",
          approval: approvalFromMessage(message.approval, rulesFromMessage(message.rules)),
        };
    }
  };
}
