/**
 * The Lua scripts of the Redis approval store. Each state transition is one script, so the record and
 * every index change together or not at all, and the change is published in the same step.
 *
 * Layout under the key prefix `p` (ARGV[1] of every script):
 * - `p a:<id>`: hash of one approval: `j` (the approval as JSON, stored whole), `v` version, `s` state,
 *   `act` action, `req` requester, `ct` create time, `et` expire time, `dt` decide time, `lin` lineage
 *   id, `ik` idempotency key, `imp` set when it was re-imported from an archive, `w` the write id of the
 *   last compare-and-set.
 * - sorted sets of ids scored by create time: `p i:all`, `p i:state:<state>`, `p i:action:<action>`,
 *   `p i:req:<requester>`, `p i:lin:<lineage id>`;
 * - `p i:expiry`: pending approvals by expire time; `p i:retain`: terminal approvals by the time their
 *   retention starts (decide time, or import time for re-imported ones);
 * - `p i:changed`: ids by the Redis time of their last change, kept for ten minutes, so the change feed
 *   can catch up after its connection was lost;
 * - `p idem:<key>`: hash `id`, `fp` (fingerprint) of a create's idempotency key;
 * - `p epoch`: written once by the first server to use the store; a server that finds it gone or changed
 *   knows Redis lost its data;
 * - channel `p changes`: every stored version, as JSON.
 *
 * Keys are built inside the scripts, so the store runs on one Redis node (with replicas and Sentinel),
 * not on Redis Cluster.
 */
import { createHash } from "node:crypto";

/** A Lua script and the SHA-1 that `EVALSHA` names it by. */
export interface LuaScript {
  name: string;
  lua: string;
  sha: string;
}

function script(name: string, body: string): LuaScript {
  const lua = `${common}\n${body}`;
  return { name, lua, sha: createHash("sha1").update(lua).digest("hex") };
}

const common = `
local p = ARGV[1]
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function index_add(id, s, act, req, ct, lin)
  redis.call('ZADD', p .. 'i:all', ct, id)
  redis.call('ZADD', p .. 'i:state:' .. s, ct, id)
  redis.call('ZADD', p .. 'i:action:' .. act, ct, id)
  redis.call('ZADD', p .. 'i:req:' .. req, ct, id)
  redis.call('ZADD', p .. 'i:lin:' .. lin, ct, id)
end
local function place_by_state(id, s, et, retain_at)
  if s == 'pending' then
    redis.call('ZADD', p .. 'i:expiry', et, id)
    redis.call('ZREM', p .. 'i:retain', id)
  else
    redis.call('ZREM', p .. 'i:expiry', id)
    redis.call('ZADD', p .. 'i:retain', retain_at, id)
  end
end
local function changed(id, json)
  local now = now_ms()
  redis.call('ZADD', p .. 'i:changed', now, id)
  redis.call('ZREMRANGEBYSCORE', p .. 'i:changed', '-inf', now - 600000)
  redis.call('PUBLISH', p .. 'changes', json)
end
`;

/**
 * Create. ARGV: p, id, json, state, action, requester, create time, expire time, decide time, lineage,
 * idempotency key ('' for none), fingerprint.
 * Returns {'created'}, {'existing', json} for a retried key, {'conflict', id}, or {'duplicate'}.
 */
export const createScript = script(
  "create",
  `
local id, json, s, act, req, ct, et, dt, lin, ik, fp =
  ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11], ARGV[12]
if ik ~= '' then
  local known = redis.call('HMGET', p .. 'idem:' .. ik, 'id', 'fp')
  if known[1] then
    if known[2] == fp then
      local existing = redis.call('HGET', p .. 'a:' .. known[1], 'j')
      if existing then return {'existing', existing} end
    end
    return {'conflict', known[1]}
  end
end
local rec = p .. 'a:' .. id
if redis.call('EXISTS', rec) == 1 then return {'duplicate'} end
redis.call('HSET', rec, 'j', json, 'v', 1, 's', s, 'act', act, 'req', req, 'ct', ct, 'et', et, 'dt', dt,
  'lin', lin, 'ik', ik)
index_add(id, s, act, req, ct, lin)
place_by_state(id, s, et, dt)
if ik ~= '' then redis.call('HSET', p .. 'idem:' .. ik, 'id', id, 'fp', fp) end
changed(id, json)
return {'created'}
`,
);

/**
 * Compare-and-set. ARGV: p, id, expected version, json of the next version, state, expire time,
 * decide time, write id (unique per call). Returns 1 when stored, 2 when this very call's write is
 * already stored (the client resent it after a lost reply), 0 when another write came first or the
 * approval does not exist. The write id, not the JSON, identifies a resend: two callers that computed
 * the same next version (identical admin resolves in one millisecond) are two writes, and only the
 * first wins.
 */
export const compareAndSetScript = script(
  "compareAndSet",
  `
local id, expected, json, s, et, dt, w =
  ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local rec = p .. 'a:' .. id
local cur = redis.call('HMGET', rec, 'v', 's', 'ct')
if not cur[1] then return 0 end
local v = tonumber(cur[1])
if v ~= expected then
  if v == expected + 1 and redis.call('HGET', rec, 'w') == w then return 2 end
  return 0
end
redis.call('HSET', rec, 'j', json, 'v', v + 1, 's', s, 'et', et, 'dt', dt, 'w', w)
-- A changed version is no longer the one in the archive.
redis.call('HDEL', rec, 'imp')
if cur[2] ~= s then
  redis.call('ZREM', p .. 'i:state:' .. cur[2], id)
  redis.call('ZADD', p .. 'i:state:' .. s, cur[3], id)
end
if cur[2] == 'pending' or s == 'pending' then
  place_by_state(id, s, et, dt)
end
changed(id, json)
return 1
`,
);

/**
 * One page of a query, newest first. KEYS: the indexes the approval must be in (at least `i:all`); the
 * smallest drives the scan, the others are checked per id. ARGV: p, lowest create time ('-inf' or a
 * number), highest create time bound ('+inf', 'N' or '(N'), page size, scan budget, cursor create time
 * and cursor id ('' for the first page).
 * Returns {json..., next} where next is '' at the end, else 'score:id' of the last id examined.
 */
export const listScript = script(
  "list",
  `
local min, max, size, budget = ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local cursor_score, cursor_id = tonumber(ARGV[6]), ARGV[7]
local driver, smallest = 1, redis.call('ZCARD', KEYS[1])
for k = 2, #KEYS do
  local n = redis.call('ZCARD', KEYS[k])
  if n < smallest then driver, smallest = k, n end
end
local hi = max
if cursor_score then
  local bound = tonumber((string.gsub(max, '^%(', '')))
  if bound == nil or cursor_score < bound then hi = ARGV[6] end
end
local out = {}
local examined, offset = 0, 0
local last_score, last_id = cursor_score, cursor_id
while examined < budget do
  local batch = redis.call('ZREVRANGEBYSCORE', KEYS[driver], hi, min, 'WITHSCORES', 'LIMIT', offset, 100)
  if #batch == 0 then
    out[#out + 1] = ''
    return out
  end
  local progressed = false
  for i = 1, #batch, 2 do
    local id, score = batch[i], tonumber(batch[i + 1])
    if not (last_score and score == last_score and id >= last_id) then
      progressed = true
      examined = examined + 1
      last_score, last_id = score, id
      local match = true
      for k = 1, #KEYS do
        if k ~= driver and not redis.call('ZSCORE', KEYS[k], id) then
          match = false
          break
        end
      end
      if match then
        local json = redis.call('HGET', p .. 'a:' .. id, 'j')
        if json then out[#out + 1] = json end
        if #out == size then
          out[#out + 1] = string.format('%d', score) .. ':' .. id
          return out
        end
      end
      if examined >= budget then break end
    end
  end
  if progressed then
    hi = string.format('%d', last_score)
    offset = 0
  else
    offset = offset + #batch / 2
  end
end
out[#out + 1] = string.format('%d', last_score) .. ':' .. last_id
return out
`,
);

/** Counts by state and the oldest pending approval. ARGV: p. Returns {5 counts..., json or false}. */
export const statsScript = script(
  "stats",
  `
local out = {}
for _, s in ipairs({'pending', 'approved', 'denied', 'expired', 'cancelled'}) do
  out[#out + 1] = redis.call('ZCARD', p .. 'i:state:' .. s)
end
local oldest = redis.call('ZRANGE', p .. 'i:state:pending', 0, 0)
out[#out + 1] = oldest[1] and redis.call('HGET', p .. 'a:' .. oldest[1], 'j') or false
return out
`,
);

/**
 * Terminal approvals whose retention started at or before a time, oldest first. ARGV: p, time, limit.
 * Returns {json, imported ('1' or ''), ...}.
 */
export const dueForPurgeScript = script(
  "dueForPurge",
  `
local ids = redis.call('ZRANGEBYSCORE', p .. 'i:retain', '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, id in ipairs(ids) do
  local rec = redis.call('HMGET', p .. 'a:' .. id, 'j', 'imp')
  if rec[1] then
    out[#out + 1] = rec[1]
    out[#out + 1] = rec[2] or ''
  end
end
return out
`,
);

/**
 * Purge: deletes an approval, its index entries and its idempotency key if it is still at a version.
 * ARGV: p, id, version. Returns 1 when purged, 0 otherwise.
 */
export const purgeScript = script(
  "purge",
  `
local id, version = ARGV[2], tonumber(ARGV[3])
local rec = p .. 'a:' .. id
local cur = redis.call('HMGET', rec, 'v', 's', 'act', 'req', 'lin', 'ik')
if not cur[1] or tonumber(cur[1]) ~= version then return 0 end
redis.call('ZREM', p .. 'i:all', id)
redis.call('ZREM', p .. 'i:state:' .. cur[2], id)
redis.call('ZREM', p .. 'i:action:' .. cur[3], id)
redis.call('ZREM', p .. 'i:req:' .. cur[4], id)
redis.call('ZREM', p .. 'i:lin:' .. cur[5], id)
redis.call('ZREM', p .. 'i:expiry', id)
redis.call('ZREM', p .. 'i:retain', id)
redis.call('ZREM', p .. 'i:changed', id)
if cur[6] and cur[6] ~= '' then
  local idem = p .. 'idem:' .. cur[6]
  if redis.call('HGET', idem, 'id') == id then redis.call('DEL', idem) end
end
redis.call('DEL', rec)
return 1
`,
);

/**
 * Restore (archive import): stores an approval unless a version at least as new is stored, and marks it
 * re-imported. ARGV: p, id, json, version, state, action, requester, create time, expire time, decide
 * time, lineage. Returns 1 when stored, 0 when unchanged.
 */
export const restoreScript = script(
  "restore",
  `
local id, json, version, s, act, req, ct, et, dt, lin =
  ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11]
local rec = p .. 'a:' .. id
local cur = redis.call('HMGET', rec, 'v', 's')
if cur[1] and tonumber(cur[1]) >= version then return 0 end
if cur[1] and cur[2] ~= s then redis.call('ZREM', p .. 'i:state:' .. cur[2], id) end
redis.call('HSET', rec, 'j', json, 'v', ARGV[4], 's', s, 'act', act, 'req', req, 'ct', ct, 'et', et,
  'dt', dt, 'lin', lin, 'imp', '1')
index_add(id, s, act, req, ct, lin)
place_by_state(id, s, et, now_ms())
changed(id, json)
return 1
`,
);

/** Every script, for loading them ahead of use. */
export const allScripts = [
  createScript,
  compareAndSetScript,
  listScript,
  statsScript,
  dueForPurgeScript,
  purgeScript,
  restoreScript,
];
