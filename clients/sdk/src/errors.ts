import type { DescMessage, MessageShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { type Approval, State } from "./gen/countersign/v1/approval_pb.js";
import { BadRequestSchema, RetryInfoSchema } from "./gen/google/rpc/error_details_pb.js";

/** The base class of every error the SDK throws. */
export class CountersignError extends Error {
  override name = "CountersignError";
}

/** One invalid field of a request, as the server reports it (`google.rpc.BadRequest`). */
export interface FieldViolation {
  /** Path of the field in the request, e.g. `origin.links[0].url`. */
  field: string;
  /** What is wrong with it. */
  description: string;
}

/**
 * A call failed with a status code. The subclass says which (see the table in `toCountersignError`);
 * `code` is the status code, `rawMessage` the server's message, and `cause` the `ConnectError` of the
 * transport.
 */
export class RpcError extends CountersignError {
  override name = "RpcError";
  /** The status code. */
  readonly code: Code;
  /** The message without the code prefix. */
  readonly rawMessage: string;
  /** Response headers and trailers of the failed call. */
  readonly metadata: Headers;
  /** The transport's error, with the raw error details. */
  declare readonly cause: ConnectError;

  constructor(error: ConnectError, message: string = error.rawMessage) {
    super(`[${codeName(error.code)}] ${message}`, { cause: error });
    this.code = error.code;
    this.rawMessage = message;
    this.metadata = error.metadata;
  }

  /** The error details of one type the server attached, e.g. `google.rpc.BadRequest`. */
  findDetails<Desc extends DescMessage>(desc: Desc): MessageShape<Desc>[] {
    return this.cause.findDetails(desc);
  }
}

/** `INVALID_ARGUMENT`: the request is invalid; `fieldViolations` names every invalid field. */
export class InvalidArgumentError extends RpcError {
  override name = "InvalidArgumentError";
  /** Every invalid field, with its path. */
  readonly fieldViolations: FieldViolation[];
  constructor(error: ConnectError) {
    super(error);
    this.fieldViolations = fieldViolations(error);
  }
}

/** `NOT_FOUND`: no approval has that id. */
export class NotFoundError extends RpcError {
  override name = "NotFoundError";
}

/** `ALREADY_EXISTS`: the idempotency key was used before with different content. */
export class AlreadyExistsError extends RpcError {
  override name = "AlreadyExistsError";
}

/**
 * `FAILED_PRECONDITION`: the approval is no longer pending (a decision or cancel came too late), or a
 * policy file that was to be reloaded is invalid (then `fieldViolations` has every problem).
 */
export class FailedPreconditionError extends RpcError {
  override name = "FailedPreconditionError";
  /** The problems, with their paths, when the server sent them. */
  readonly fieldViolations: FieldViolation[];
  constructor(error: ConnectError) {
    super(error);
    this.fieldViolations = fieldViolations(error);
  }
}

/** `PERMISSION_DENIED`: the caller's identity may not do this (wrong role, not an approver, self-approval). */
export class PermissionDeniedError extends RpcError {
  override name = "PermissionDeniedError";
}

/** `UNAUTHENTICATED`: no client certificate, or a missing or wrong admin token. */
export class UnauthenticatedError extends RpcError {
  override name = "UnauthenticatedError";
}

/** `RESOURCE_EXHAUSTED`: rate limited or over a limit; `retryDelayMs` says when to try again. */
export class ResourceExhaustedError extends RpcError {
  override name = "ResourceExhaustedError";
  /** How long to wait before retrying, when the server said (`google.rpc.RetryInfo`). */
  readonly retryDelayMs: number | undefined;
  constructor(error: ConnectError) {
    super(error);
    const delay = error.findDetails(RetryInfoSchema)[0]?.retryDelay;
    this.retryDelayMs =
      delay === undefined ? undefined : Number(delay.seconds) * 1000 + Math.round(delay.nanos / 1e6);
  }
}

/**
 * The server could not be reached, or the connection broke before an answer (`UNAVAILABLE`, or a
 * connection reset). Safe to retry; `waitForDecision` does so by itself.
 */
export class UnavailableError extends RpcError {
  override name = "UnavailableError";
}

/** The TLS handshake failed: the server's certificate is not trusted, or it refused the client's. */
export class TlsError extends RpcError {
  override name = "TlsError";
  /** The Node.js / OpenSSL error code, e.g. `SELF_SIGNED_CERT_IN_CHAIN`. */
  readonly reason: string;
  constructor(error: ConnectError, reason: string, message: string) {
    super(error, message);
    this.reason = reason;
  }
}

/** `DEADLINE_EXCEEDED`: the call (or the wait) took longer than its `timeoutMs`. */
export class DeadlineExceededError extends RpcError {
  override name = "DeadlineExceededError";
}

/** The call was aborted through its `AbortSignal` (`CANCELED`). */
export class AbortedError extends RpcError {
  override name = "AbortedError";
}

/**
 * An approval ended in a state other than APPROVED, so the caller must not go ahead. Thrown by
 * `requireApproval`; the subclass says how it ended.
 */
export class ApprovalNotApprovedError extends CountersignError {
  override name = "ApprovalNotApprovedError";
  /** The approval in its terminal state. */
  readonly approval: Approval;
  /** Who decided: the denier, the admin, the client that cancelled, or "system" for an expiry. */
  readonly approver: string;
  /** The reason given with the decision (may be empty). */
  readonly reason: string;

  constructor(approval: Approval, outcome: string) {
    const by = approval.decidedBy === "" ? "" : ` by ${approval.decidedBy}`;
    const why = approval.reason === "" ? "" : `: ${approval.reason}`;
    super(`approval ${approval.id} (${approval.action}) was ${outcome}${by}${why}`);
    this.approval = approval;
    this.approver = approval.decidedBy;
    this.reason = approval.reason;
  }
}

/** The approval was denied. */
export class ApprovalDeniedError extends ApprovalNotApprovedError {
  override name = "ApprovalDeniedError";
  constructor(approval: Approval) {
    super(approval, "denied");
  }
}

/** Nobody decided before the approval's deadline. */
export class ApprovalExpiredError extends ApprovalNotApprovedError {
  override name = "ApprovalExpiredError";
  constructor(approval: Approval) {
    super(approval, "expired");
  }
}

/** The approval was cancelled, by its requester or an admin. */
export class ApprovalCancelledError extends ApprovalNotApprovedError {
  override name = "ApprovalCancelledError";
  constructor(approval: Approval) {
    super(approval, "cancelled");
  }
}

/**
 * The error for an approval that is final but not approved; undefined for APPROVED (and for a state that
 * is not final, which is never an approval either).
 */
export function notApprovedError(approval: Approval): ApprovalNotApprovedError | undefined {
  switch (approval.state) {
    case State.DENIED:
      return new ApprovalDeniedError(approval);
    case State.EXPIRED:
      return new ApprovalExpiredError(approval);
    case State.CANCELLED:
      return new ApprovalCancelledError(approval);
    case State.APPROVED:
    case State.PENDING:
    case State.UNSPECIFIED:
      return undefined;
    default:
      return undefined;
  }
}

type RpcErrorClass = new (error: ConnectError) => RpcError;

/** The one table from status codes to typed errors; any other code is a plain `RpcError`. */
const statusErrors: ReadonlyMap<Code, RpcErrorClass> = new Map<Code, RpcErrorClass>([
  [Code.InvalidArgument, InvalidArgumentError],
  [Code.NotFound, NotFoundError],
  [Code.AlreadyExists, AlreadyExistsError],
  [Code.FailedPrecondition, FailedPreconditionError],
  [Code.PermissionDenied, PermissionDeniedError],
  [Code.Unauthenticated, UnauthenticatedError],
  [Code.ResourceExhausted, ResourceExhaustedError],
  [Code.Unavailable, UnavailableError],
  // connect-node reports a connection reset as ABORTED; this server never sends ABORTED itself.
  [Code.Aborted, UnavailableError],
  [Code.DeadlineExceeded, DeadlineExceededError],
  [Code.Canceled, AbortedError],
]);

/** Node.js error codes that mean the connection, not the server, failed. */
const connectionErrorCodes = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
  "ERR_STREAM_PREMATURE_CLOSE",
  "ERR_HTTP2_GOAWAY_SESSION",
  "ERR_HTTP2_SESSION_ERROR",
  "ERR_HTTP2_STREAM_CANCEL",
]);

/** Node.js / OpenSSL codes of certificates the client does not trust. */
const untrustedServerCodes = new Set([
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "CERT_UNTRUSTED",
  "CERT_SIGNATURE_FAILURE",
]);

/** The `code` properties of an error and its causes, outermost first. */
function causeCodes(err: unknown): string[] {
  const codes: string[] = [];
  const seen = new Set<unknown>();
  let current = err;
  while (current instanceof Error && !seen.has(current)) {
    seen.add(current);
    const code = (current as { code?: unknown }).code;
    if (typeof code === "string") codes.push(code);
    current = current.cause;
  }
  return codes;
}

/** A TlsError when the failure was the TLS handshake. */
function tlsError(error: ConnectError, codes: string[], target: string): TlsError | undefined {
  const reason = codes.find(
    (c) =>
      untrustedServerCodes.has(c) ||
      c.startsWith("ERR_SSL_") ||
      c.startsWith("ERR_TLS_") ||
      c.startsWith("CERT_"),
  );
  if (reason === undefined) return undefined;
  const detail = error.rawMessage.split("\n")[0]?.trim() ?? "";
  let message: string;
  if (untrustedServerCodes.has(reason))
    message = `the certificate of ${target} is not trusted (${detail}); pass the CA that signed it (tls.ca)`;
  else if (reason === "ERR_TLS_CERT_ALTNAME_INVALID")
    message = `the certificate of ${target} is not valid for this host name (${detail})`;
  else if (reason === "CERT_HAS_EXPIRED" || reason === "CERT_NOT_YET_VALID")
    message = `the certificate of ${target} is not valid now (${detail})`;
  else if (reason === "ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED")
    message = `${target} requires a client certificate (mutual TLS); pass one (tls.cert and tls.key)`;
  else message = `the TLS handshake with ${target} failed (${reason}: ${detail})`;
  return new TlsError(error, reason, message);
}

/** What `toCountersignError` knows about the call that failed. */
export interface ErrorContext {
  /** The server's URL, named in connection errors. */
  target?: string;
  /**
   * The caller's signal. When this key is present (even as undefined), a CANCELED call whose signal was
   * not aborted is taken for what it is: the connection closing, an `UnavailableError`.
   */
  signal?: AbortSignal | undefined;
}

/**
 * Turns anything a call threw into a typed SDK error, by the table of status codes; a TLS handshake
 * failure becomes a `TlsError` and a broken connection an `UnavailableError`, whatever code the transport
 * gave them. SDK errors are returned as they are.
 */
export function toCountersignError(err: unknown, context: ErrorContext = {}): CountersignError {
  if (err instanceof CountersignError) return err;
  const error = ConnectError.from(err);
  const target = context.target ?? "the server";
  const codes = causeCodes(error);
  const tls = tlsError(error, codes, target);
  if (tls !== undefined) return tls;
  if (error.code === Code.Canceled && "signal" in context && context.signal?.aborted !== true) {
    // Not the caller's abort: the server (or something between) closed the stream. With mutual TLS this
    // is how a refused client certificate looks to an HTTP/2 client.
    return new UnavailableError(
      error,
      `${target} closed the connection before answering (${error.rawMessage}); with mutual TLS, check that the client certificate is signed by a CA the server trusts`,
    );
  }
  if (codes.some((c) => connectionErrorCodes.has(c))) {
    return new UnavailableError(error, `cannot reach ${target}: ${error.rawMessage}`);
  }
  const Type = statusErrors.get(error.code) ?? RpcError;
  return new Type(error);
}

function fieldViolations(error: ConnectError): FieldViolation[] {
  return error
    .findDetails(BadRequestSchema)
    .flatMap((d) => d.fieldViolations.map((v) => ({ field: v.field, description: v.description })));
}

/** `invalid_argument` for Code.InvalidArgument, as the Connect protocol spells codes. */
function codeName(code: Code): string {
  return (Code[code] ?? "unknown").replace(
    /[A-Z]/g,
    (c, i: number) => (i === 0 ? "" : "_") + c.toLowerCase(),
  );
}
