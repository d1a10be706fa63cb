/**
 * A Slack user's e-mail address, for the rules that compare people: a request may name the person it is
 * for by e-mail (`on_behalf_of: alice@example.com`) and a policy may list approvers by e-mail, but clicks
 * arrive as Slack user ids. The gateway sends the clicker's e-mail with the vote (`approver_aliases`), so
 * the service compares both.
 */
import type { Approval } from "../domain/types.js";
import { isEmail } from "../domain/validation.js";
import type { SlackCaller } from "./slack-calls.js";

/** Resolves Slack user ids to e-mail addresses. */
export interface UserEmailResolver {
  /**
   * The e-mail address of `user` (lower case), from `users.info` (scope `users:read.email`).
   * @throws the Slack call's error, or an Error when Slack shows no e-mail address for the user
   */
  emailOf(user: string): Promise<string>;
}

/** Options of `createUserEmailResolver`. */
export interface UserEmailResolverOptions {
  caller: SlackCaller;
  /** How long an address is reused. @default 600000 */
  ttlMs?: number;
}

/** True when the approval's requester or on-behalf-of person is named by e-mail. */
export function requesterByEmail(a: Approval): boolean {
  return isEmail(a.requester) || isEmail(a.onBehalfOf);
}

/** True when any rule of the approval compares a clicker with a person named by e-mail. */
export function namesPeopleByEmail(a: Approval): boolean {
  const r = a.rules;
  return (
    requesterByEmail(a) ||
    [...r.approvers.users, ...r.superApprovers, ...r.stages.flatMap((s) => s.members.users)].some(isEmail)
  );
}

/** Resolves with `users.info`, caching each address for `ttlMs` (a failed look-up is not cached). */
export function createUserEmailResolver(options: UserEmailResolverOptions): UserEmailResolver {
  const ttlMs = options.ttlMs ?? 600_000;
  const cache = new Map<string, { at: number; email: Promise<string> }>();
  return {
    emailOf(user) {
      const cached = cache.get(user);
      if (cached !== undefined && Date.now() - cached.at < ttlMs) return cached.email;
      const email = options.caller
        .call("users.info", { user }, { priority: "interactive" })
        .then((result) => {
          const address = (result.user as { profile?: { email?: unknown } } | undefined)?.profile?.email;
          if (typeof address !== "string" || !isEmail(address))
            throw new Error(
              `Slack shows no e-mail address for ${user} (is the users:read.email scope granted?)`,
            );
          return address.toLowerCase();
        });
      cache.set(user, { at: Date.now(), email });
      email.catch(() => {
        if (cache.get(user)?.email === email) cache.delete(user);
      });
      if (cache.size > 10_000) for (const [u, e] of cache) if (Date.now() - e.at >= ttlMs) cache.delete(u);
      return email;
    },
  };
}
