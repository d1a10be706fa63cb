import type { Approval, ApprovalState } from "../domain/types.js";

/** Filters and paging of `ApprovalStore.list`. */
export interface ApprovalQuery {
  state?: ApprovalState;
  action?: string;
  requester?: string;
  /** Inclusive lower bound of create time (epoch ms). */
  createdAfter?: number;
  /** Exclusive upper bound of create time (epoch ms). */
  createdBefore?: number;
  pageSize: number;
  /** Opaque token from a previous page. */
  pageToken?: string;
}

/** One page of `ApprovalStore.list`, newest first. */
export interface ApprovalPage {
  approvals: Approval[];
  /** Empty on the last page. */
  nextPageToken: string;
}

/** Counts by state and the oldest pending approval. */
export interface ApprovalStats {
  counts: Record<ApprovalState, number>;
  oldestPending?: Approval;
}

/** Result of `ApprovalStore.create`. */
export interface CreateResult {
  approval: Approval;
  /** False when the idempotency key already named an approval with the same fingerprint. */
  created: boolean;
}

/** A terminal approval whose retention period is over: what retention archives, then purges. */
export interface PurgeCandidate {
  approval: Approval;
  /** True when it came back from an archive (`restore`): it is purged without being archived again. */
  archived: boolean;
}

/** Receives every stored version of an approval. */
export type ChangeListener = (approval: Approval) => void;

/** Stops a subscription. */
export type Unsubscribe = () => void;

/**
 * The port every store adapter implements: atomic create, compare-and-set transitions, queries and a
 * change feed. Adapters throw `UnavailableError` when the backing store cannot be reached, and
 * `ConflictError` for an idempotency key reused with other content.
 */
export interface ApprovalStore {
  /**
   * Stores a new approval (version 1). With an idempotency key, a second create with the same key and
   * fingerprint returns the first approval with `created: false`.
   * @throws ConflictError when the key names an approval with another fingerprint
   */
  create(approval: Approval, idempotency?: { key: string; fingerprint: string }): Promise<CreateResult>;
  /** The approval, or undefined. */
  get(id: string): Promise<Approval | undefined>;
  /**
   * Compare-and-set: stores `next` with version `expectedVersion + 1` if the stored version is still
   * `expectedVersion`. Returns the stored approval, or undefined when another write came first.
   */
  compareAndSet(next: Approval, expectedVersion: number): Promise<Approval | undefined>;
  /** Approvals matching the query, newest first. */
  list(query: ApprovalQuery): Promise<ApprovalPage>;
  /** Counts by state and the oldest pending approval. */
  stats(): Promise<ApprovalStats>;
  /** Ids of pending approvals whose expire time is at or before `now`, soonest first. */
  dueForExpiry(now: number, limit: number): Promise<string[]>;
  /** Number of approvals in a lineage created at or after `since`. */
  countLineage(lineageId: string, since: number): Promise<number>;
  /**
   * Terminal approvals whose retention started at or before `before` (their decide time, or the time
   * they were restored from an archive), oldest first.
   */
  dueForPurge(before: number, limit: number): Promise<PurgeCandidate[]>;
  /**
   * Deletes an approval (with its index entries and idempotency key) if it is still at `version`.
   * Returns false when it changed or is already gone.
   */
  purge(id: string, version: number): Promise<boolean>;
  /**
   * Stores an approval read back from an archive, unless a version at least as new is stored; it then
   * stays for another retention period. Returns false when nothing changed, so importing twice is a no-op.
   */
  restore(approval: Approval): Promise<boolean>;
  /** Calls `listener` with every stored version of approval `id` from now on. */
  subscribe(id: string, listener: ChangeListener): Unsubscribe;
  /** Calls `listener` with every stored version of every approval from now on. */
  subscribeAll(listener: ChangeListener): Unsubscribe;
  /** Resolves when the store is reachable. */
  ping(): Promise<void>;
  /** Releases connections and timers. */
  close(): Promise<void>;
}
