import { type ContextKey, createContextKey } from "@connectrpc/connect";

/** What a caller may do. */
export type Role = "requester" | "decider";

/** The authenticated client of a call, as established by the transport's identity interceptor. */
export interface Caller {
  /** From the client certificate (the fields `--identity-from` names), or the development identity. */
  identity: string;
  roles: ReadonlySet<Role>;
}

/** Context value carrying the caller of the current call; undefined when unauthenticated. */
export const callerKey: ContextKey<Caller | undefined> = createContextKey<Caller | undefined>(undefined, {
  description: "countersign caller",
});

/** Context value carrying the acting admin's name, set once the admin token is verified. */
export const adminKey: ContextKey<string | undefined> = createContextKey<string | undefined>(undefined, {
  description: "countersign admin",
});
