"""Typed errors: every failed call raises a subclass of :class:`RpcError` chosen by its status code (one
table, ``_STATUS_ERRORS``), and an approval that ends other than APPROVED raises a subclass of
:class:`ApprovalNotApproved`. An error is never turned into an approval."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, TypeVar

import grpc
from google.protobuf.message import DecodeError, Message
from google.rpc import error_details_pb2, status_pb2

from countersign.v1 import approval_pb2

__all__ = [
    "AlreadyExistsError",
    "ApprovalCancelled",
    "ApprovalDenied",
    "ApprovalExpired",
    "ApprovalNotApproved",
    "CallCancelledError",
    "CountersignError",
    "DeadlineExceededError",
    "FailedPreconditionError",
    "FieldViolation",
    "InvalidArgumentError",
    "NotFoundError",
    "PermissionDeniedError",
    "ResourceExhaustedError",
    "RpcError",
    "TlsError",
    "UnauthenticatedError",
    "UnavailableError",
    "not_approved_error",
    "to_countersign_error",
]

_M = TypeVar("_M", bound=Message)

_STATUS_DETAILS_KEY = "grpc-status-details-bin"


class CountersignError(Exception):
    """The base class of every error the SDK raises."""


@dataclass(frozen=True)
class FieldViolation:
    """One invalid field of a request, as the server reports it (``google.rpc.BadRequest``)."""

    field: str
    """Path of the field in the request, e.g. ``origin.links[0].url``."""
    description: str
    """What is wrong with it."""


class RpcError(CountersignError):
    """A call failed with a status code; the subclass says which (see ``_STATUS_ERRORS``).

    ``code`` is the status code, ``details`` the server's message (or the SDK's, for a wait that gave up),
    ``trailing_metadata`` the trailers of the call. The grpc error is the ``__cause__``.
    """

    code: grpc.StatusCode
    details: str
    trailing_metadata: tuple[tuple[str, str | bytes], ...]

    def __init__(
        self,
        code: grpc.StatusCode,
        details: str,
        trailing_metadata: Sequence[tuple[str, str | bytes]] = (),
    ) -> None:
        super().__init__(f"[{code.name.lower()}] {details}")
        self.code = code
        self.details = details
        self.trailing_metadata = tuple(trailing_metadata)

    def find_details(self, message_type: type[_M]) -> list[_M]:
        """The error details of one type the server attached (``grpc-status-details-bin``), e.g.
        ``google.rpc.error_details_pb2.BadRequest``."""
        found: list[_M] = []
        for key, value in self.trailing_metadata:
            if key != _STATUS_DETAILS_KEY or not isinstance(value, bytes):
                continue
            try:
                status = status_pb2.Status.FromString(value)
            except DecodeError:
                continue
            for detail in status.details:
                if detail.Is(message_type.DESCRIPTOR):
                    message = message_type()
                    detail.Unpack(message)
                    found.append(message)
        return found


def _field_violations(error: RpcError) -> list[FieldViolation]:
    return [
        FieldViolation(field=v.field, description=v.description)
        for request in error.find_details(error_details_pb2.BadRequest)
        for v in request.field_violations
    ]


class InvalidArgumentError(RpcError):
    """``INVALID_ARGUMENT``: the request is invalid; ``field_violations`` names every invalid field."""

    field_violations: list[FieldViolation]

    def __init__(
        self, code: grpc.StatusCode, details: str, trailing_metadata: Sequence[tuple[str, str | bytes]] = ()
    ) -> None:
        super().__init__(code, details, trailing_metadata)
        self.field_violations = _field_violations(self)


class NotFoundError(RpcError):
    """``NOT_FOUND``: no approval has that id (or it is not the caller's)."""


class AlreadyExistsError(RpcError):
    """``ALREADY_EXISTS``: the idempotency key was used before with different content."""


class FailedPreconditionError(RpcError):
    """``FAILED_PRECONDITION``: the approval is no longer pending (a decision or cancel came too late), or a
    policy file to reload is invalid (then ``field_violations`` has every problem)."""

    field_violations: list[FieldViolation]

    def __init__(
        self, code: grpc.StatusCode, details: str, trailing_metadata: Sequence[tuple[str, str | bytes]] = ()
    ) -> None:
        super().__init__(code, details, trailing_metadata)
        self.field_violations = _field_violations(self)


class PermissionDeniedError(RpcError):
    """``PERMISSION_DENIED``: the caller's identity may not do this (not a requester or decider,
    self-approval)."""


class UnauthenticatedError(RpcError):
    """``UNAUTHENTICATED``: no client certificate, or a missing or wrong admin token."""


class ResourceExhaustedError(RpcError):
    """``RESOURCE_EXHAUSTED``: rate limited or over a limit; ``retry_delay`` says when to try again."""

    retry_delay: float | None
    """Seconds to wait before retrying, when the server said (``google.rpc.RetryInfo``)."""

    def __init__(
        self, code: grpc.StatusCode, details: str, trailing_metadata: Sequence[tuple[str, str | bytes]] = ()
    ) -> None:
        super().__init__(code, details, trailing_metadata)
        infos = self.find_details(error_details_pb2.RetryInfo)
        self.retry_delay = (
            infos[0].retry_delay.ToTimedelta().total_seconds()
            if infos and infos[0].HasField("retry_delay")
            else None
        )


class UnavailableError(RpcError):
    """``UNAVAILABLE``: the server could not be reached, or the connection broke before an answer. Safe to
    retry; :meth:`Client.wait_for_decision` does so by itself."""


class TlsError(RpcError):
    """The TLS handshake failed: the server's certificate is not trusted or not valid for its name."""


class DeadlineExceededError(RpcError):
    """``DEADLINE_EXCEEDED``: the call, or the wait, took longer than its ``timeout``."""


class CallCancelledError(RpcError):
    """``CANCELLED``: the call was cancelled on this side, e.g. by closing the client during the call."""


class ApprovalNotApproved(CountersignError):
    """The approval ended in a state other than APPROVED, so the caller must not go ahead. Raised by
    :meth:`Client.require_approval`; the subclass says how it ended."""

    approval: approval_pb2.Approval
    """The approval in its final state."""
    approver: str
    """Who decided: the denier, the admin, the client that cancelled, or ``system`` for an expiry."""
    reason: str
    """The reason given with the decision (may be empty)."""

    def __init__(self, approval: approval_pb2.Approval, outcome: str) -> None:
        by = f" by {approval.decided_by}" if approval.decided_by else ""
        why = f": {approval.reason}" if approval.reason else ""
        super().__init__(f"approval {approval.id} ({approval.action}) was {outcome}{by}{why}")
        self.approval = approval
        self.approver = approval.decided_by
        self.reason = approval.reason


class ApprovalDenied(ApprovalNotApproved):
    """The approval was denied."""

    def __init__(self, approval: approval_pb2.Approval) -> None:
        super().__init__(approval, "denied")


class ApprovalExpired(ApprovalNotApproved):
    """Nobody decided before the approval's deadline."""

    def __init__(self, approval: approval_pb2.Approval) -> None:
        super().__init__(approval, "expired")


class ApprovalCancelled(ApprovalNotApproved):
    """The approval was cancelled, by its requester or an admin."""

    def __init__(self, approval: approval_pb2.Approval) -> None:
        super().__init__(approval, "cancelled")


def not_approved_error(approval: approval_pb2.Approval) -> ApprovalNotApproved | None:
    """The error for an approval that is final but not approved; ``None`` for APPROVED and for a state
    that is not final (neither is ever an approval to go ahead on)."""
    if approval.state == approval_pb2.STATE_DENIED:
        return ApprovalDenied(approval)
    if approval.state == approval_pb2.STATE_EXPIRED:
        return ApprovalExpired(approval)
    if approval.state == approval_pb2.STATE_CANCELLED:
        return ApprovalCancelled(approval)
    return None


_STATUS_ERRORS: dict[grpc.StatusCode, type[RpcError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.CANCELLED: CallCancelledError,
}
"""The one table from status codes to typed errors; any other code is a plain :class:`RpcError`."""

_UNTRUSTED_SERVER = ("CERTIFICATE_VERIFY_FAILED", "certificate verify failed")
_HANDSHAKE = ("Ssl handshake failed", "Handshake failed", "SSL_ERROR_SSL")
_CLOSED = ("Endpoint read failed", "TSI_DATA_CORRUPTED", "Socket closed", "Connection reset")


def to_countersign_error(error: grpc.RpcError, target: str = "the server") -> RpcError:
    """Turns what a grpc call raised into a typed SDK error, by the table of status codes. A TLS handshake
    failure becomes a :class:`TlsError`, and a server that cannot be reached an :class:`UnavailableError`
    naming ``target``."""
    call = error if isinstance(error, grpc.Call) else None
    code: grpc.StatusCode = call.code() if call is not None else grpc.StatusCode.UNKNOWN
    details: str = (call.details() if call is not None else None) or str(error)
    trailers = tuple((call.trailing_metadata() if call is not None else None) or ())
    if code == grpc.StatusCode.UNAVAILABLE:
        if any(marker in details for marker in _UNTRUSTED_SERVER):
            return TlsError(
                code,
                f"the certificate of {target} is not trusted ({details}); pass the CA that signed it (ca=...)",
                trailers,
            )
        if any(marker in details for marker in _HANDSHAKE):
            return TlsError(code, f"the TLS handshake with {target} failed ({details})", trailers)
        if any(marker in details for marker in _CLOSED):
            # With mutual TLS this is how a refused client certificate looks to the client: the handshake
            # completes, then the server hangs up.
            return UnavailableError(
                code,
                f"{target} closed the connection before answering ({details}); with mutual TLS, check that "
                "a client certificate is given (cert and key) and signed by a CA the server trusts",
                trailers,
            )
        if "failed to connect" in details or "Connection refused" in details:
            return UnavailableError(code, f"cannot reach {target}: {details}", trailers)
    return _STATUS_ERRORS.get(code, RpcError)(code, details, trailers)
