import type { Redis } from "ioredis";
import { type AuditCheckpoint, isAuditCheckpoint } from "./audit-record.js";

/**
 * Where checkpoints are kept, outside the audit file: the latest one of each chain. With Redis every
 * replica's checkpoints are in one place, for `countersign audit verify --store`.
 */
export interface AuditCheckpointStore {
  /** Keeps `checkpoint` as its chain's latest. */
  save(checkpoint: AuditCheckpoint): Promise<void>;
  /** The latest checkpoint of every chain. */
  list(): Promise<AuditCheckpoint[]>;
}

/** Checkpoints in this process's memory (without Redis): they live as long as the process. */
export function createMemoryCheckpointStore(): AuditCheckpointStore {
  const latest = new Map<string, AuditCheckpoint>();
  return {
    async save(checkpoint) {
      latest.set(checkpoint.chain, checkpoint);
    },
    async list() {
      return [...latest.values()];
    },
  };
}

/** The Redis hash of checkpoints: chain id → the chain's latest checkpoint (JSON). */
export function checkpointKey(keyPrefix: string): string {
  return `${keyPrefix}audit:checkpoints`;
}

/** Checkpoints in Redis, under `<prefix>audit:checkpoints`. */
export function createRedisCheckpointStore(redis: Redis, keyPrefix: string): AuditCheckpointStore {
  const key = checkpointKey(keyPrefix);
  return {
    async save(checkpoint) {
      await redis.hset(key, checkpoint.chain, JSON.stringify(checkpoint));
    },
    async list() {
      const all = await redis.hgetall(key);
      return Object.values(all).flatMap((text) => {
        try {
          const value: unknown = JSON.parse(text);
          return isAuditCheckpoint(value) ? [value] : [];
        } catch {
          return [];
        }
      });
    },
  };
}
