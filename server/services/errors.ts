import { create } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { BadRequestSchema, RetryInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import {
  ConflictError,
  type DomainError,
  FailedPreconditionError,
  NotFoundError,
  PermissionDeniedError,
  ResourceExhaustedError,
  UnauthenticatedError,
  UnavailableError,
  ValidationError,
} from "../domain/errors.js";

/** The one table from domain errors to status codes. */
const codes: [new (...args: never[]) => DomainError, Code][] = [
  [ValidationError, Code.InvalidArgument],
  [NotFoundError, Code.NotFound],
  [ConflictError, Code.AlreadyExists],
  [FailedPreconditionError, Code.FailedPrecondition],
  [PermissionDeniedError, Code.PermissionDenied],
  [UnauthenticatedError, Code.Unauthenticated],
  [ResourceExhaustedError, Code.ResourceExhausted],
  [UnavailableError, Code.Unavailable],
];

/**
 * Turns any error into the ConnectError a client sees: domain errors get their status code and
 * machine-readable details (`google.rpc.BadRequest` with every field violation, `google.rpc.RetryInfo`);
 * anything else becomes INTERNAL with its detail kept in `cause`, never sent.
 */
export function toConnectError(err: unknown): ConnectError {
  if (err instanceof ConnectError) return err;
  for (const [type, code] of codes) {
    if (!(err instanceof type)) continue;
    const details = [];
    if (
      (err instanceof ValidationError || err instanceof FailedPreconditionError) &&
      err.violations.length > 0
    ) {
      details.push({
        desc: BadRequestSchema,
        value: create(BadRequestSchema, {
          fieldViolations: err.violations.map((v) => ({ field: v.field, description: v.description })),
        }),
      });
    }
    let metadata: Headers | undefined;
    if (err instanceof ResourceExhaustedError) {
      // One delay, in whole seconds rounded up, in RetryInfo and in `Retry-After` (as HTTP says it, for
      // clients that read no details).
      const seconds = Math.ceil(Math.max(0, err.retryAfterMs) / 1000);
      details.push({
        desc: RetryInfoSchema,
        value: create(RetryInfoSchema, { retryDelay: durationFromMs(seconds * 1000) }),
      });
      metadata = new Headers({ "retry-after": String(seconds) });
    }
    return new ConnectError(err.message, code, metadata, details, err);
  }
  if (err instanceof Error && err.name === "AbortError") {
    return new ConnectError("the call was cancelled", Code.Canceled, undefined, undefined, err);
  }
  return new ConnectError("internal error", Code.Internal, undefined, undefined, err);
}

/** Runs a unary handler body and maps whatever it throws to the status a client sees. */
export async function handle<T>(body: () => Promise<T>): Promise<T> {
  try {
    return await body();
  } catch (err) {
    throw toConnectError(err);
  }
}
