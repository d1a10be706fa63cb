/**
 * One Slack message the gateway posted, or is posting, for an approval: the request message itself (one
 * per channel, or one per approver in DM mode), a reminder or the escalation in its thread, or the
 * escalation notice in the fallback channel.
 */
export interface SlackMessageRecord {
  /**
   * What and where, unique per approval: `request:<destination>`, `reminder:<n>:<destination>`,
   * `escalation:<destination>`, `escalation-notice:<channel>`; `<destination>` is the channel id or, in
   * DM mode, the approver's user id.
   */
  key: string;
  /** The channel id the message is in (a `D…` id for a DM). */
  channel: string;
  /**
   * The message `ts`. Empty while a post has been sent whose outcome is unknown (a time-out or a server
   * error): before posting again, the gateway looks for it in the channel.
   */
  ts: string;
  /** When the first attempt to post it started (epoch ms); bounds that search. */
  attemptedAt: number;
  /** The approval version the message shows (request messages; 0 for the others). */
  version: number;
}

/**
 * Where the gateway keeps its Slack messages per approval, so that updates edit the same message and a
 * post is never repeated. Shared by every replica through the adapter (memory: one process; Redis: a
 * hash per approval, field = key, value = the JSON record, with a TTL once the approval is finished, and a
 * set of the ids not expired yet).
 * Writers hold the approval's lease (see Leases), so there is one writer per approval at a time.
 */
export interface SlackMessageStore {
  /** Every record of the approval (any order). */
  list(approvalId: string): Promise<SlackMessageRecord[]>;
  /** Inserts or replaces the record with `record.key`. */
  put(approvalId: string, record: SlackMessageRecord): Promise<void>;
  /** Removes a record: a post that certainly did not happen. */
  remove(approvalId: string, key: string): Promise<void>;
  /** Forgets every record of the approval `afterMs` from now (it is finished and fully shown). */
  expire(approvalId: string, afterMs: number): Promise<void>;
  /**
   * Up to `limit` ids of approvals that have records and were not `expire`d: what a starting gateway
   * still shows as undecided, so it can catch up on decisions made while no gateway ran.
   */
  openApprovals(limit: number): Promise<string[]>;
  /** Releases connections and timers. */
  close(): Promise<void>;
}
