import type { Approval } from "../domain/types.js";
import type { SlackCaller } from "./slack-calls.js";

/** Resolves which of an approval's Slack user groups a user belongs to. */
export interface UserGroupResolver {
  /**
   * The ids of the user groups named by the approval's rules (approvers and co-sign stages) that `user`
   * is a member of; [] when the rules name none. A group Slack cannot list counts as not containing the
   * user (the service then refuses the vote, and the user is told why).
   */
  groupsOf(user: string, approval: Approval): Promise<string[]>;
  /** The members of `group` (cached like `groupsOf`). @throws SlackCallError when Slack cannot list it */
  membersOf(group: string): Promise<ReadonlySet<string>>;
}

/** Options of `createUserGroupResolver`. */
export interface UserGroupResolverOptions {
  caller: SlackCaller;
  /** How long a group's member list is reused. @default 60000 */
  ttlMs?: number;
  /** Receives a group that could not be listed. */
  onError?: (err: unknown, group: string) => void;
}

/** Resolves user groups with `usergroups.users.list`, caching each group's members for `ttlMs`. */
export function createUserGroupResolver(options: UserGroupResolverOptions): UserGroupResolver {
  const ttlMs = options.ttlMs ?? 60_000;
  const cache = new Map<string, { at: number; members: Promise<ReadonlySet<string>> }>();

  function membersOf(group: string): Promise<ReadonlySet<string>> {
    const cached = cache.get(group);
    if (cached !== undefined && Date.now() - cached.at < ttlMs) return cached.members;
    const members = options.caller
      .call("usergroups.users.list", { usergroup: group }, { priority: "interactive" })
      .then((result) => new Set((result.users ?? []) as string[]) as ReadonlySet<string>);
    cache.set(group, { at: Date.now(), members });
    members.catch((err: unknown) => {
      if (cache.get(group)?.members === members) cache.delete(group);
      options.onError?.(err, group);
    });
    if (cache.size > 1000) for (const [g, e] of cache) if (Date.now() - e.at >= ttlMs) cache.delete(g);
    return members;
  }

  return {
    membersOf,
    async groupsOf(user, approval) {
      const groups = [
        ...new Set([
          ...approval.rules.approvers.groups,
          ...approval.rules.stages.flatMap((s) => s.members.groups),
        ]),
      ];
      const found = await Promise.all(
        groups.map(async (g) =>
          (await membersOf(g).catch(() => new Set<string>())).has(user) ? g : undefined,
        ),
      );
      return found.filter((g): g is string => g !== undefined);
    },
  };
}
