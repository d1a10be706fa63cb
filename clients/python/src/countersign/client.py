"""The client: ask for approval, wait for the decision over the ``WatchApproval`` stream, typed errors."""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Callable, Iterator, Mapping, Sequence, Union
from urllib.parse import urlsplit

import grpc

from countersign.backoff import ReconnectPolicy, backoff_delay
from countersign.errors import (
    CountersignError,
    DeadlineExceededError,
    ResourceExhaustedError,
    RpcError,
    UnavailableError,
    not_approved_error,
    to_countersign_error,
)
from countersign.v1 import (
    admin_service_pb2_grpc,
    approval_pb2,
    approval_service_pb2,
    approval_service_pb2_grpc,
)

__all__ = ["Client", "Pem", "ReconnectEvent", "RequestedApproval", "ServiceClient", "is_final_state"]

Pem = Union[bytes, str, "os.PathLike[str]"]
"""PEM bytes or text, or the path of a PEM file."""

DEVELOPMENT_URL = "http://127.0.0.1:50051"
"""Where the development server (``npm start``) serves gRPC."""

_FINAL_STATES = frozenset(
    {
        approval_pb2.STATE_APPROVED,
        approval_pb2.STATE_DENIED,
        approval_pb2.STATE_EXPIRED,
        approval_pb2.STATE_CANCELLED,
    }
)

_ADMIN_SERVICE = "countersign.v1.AdminService"


def is_final_state(state: approval_pb2.State) -> bool:
    """True for the states an approval never leaves: APPROVED, DENIED, EXPIRED, CANCELLED."""
    return state in _FINAL_STATES


@dataclass(frozen=True)
class ReconnectEvent:
    """Told before each retry of a wait, e.g. to show "reconnecting…"."""

    attempt: int
    """Failed attempts in a row so far (1 for the first)."""
    delay: float
    """Seconds the client waits before the next attempt."""
    error: RpcError
    """Why the last attempt failed."""


@dataclass(frozen=True)
class RequestedApproval:
    """The server's answer to a request for approval."""

    approval: approval_pb2.Approval
    """The approval as created (or, for a retried idempotent request, as it is now)."""
    created: bool
    """False when the idempotency key matched an approval that already existed."""

    @property
    def id(self) -> str:
        """The approval's id."""
        return self.approval.id


def _read_pem(setting: str, value: Pem) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str) and "-----BEGIN" in value:
        return value.encode()
    try:
        return Path(value).read_bytes()
    except OSError as err:
        raise ValueError(f"cannot read the {setting} file {os.fspath(value)}: {err.strerror}") from err


def _required(
    approval: approval_pb2.Approval, has_approval: bool, id: str | None = None
) -> approval_pb2.Approval:
    if not has_approval or (id is not None and approval.id != id):
        which = "an approval" if id is None else f"approval {id}"
        raise CountersignError(f"the server answered without {which} (protocol violation)")
    return approval


class ServiceClient:
    """A generated stub (``countersign.v1.*_pb2_grpc``) with the client's defaults: every method takes the
    request message and optional ``timeout`` (seconds) and ``metadata``, gets the default deadline (unary
    calls), headers and admin token, and raises typed errors (:class:`countersign.RpcError`). Streaming
    methods return an iterator of responses."""

    def __init__(self, client: Client, stub: object, service: str) -> None:
        self._client = client
        self._stub = stub
        self._service = service

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._stub, name)
        client, service = self._client, self._service
        if isinstance(method, grpc.UnaryStreamMultiCallable):

            def stream(
                request: Any, *, timeout: float | None = None, metadata: Sequence[tuple[str, str]] = ()
            ) -> Iterator[Any]:
                call = method(request, timeout=timeout, metadata=client._metadata(service, metadata))
                try:
                    yield from call
                except grpc.RpcError as err:
                    raise to_countersign_error(err, client.url) from err
                finally:
                    call.cancel()

            return stream

        def unary(
            request: Any, *, timeout: float | None = None, metadata: Sequence[tuple[str, str]] = ()
        ) -> Any:
            try:
                return method(
                    request,
                    timeout=client.timeout if timeout is None else timeout,
                    metadata=client._metadata(service, metadata),
                )
            except grpc.RpcError as err:
                raise to_countersign_error(err, client.url) from err

        return unary


class Client:
    """A client of the Countersign API over gRPC. The connection opens on the first call and is kept alive
    with pings while calls are open; use the client as a context manager (or call :meth:`close`) to close
    it.

    :param url: the server's gRPC URL: ``https://host:port`` with TLS, ``http://127.0.0.1:50051`` for the
        development server
    :param ca: CA certificates of the server's certificate (default: the system's roots)
    :param cert: the client certificate for mutual TLS; its identity is the caller
    :param key: the private key of ``cert``
    :param server_name: the name to check the server's certificate against (default: the URL's host)
    :param admin_token: sent as ``authorization: Bearer <token>`` on AdminService calls only
    :param metadata: headers sent with every call
    :param timeout: deadline of every unary call in seconds, ``None`` for none; waits are not limited by it
    :param reconnect: backoff of waits and of create retries
    :raises ValueError: for a URL that is not ``http(s)://host:port``, TLS settings on an ``http`` URL,
        ``cert`` without ``key`` (or the reverse), or a PEM file that cannot be read
    """

    url: str
    """The server's URL, as named in errors."""
    timeout: float | None
    """Deadline of unary calls, in seconds."""
    reconnect: ReconnectPolicy
    """Backoff of waits and create retries."""
    approvals: ServiceClient
    """The generated ``ApprovalService`` stub, with the client's defaults and typed errors."""
    admin: ServiceClient
    """The generated ``AdminService`` stub (needs ``admin_token``)."""

    def __init__(
        self,
        url: str,
        *,
        ca: Pem | None = None,
        cert: Pem | None = None,
        key: Pem | None = None,
        server_name: str | None = None,
        admin_token: str | None = None,
        metadata: Mapping[str, str] | None = None,
        timeout: float | None = 30.0,
        reconnect: ReconnectPolicy | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError(f"url {url!r} must be https://host:port (or http://host:port without TLS)")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError as err:
            raise ValueError(f"url {url!r} has an invalid port") from err
        if (cert is None) != (key is None):
            raise ValueError("cert and key must be given together")
        secure = parts.scheme == "https"
        if not secure and (ca is not None or cert is not None or server_name is not None):
            raise ValueError(f"TLS settings need an https:// url, not {url}")
        if timeout is not None and timeout <= 0:
            raise ValueError(f"timeout must be a number of seconds > 0 (or None), got {timeout!r}")
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        target = f"{host}:{port}"
        self.url = url
        self.timeout = timeout
        self.reconnect = reconnect or ReconnectPolicy()
        self._admin_token = admin_token
        self._headers = tuple((k.lower(), v) for k, v in (metadata or {}).items())
        options: list[tuple[str, Any]] = [
            # Pings while calls are open, so that a connection that died silently is noticed during a wait.
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.keepalive_timeout_ms", 15_000),
            # The channel reconnects on the same schedule as the waits retry.
            ("grpc.initial_reconnect_backoff_ms", max(1, int(self.reconnect.initial_delay * 1000))),
            ("grpc.max_reconnect_backoff_ms", max(1, int(self.reconnect.max_delay * 1000))),
        ]
        if server_name is not None:
            options.append(("grpc.ssl_target_name_override", server_name))
        if secure:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=None if ca is None else _read_pem("ca", ca),
                private_key=None if key is None else _read_pem("key", key),
                certificate_chain=None if cert is None else _read_pem("cert", cert),
            )
            self._channel = grpc.secure_channel(target, credentials, options=options)
        else:
            self._channel = grpc.insecure_channel(target, options=options)
        self._approvals = approval_service_pb2_grpc.ApprovalServiceStub(self._channel)
        self.approvals = ServiceClient(self, self._approvals, "countersign.v1.ApprovalService")
        self.admin = ServiceClient(self, admin_service_pb2_grpc.AdminServiceStub(self._channel), _ADMIN_SERVICE)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **options: Any) -> Client:
        """A client configured like the ``countersign`` CLI: ``COUNTERSIGN_URL`` (default the development
        server, ``http://127.0.0.1:50051``) and the PEM files ``COUNTERSIGN_CA``, ``COUNTERSIGN_CERT`` and
        ``COUNTERSIGN_KEY``; an empty variable counts as unset. ``options`` are passed to the constructor
        and win over the environment. The URL must be the server's gRPC port.

        :raises ValueError: as the constructor, naming the environment variables
        """
        environ = os.environ if env is None else env
        url = options.pop("url", None)

        def given(name: str) -> str | None:
            return environ.get(name) or None

        cert, key = given("COUNTERSIGN_CERT"), given("COUNTERSIGN_KEY")
        if (cert is None) != (key is None):
            raise ValueError("COUNTERSIGN_CERT and COUNTERSIGN_KEY must be given together")
        settings: dict[str, Any] = {}
        for option, name in (("ca", "COUNTERSIGN_CA"), ("cert", "COUNTERSIGN_CERT"), ("key", "COUNTERSIGN_KEY")):
            path = given(name)
            if path is not None:
                try:
                    settings[option] = Path(path).read_bytes()
                except OSError as err:
                    raise ValueError(f"cannot read the {name} file {path}: {err.strerror}") from err
        settings.update(options)
        return cls(url or given("COUNTERSIGN_URL") or DEVELOPMENT_URL, **settings)

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Closes the channel; calls still open end with :class:`countersign.CallCancelledError`."""
        self._channel.close()

    def _metadata(self, service: str, extra: Sequence[tuple[str, str]] = ()) -> tuple[tuple[str, str], ...]:
        merged = list(extra)
        names = {k for k, _ in merged}
        merged.extend((k, v) for k, v in self._headers if k not in names)
        if self._admin_token is not None and service == _ADMIN_SERVICE and "authorization" not in names:
            merged.append(("authorization", f"Bearer {self._admin_token}"))
        return tuple(merged)

    def request_approval(
        self,
        action: str,
        title: str,
        *,
        justification: str = "",
        params: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        on_behalf_of: str = "",
        origin: approval_pb2.Origin | None = None,
        overrides: approval_pb2.PolicyOverrides | None = None,
        rerequest_of: str = "",
        timeout: float | None = None,
        max_attempts: int = 3,
    ) -> RequestedApproval:
        """Asks for approval of ``action`` (the fields are those of ``CreateApprovalRequest``). The create
        is retried up to ``max_attempts`` times while the server is unavailable; retrying is safe, as every
        request carries an idempotency key (yours, or a random one), so it never makes a second approval.

        :raises InvalidArgumentError: with ``field_violations`` naming every invalid field
        :raises AlreadyExistsError: the idempotency key was used with different content
        :raises PermissionDeniedError, ResourceExhaustedError, UnavailableError: and any other RpcError
        """
        request = approval_service_pb2.CreateApprovalRequest(
            action=action,
            title=title,
            justification=justification,
            idempotency_key=idempotency_key or str(uuid.uuid4()),
            on_behalf_of=on_behalf_of,
            rerequest_of=rerequest_of,
        )
        if params is not None:
            request.params.SetInParent()
            request.params.update(params)
        if origin is not None:
            request.origin.CopyFrom(origin)
        if overrides is not None:
            request.overrides.CopyFrom(overrides)
        attempt = 1
        while True:
            try:
                response = self.approvals.CreateApproval(request, timeout=timeout)
            except UnavailableError:
                if attempt >= max_attempts:
                    raise
                time.sleep(backoff_delay(attempt, self.reconnect))
                attempt += 1
                continue
            approval = _required(response.approval, response.HasField("approval"))
            return RequestedApproval(approval=approval, created=response.created)

    def get_approval(self, id: str, *, timeout: float | None = None) -> approval_pb2.Approval:
        """The current snapshot of approval ``id``.

        :raises NotFoundError: when no approval of the caller has that id
        """
        response = self.approvals.GetApproval(approval_service_pb2.GetApprovalRequest(id=id), timeout=timeout)
        return _required(response.approval, response.HasField("approval"), id)

    def cancel_approval(self, id: str, reason: str = "", *, timeout: float | None = None) -> approval_pb2.Approval:
        """Cancels approval ``id`` (requesters cancel their own) and returns it, now CANCELLED.

        :raises FailedPreconditionError: when it is already final
        """
        response = self.approvals.CancelApproval(
            approval_service_pb2.CancelApprovalRequest(id=id, reason=reason), timeout=timeout
        )
        return _required(response.approval, response.HasField("approval"), id)

    def watch(
        self,
        id: str,
        *,
        timeout: float | None = None,
        on_reconnect: Callable[[ReconnectEvent], None] | None = None,
    ) -> Iterator[approval_pb2.Approval]:
        """Every new snapshot of approval ``id``: the current state first, then one after each change, ending
        after the final state. Watches again with backoff when the server is unavailable or the stream
        breaks; watching again starts from the current state, so a decision made meanwhile is never missed.
        Snapshots already seen (same version) are not repeated.

        :param timeout: give up after this many seconds (default: no limit; the approval's own expiry ends
            the wait); the approval is left as it is
        :param on_reconnect: called before each new attempt
        :raises DeadlineExceededError: after ``timeout``
        :raises UnavailableError: after ``reconnect.max_attempts`` failed attempts in a row
        :raises RpcError: any other error (NotFoundError, PermissionDeniedError, ...) at once
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        request = approval_service_pb2.WatchApprovalRequest(id=id)
        last_version = -1
        failures = 0

        def gave_up() -> DeadlineExceededError:
            return DeadlineExceededError(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"gave up waiting for approval {id} after {timeout:g} s; it is left as it is",
            )

        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise gave_up()
            call = self._approvals.WatchApproval(
                request, timeout=remaining, metadata=self._metadata("countersign.v1.ApprovalService")
            )
            error: RpcError
            try:
                for response in call:
                    failures = 0
                    approval = _required(response.approval, response.HasField("approval"), id)
                    if approval.version > last_version:
                        last_version = approval.version
                        yield approval
                    if is_final_state(approval.state):
                        return
                error = UnavailableError(
                    grpc.StatusCode.UNAVAILABLE, f"the watch of approval {id} ended before a decision"
                )
            except grpc.RpcError as err:
                error = to_countersign_error(err, self.url)
                if isinstance(error, DeadlineExceededError) and deadline is not None:
                    raise gave_up() from err
                if not isinstance(error, (UnavailableError, ResourceExhaustedError)):
                    raise error from err
            finally:
                call.cancel()
            failures += 1
            if failures >= self.reconnect.max_attempts:
                raise error
            delay = backoff_delay(failures, self.reconnect)
            if isinstance(error, ResourceExhaustedError) and error.retry_delay is not None:
                delay = max(delay, error.retry_delay)
            if on_reconnect is not None:
                on_reconnect(ReconnectEvent(attempt=failures, delay=delay, error=error))
            if deadline is not None:
                delay = min(delay, max(0.0, deadline - time.monotonic()))
            time.sleep(delay)

    def wait_for_decision(
        self,
        id: str,
        *,
        timeout: float | None = None,
        on_update: Callable[[approval_pb2.Approval], None] | None = None,
        on_reconnect: Callable[[ReconnectEvent], None] | None = None,
    ) -> approval_pb2.Approval:
        """Waits until approval ``id`` is final and returns it, whatever the outcome (APPROVED, DENIED,
        EXPIRED or CANCELLED: check ``state``, or use :meth:`require_approval`). Any error raises; an error
        never returns.

        :param on_update: called with every new snapshot (the current state first, then after each vote)
        :raises: as :meth:`watch`
        """
        last: approval_pb2.Approval | None = None
        for approval in self.watch(id, timeout=timeout, on_reconnect=on_reconnect):
            last = approval
            if on_update is not None:
                on_update(approval)
        if last is None or not is_final_state(last.state):
            raise CountersignError(f"the watch of approval {id} ended without a final state")
        return last

    def require_approval(
        self,
        action: str,
        title: str,
        *,
        timeout: float | None = None,
        on_requested: Callable[[RequestedApproval], None] | None = None,
        on_update: Callable[[approval_pb2.Approval], None] | None = None,
        on_reconnect: Callable[[ReconnectEvent], None] | None = None,
        **fields: Any,
    ) -> approval_pb2.Approval:
        """Asks for approval and waits for the decision: returns the approval only when it is APPROVED.
        Every other outcome, and every error, raises: nothing but an approval ever returns. ``fields`` are
        those of :meth:`request_approval`; ``timeout`` limits the wait.

        :raises ApprovalDenied, ApprovalExpired, ApprovalCancelled: when it is not approved (with
            ``approval``, ``approver`` and ``reason``)
        :raises DeadlineExceededError: after ``timeout`` (the approval is left pending)
        :raises RpcError: any error of the create or the wait
        """
        requested = self.request_approval(action, title, **fields)
        if on_requested is not None:
            on_requested(requested)
        final = self.wait_for_decision(
            requested.id, timeout=timeout, on_update=on_update, on_reconnect=on_reconnect
        )
        if final.state == approval_pb2.STATE_APPROVED:
            return final
        raise not_approved_error(final) or CountersignError(
            f"approval {final.id} ended in state {approval_pb2.State.Name(final.state)}"
        )
