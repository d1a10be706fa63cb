"""The Python client against the real server (`countersign serve`) over mutual TLS, with a Redis store."""

from __future__ import annotations

import threading
import uuid

import grpc
import pytest
from conftest import ADMIN_TOKEN, Server, free_port

from countersign import (
    AlreadyExistsError,
    Approval,
    ApprovalCancelled,
    ApprovalDenied,
    Client,
    CountersignError,
    DeadlineExceededError,
    Decision,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ReconnectEvent,
    ResourceExhaustedError,
    RpcError,
    State,
    TlsError,
    UnauthenticatedError,
    UnavailableError,
)
from countersign.v1 import admin_service_pb2, approval_pb2, approval_service_pb2


def decide(decider: Client, id: str, decision: Decision, approver: str, reason: str = "") -> None:
    """Submits one vote as the decider (as the Slack gateway does for a click)."""
    decider.approvals.SubmitDecision(
        approval_service_pb2.SubmitDecisionRequest(id=id, approver=approver, decision=decision, reason=reason)
    )


def test_requests_and_waits_until_approved(requester: Client, decider: Client, server: Server) -> None:
    requested = requester.request_approval(
        "deploy.api",
        "Deploy api v42",
        justification="fixes the login bug",
        params={"service": "api", "version": "v42", "replicas": 3},
    )
    assert requested.created
    assert requested.approval.state == State.STATE_PENDING
    assert requested.approval.requester == server.pki.identities["requester"]
    assert requested.id == requested.approval.id

    seen: list[State] = []

    def on_update(approval: Approval) -> None:
        seen.append(approval.state)
        # Decide only once the waiter has the pending state: the decision is pushed over the stream.
        if approval.state == State.STATE_PENDING:
            decide(decider, approval.id, approval_pb2.DECISION_APPROVE, "alice", "looks good")

    final = requester.wait_for_decision(requested.id, timeout=30, on_update=on_update)
    assert seen == [State.STATE_PENDING, State.STATE_APPROVED]
    assert final.state == State.STATE_APPROVED
    assert final.decided_by == "alice"
    assert final.reason == "looks good"
    assert dict(final.params) == {"service": "api", "version": "v42", "replicas": 3}
    assert requester.get_approval(requested.id).state == State.STATE_APPROVED


def test_require_approval_returns_the_approval_only_when_approved(requester: Client, decider: Client) -> None:
    def approve(approval: Approval) -> None:
        if approval.state == State.STATE_PENDING:
            decide(decider, approval.id, approval_pb2.DECISION_APPROVE, "bob")

    approval = requester.require_approval("deploy.web", "Deploy web", timeout=30, on_update=approve)
    assert approval.state == State.STATE_APPROVED
    assert approval.decided_by == "bob"


def test_require_approval_raises_approval_denied_with_the_approver_and_reason(
    requester: Client, decider: Client
) -> None:
    requested: list[str] = []

    def deny(approval: Approval) -> None:
        if approval.state == State.STATE_PENDING:
            decide(decider, approval.id, approval_pb2.DECISION_DENY, "bob", "not on a Friday")

    with pytest.raises(ApprovalDenied) as denied:
        requester.require_approval(
            "deploy.api",
            "Deploy on Friday",
            timeout=30,
            on_requested=lambda r: requested.append(r.id),
            on_update=deny,
        )
    assert denied.value.approver == "bob"
    assert denied.value.reason == "not on a Friday"
    assert denied.value.approval.state == State.STATE_DENIED
    assert denied.value.approval.id == requested[0]
    assert f"approval {requested[0]} (deploy.api) was denied by bob: not on a Friday" in str(denied.value)


def test_require_approval_raises_approval_cancelled_when_the_requester_cancels(
    requester: Client, server: Server
) -> None:
    with pytest.raises(ApprovalCancelled) as cancelled:
        requester.require_approval(
            "deploy.api",
            "Deploy, then change my mind",
            timeout=30,
            on_requested=lambda r: requester.cancel_approval(r.id, "changed my mind"),
        )
    assert cancelled.value.approver == server.pki.identities["requester"]
    assert cancelled.value.reason == "changed my mind"


def test_an_idempotent_retry_returns_the_same_approval(requester: Client) -> None:
    key = f"python-{uuid.uuid4()}"
    first = requester.request_approval("deploy.api", "Once only", params={"n": 1}, idempotency_key=key)
    again = requester.request_approval("deploy.api", "Once only", params={"n": 1}, idempotency_key=key)
    assert first.created
    assert not again.created
    assert again.id == first.id
    with pytest.raises(AlreadyExistsError):
        requester.request_approval("deploy.api", "Other content", params={"n": 2}, idempotency_key=key)


def test_the_wait_resumes_after_the_server_restarts(server: Server) -> None:
    """The server goes away mid-wait and comes back on the same port with the same Redis: the wait
    reconnects with backoff and returns the decision made after the restart."""
    with server.client("requester") as requester:
        requested = requester.request_approval("deploy.api", "Deploy across a restart")
        pending = threading.Event()
        reconnected = threading.Event()
        reconnects: list[ReconnectEvent] = []
        outcome: list[Approval | BaseException] = []

        def on_reconnect(event: ReconnectEvent) -> None:
            reconnects.append(event)
            reconnected.set()

        def wait() -> None:
            try:
                outcome.append(
                    requester.wait_for_decision(
                        requested.id,
                        timeout=120,
                        on_update=lambda a: pending.set() if a.state == State.STATE_PENDING else None,
                        on_reconnect=on_reconnect,
                    )
                )
            except BaseException as err:  # handed to the test thread
                outcome.append(err)

        waiter = threading.Thread(target=wait, daemon=True)
        waiter.start()
        assert pending.wait(30), "the wait never saw the pending approval"
        server.stop()
        assert reconnected.wait(30), "the wait did not notice that the server went away"
        server.start()
        with server.client("decider") as decider:
            decide(decider, requested.id, approval_pb2.DECISION_APPROVE, "alice", "after the restart")
        waiter.join(60)
        assert not waiter.is_alive(), "the wait did not end after the decision"

    final = outcome[0]
    assert isinstance(final, Approval), final
    assert final.state == State.STATE_APPROVED
    assert final.reason == "after the restart"
    assert all(isinstance(e.error, UnavailableError) for e in reconnects)
    assert reconnects[0].attempt == 1


def test_maps_every_status_to_its_error_class(requester: Client, server: Server) -> None:
    with pytest.raises(InvalidArgumentError) as invalid:
        requester.request_approval(
            "bad action!",
            "",
            origin=approval_pb2.Origin(links=[approval_pb2.Link(label="x", url="ftp://x")]),
        )
    assert [v.field for v in invalid.value.field_violations] == ["action", "title", "origin.links[0].url"]
    assert all(v.description for v in invalid.value.field_violations)
    assert isinstance(invalid.value, RpcError) and isinstance(invalid.value, CountersignError)
    assert invalid.value.code == grpc.StatusCode.INVALID_ARGUMENT

    with pytest.raises(NotFoundError):
        requester.get_approval("01NOSUCHAPPROVAL")
    reconnects: list[ReconnectEvent] = []
    with pytest.raises(NotFoundError):
        requester.wait_for_decision("01NOSUCHAPPROVAL", timeout=30, on_reconnect=reconnects.append)
    assert reconnects == []

    requested = requester.request_approval("deploy.api", "Decide my own")
    with pytest.raises(PermissionDeniedError):
        decide(requester, requested.id, approval_pb2.DECISION_APPROVE, "alice")

    requester.cancel_approval(requested.id)
    with pytest.raises(FailedPreconditionError):
        requester.cancel_approval(requested.id)

    with pytest.raises(UnauthenticatedError):
        requester.admin.GetStats(admin_service_pb2.GetStatsRequest())
    with server.client("requester", admin_token=ADMIN_TOKEN) as admin:
        assert len(admin.admin.GetStats(admin_service_pb2.GetStatsRequest()).counts) > 0


def test_rate_limited_creates_raise_resource_exhausted_with_the_retry_delay(server: Server) -> None:
    # The limit is per identity (10 per second plus a burst of 20 by default): the stranger exhausts its own.
    with server.client("stranger") as stranger:
        with pytest.raises(ResourceExhaustedError) as limited:
            for i in range(200):
                stranger.request_approval("deploy.api", f"flood {i}", max_attempts=1)
    assert limited.value.retry_delay is not None
    assert 0 < limited.value.retry_delay <= 10


def test_a_wait_gives_up_after_its_timeout_and_leaves_the_approval_pending(requester: Client) -> None:
    requested = requester.request_approval("deploy.api", "Nobody decides")
    with pytest.raises(DeadlineExceededError) as gave_up:
        requester.wait_for_decision(requested.id, timeout=0.5)
    assert f"gave up waiting for approval {requested.id} after 0.5 s" in str(gave_up.value)
    assert requester.get_approval(requested.id).state == State.STATE_PENDING


def test_says_when_the_server_cannot_be_reached(server: Server) -> None:
    url = f"https://127.0.0.1:{free_port()}"
    with server.pki.client(url) as client:
        with pytest.raises(UnavailableError) as unavailable:
            client.request_approval("deploy.api", "nobody home", max_attempts=1)
        assert f"cannot reach {url}" in str(unavailable.value)
        reconnects: list[ReconnectEvent] = []
        with pytest.raises(DeadlineExceededError):
            client.wait_for_decision("01ABC", timeout=1, on_reconnect=reconnects.append)
        assert len(reconnects) >= 1
        assert all(isinstance(e.error, UnavailableError) for e in reconnects)


def test_says_when_the_server_certificate_is_not_trusted(server: Server) -> None:
    with Client(
        server.url,
        ca=server.pki.path("foreign-ca.pem"),
        cert=server.pki.path("requester.pem"),
        key=server.pki.path("requester-key.pem"),
    ) as client:
        with pytest.raises(TlsError) as untrusted:
            client.get_approval("01ABC")
    assert "is not trusted" in str(untrusted.value)


def test_says_when_the_client_certificate_is_missing(server: Server) -> None:
    with Client(server.url, ca=server.pki.path("ca.pem")) as client:
        with pytest.raises(UnavailableError) as refused:
            client.get_approval("01ABC")
    assert "check that a client certificate is given" in str(refused.value)
