import { createHash, timingSafeEqual } from "node:crypto";
import type { PeerCertificate } from "node:tls";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { AdminService } from "../../gen/countersign/v1/admin_service_pb.js";
import { adminKey, type Caller, callerKey, type Role } from "../services/caller.js";
import { certificateIdentity, certificateValidityProblem, type IdentitySource, peerKey } from "./peer.js";

/** Options of `createIdentityInterceptor`. */
export interface IdentityOptions {
  /**
   * In development mode (no TLS) every caller is this one local identity with both roles.
   * Undefined in production: identity comes from the client certificate.
   */
  developmentIdentity?: string;
  /** Identities allowed to request; `"any"`: every authenticated identity. */
  requesters: readonly string[] | "any";
  /** Identities allowed to submit decisions (the Slack gateway). */
  deciders: readonly string[];
  /** Where in the certificate the identity comes from (`--identity-from`). @default ["uri"] */
  identitySources?: readonly IdentitySource[];
  /** The time certificates are checked against. @default Date.now */
  now?: () => number;
}

/**
 * Establishes the caller of every call from the peer's verified certificate and the configured roles,
 * and puts it in the `callerKey` context value. Calls without a certificate carry no caller; the
 * services refuse them with UNAUTHENTICATED where one is needed. A certificate that names no identity
 * of the configured sources (or an empty one), or that has expired since its connection was opened, is
 * refused with UNAUTHENTICATED at every call.
 */
export function createIdentityInterceptor(options: IdentityOptions): Interceptor {
  const requesters = options.requesters === "any" ? undefined : new Set(options.requesters);
  const deciders = new Set(options.deciders);
  const dev = options.developmentIdentity;
  const devCaller: Caller | undefined =
    dev === undefined ? undefined : { identity: dev, roles: new Set<Role>(["requester", "decider"]) };
  const sources = options.identitySources ?? ["uri"];
  const now = options.now ?? Date.now;
  const fromCertificate = (cert: PeerCertificate): Caller => {
    const expired = certificateValidityProblem(cert, now());
    if (expired !== undefined) throw new ConnectError(expired, Code.Unauthenticated);
    const named = certificateIdentity(cert, sources);
    if ("problem" in named) throw new ConnectError(named.problem, Code.Unauthenticated);
    const identity = named.identity;
    const roles = new Set<Role>();
    if (requesters === undefined || requesters.has(identity)) roles.add("requester");
    if (deciders.has(identity)) roles.add("decider");
    return { identity, roles };
  };

  return (next) => async (req) => {
    if (devCaller !== undefined) {
      req.contextValues.set(callerKey, devCaller);
    } else {
      const cert = req.contextValues.get(peerKey).certificate;
      if (cert !== undefined) req.contextValues.set(callerKey, fromCertificate(cert));
    }
    return next(req);
  };
}

/** Options of `createAdminAuthInterceptor`. */
export interface AdminAuthOptions {
  /** The admin bearer token; undefined disables the admin service. */
  token: string | undefined;
  /** Called for every refused admin call (metrics, audit), with the peer's remote address. */
  onRefused?: (reason: string, address: string) => void;
}

const digest = (s: string) => createHash("sha256").update(s).digest();

/**
 * Guards `AdminService`: requires `authorization: Bearer <token>`, compared in constant time over
 * SHA-256 digests (so tokens of any length compare without throwing or leaking the length).
 */
export function createAdminAuthInterceptor(options: AdminAuthOptions): Interceptor {
  const expected = options.token === undefined ? undefined : digest(options.token);
  return (next) => async (req) => {
    if (req.service.typeName !== AdminService.typeName) return next(req);
    const refuse = (reason: string): never => {
      options.onRefused?.(reason, req.contextValues.get(peerKey).address);
      throw new ConnectError(reason, Code.Unauthenticated);
    };
    if (expected === undefined) refuse("the admin service is disabled: ADMIN_TOKEN is not configured");
    const header = req.header.get("authorization");
    if (header === null) refuse("missing authorization header (expected: Bearer <ADMIN_TOKEN>)");
    // The scheme is case-insensitive (RFC 7235 section 2.1); the token is not.
    const match = /^bearer +([^\s,]+)$/i.exec(header ?? "");
    if (match === null) refuse("malformed authorization header (expected: Bearer <ADMIN_TOKEN>)");
    if (!timingSafeEqual(digest(match?.[1] ?? ""), expected as Buffer)) refuse("invalid admin token");
    req.contextValues.set(adminKey, "admin");
    return next(req);
  };
}
