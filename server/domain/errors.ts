/**
 * Errors of the product's rules. The service layer maps each class to one status code, in one table.
 */

/** One problem with one field of a request. */
export interface FieldViolation {
  /** Path of the field, e.g. `params.version` or `origin.links[2].url`. */
  field: string;
  description: string;
}

/** Base class of every domain error. */
export class DomainError extends Error {
  override name = "DomainError";
}

/** The request is malformed; carries every violation with its field path. */
export class ValidationError extends DomainError {
  override name = "ValidationError";
  constructor(readonly violations: FieldViolation[]) {
    super(violations.map((v) => `${v.field}: ${v.description}`).join("; "));
  }
  /** A ValidationError about a single field. */
  static of(field: string, description: string): ValidationError {
    return new ValidationError([{ field, description }]);
  }
}

/** The named approval does not exist. */
export class NotFoundError extends DomainError {
  override name = "NotFoundError";
}

/** The same idempotency key was used for different content. */
export class ConflictError extends DomainError {
  override name = "ConflictError";
}

/**
 * The system is not in a state that allows the operation (e.g. the approval is already decided, or the
 * policy file on disk is invalid); `violations` says what is wrong where, when that is known.
 */
export class FailedPreconditionError extends DomainError {
  override name = "FailedPreconditionError";
  constructor(
    message: string,
    readonly violations: FieldViolation[] = [],
  ) {
    super(message);
  }
}

/** The caller or the approver may not do this (not an approver, self-approval, wrong role). */
export class PermissionDeniedError extends DomainError {
  override name = "PermissionDeniedError";
}

/** The caller is not authenticated. */
export class UnauthenticatedError extends DomainError {
  override name = "UnauthenticatedError";
}

/** A limit was reached; retry after `retryAfterMs`. */
export class ResourceExhaustedError extends DomainError {
  override name = "ResourceExhaustedError";
  constructor(
    message: string,
    readonly retryAfterMs: number,
  ) {
    super(message);
  }
}

/** A dependency (the store) is unavailable; the call is safe to retry. */
export class UnavailableError extends DomainError {
  override name = "UnavailableError";
}

/**
 * The store answers but lost its data (its epoch marker is gone or changed: a Redis restarted empty or
 * flushed). Nothing is served from it until an operator restores the data or restarts the replica.
 */
export class StoreDataLostError extends UnavailableError {
  override name = "StoreDataLostError";
}
