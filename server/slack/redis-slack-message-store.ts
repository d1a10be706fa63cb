import type { RedisConnections } from "../store/redis-connection.js";
import { toStoreError } from "../store/redis-connection.js";
import { runSlackLua, slackLuaScript } from "./redis-lua.js";
import type { SlackMessageRecord, SlackMessageStore } from "./slack-message-store.js";

/**
 * KEYS: the approval's hash, the open set. ARGV: record key, record JSON, approval id.
 * An approval joins the open set (scored by the Redis time it first got a record) unless its records
 * were already given a TTL by `expire`: a late write to a finished approval does not reopen it.
 */
const putScript = slackLuaScript(`
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if redis.call('PTTL', KEYS[1]) == -1 then
  local t = redis.call('TIME')
  redis.call('ZADD', KEYS[2], 'NX', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), ARGV[3])
end
return 1
`);

/** KEYS: the approval's hash, the open set. ARGV: record key, approval id. */
const removeScript = slackLuaScript(`
redis.call('HDEL', KEYS[1], ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('ZREM', KEYS[2], ARGV[2])
end
return 1
`);

/** KEYS: the approval's hash, the open set. ARGV: TTL in ms, approval id. */
const expireScript = slackLuaScript(`
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[2])
return 1
`);

/**
 * The gateway's message records shared by every replica through Redis, so that whichever replica holds
 * an approval's lease finds what the others posted:
 * - `<prefix>slack:m:<approval id>`: a hash, field = record key, value = the record as JSON; given a TTL
 *   by `expire` once the approval is finished and fully shown;
 * - `<prefix>slack:open`: the ids of approvals with records and no TTL yet, scored by when they got their
 *   first record (oldest first for `openApprovals`).
 * Every change of both is one script. Built on the server's Redis connections, which it does not own:
 * `close()` leaves them open (the store closes them).
 * @param connections the server's Redis connections (their key prefix is used)
 */
export function createRedisSlackMessageStore(connections: RedisConnections): SlackMessageStore {
  const prefix = `${connections.settings.keyPrefix}slack:`;
  const openKey = `${prefix}open`;
  const hashKey = (approvalId: string) => `${prefix}m:${approvalId}`;
  return {
    async list(approvalId) {
      await connections.whenReady();
      let values: string[];
      try {
        values = await connections.command.hvals(hashKey(approvalId));
      } catch (err) {
        throw toStoreError(err);
      }
      return values.map((v) => JSON.parse(v) as SlackMessageRecord);
    },
    async put(approvalId, record) {
      const json = JSON.stringify({
        key: record.key,
        channel: record.channel,
        ts: record.ts,
        attemptedAt: record.attemptedAt,
        version: record.version,
      } satisfies SlackMessageRecord);
      await runSlackLua(
        connections,
        putScript,
        [hashKey(approvalId), openKey],
        [record.key, json, approvalId],
      );
    },
    async remove(approvalId, key) {
      await runSlackLua(connections, removeScript, [hashKey(approvalId), openKey], [key, approvalId]);
    },
    async expire(approvalId, afterMs) {
      await runSlackLua(
        connections,
        expireScript,
        [hashKey(approvalId), openKey],
        [Math.max(1, Math.ceil(afterMs)), approvalId],
      );
    },
    async openApprovals(limit) {
      if (limit <= 0) return [];
      await connections.whenReady();
      try {
        return await connections.command.zrange(openKey, 0, limit - 1);
      } catch (err) {
        throw toStoreError(err);
      }
    },
    async close() {},
  };
}
