import { createHash } from "node:crypto";
import type { RedisConnections } from "../store/redis-connection.js";
import { toStoreError } from "../store/redis-connection.js";

/** A Lua script of the gateway's Redis adapters, and the SHA-1 `EVALSHA` names it by. */
export interface SlackLuaScript {
  lua: string;
  sha: string;
}

/** Makes a script from its Lua source. */
export function slackLuaScript(lua: string): SlackLuaScript {
  return { lua, sha: createHash("sha1").update(lua).digest("hex") };
}

/**
 * Runs a script on the command connection: by SHA, sending the body only when Redis does not know it
 * yet (after a restart or a failover). Waits (bounded) for the connection first.
 * @throws UnavailableError when Redis cannot be reached or is not writable right now
 */
export async function runSlackLua(
  connections: RedisConnections,
  script: SlackLuaScript,
  keys: string[],
  args: (string | number)[],
): Promise<unknown> {
  await connections.whenReady();
  const redis = connections.command;
  try {
    try {
      return await redis.evalsha(script.sha, keys.length, ...keys, ...args);
    } catch (err) {
      if (!(err instanceof Error && err.message.startsWith("NOSCRIPT"))) throw err;
      return await redis.eval(script.lua, keys.length, ...keys, ...args);
    }
  } catch (err) {
    throw toStoreError(err);
  }
}
