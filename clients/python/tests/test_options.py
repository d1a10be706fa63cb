"""The client's options and the pure parts of the SDK, without a server."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from countersign import (
    ApprovalCancelled,
    ApprovalDenied,
    ApprovalExpired,
    ApprovalNotApproved,
    Client,
    ReconnectPolicy,
    State,
    backoff_delay,
    is_final_state,
    not_approved_error,
)
from countersign.v1 import approval_pb2


def test_a_final_state_that_is_not_approved_maps_to_its_error_and_nothing_else_does() -> None:
    def approval(state: State) -> approval_pb2.Approval:
        return approval_pb2.Approval(
            id="01A", action="deploy.api", state=state, decided_by="system", reason="timed out"
        )

    assert isinstance(not_approved_error(approval(State.STATE_DENIED)), ApprovalDenied)
    expired = not_approved_error(approval(State.STATE_EXPIRED))
    assert isinstance(expired, ApprovalExpired) and isinstance(expired, ApprovalNotApproved)
    assert str(expired) == "approval 01A (deploy.api) was expired by system: timed out"
    assert expired.approver == "system"
    assert isinstance(not_approved_error(approval(State.STATE_CANCELLED)), ApprovalCancelled)
    for state in (State.STATE_APPROVED, State.STATE_PENDING, State.STATE_UNSPECIFIED):
        assert not_approved_error(approval(state)) is None
    assert [s for s in State.values() if is_final_state(s)] == [
        State.STATE_APPROVED,
        State.STATE_DENIED,
        State.STATE_EXPIRED,
        State.STATE_CANCELLED,
    ]


def test_backoff_grows_to_its_ceiling_with_jitter_in_the_upper_half() -> None:
    policy = ReconnectPolicy(initial_delay=0.25, max_delay=10, multiplier=2)
    assert backoff_delay(1, policy, lambda: 0.0) == 0.125
    assert backoff_delay(1, policy, lambda: 1.0) == 0.25
    assert backoff_delay(3, policy, lambda: 1.0) == 1.0
    assert backoff_delay(20, policy, lambda: 0.0) == 5.0
    assert backoff_delay(20, policy, lambda: 1.0) == 10.0
    assert ReconnectPolicy().max_attempts == math.inf
    with pytest.raises(ValueError, match="reconnect.initial_delay must be a number >= 0"):
        ReconnectPolicy(initial_delay=-1)
    with pytest.raises(ValueError, match="reconnect.multiplier must be at least 1"):
        ReconnectPolicy(multiplier=0.5)


def test_rejects_options_that_cannot_work_naming_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="must be https://host:port"):
        Client("127.0.0.1:50051")
    with pytest.raises(ValueError, match="must be https://host:port"):
        Client("ftp://127.0.0.1:21")
    with pytest.raises(ValueError, match="TLS settings need an https:// url"):
        Client("http://127.0.0.1:50051", ca=b"x")
    with pytest.raises(ValueError, match="cert and key must be given together"):
        Client("https://127.0.0.1:50051", cert=b"x")
    missing = tmp_path / "missing.pem"
    with pytest.raises(ValueError, match=f"cannot read the ca file {missing}"):
        Client("https://127.0.0.1:50051", ca=missing)
    with pytest.raises(ValueError, match="timeout must be a number of seconds > 0"):
        Client("http://127.0.0.1:50051", timeout=0)


def test_from_env_reads_the_cli_settings(tmp_path: Path) -> None:
    with Client.from_env({}) as development:
        assert development.url == "http://127.0.0.1:50051"
    with Client.from_env({"COUNTERSIGN_URL": "", "COUNTERSIGN_CA": ""}) as empty_is_unset:
        assert empty_is_unset.url == "http://127.0.0.1:50051"
    with Client.from_env({"COUNTERSIGN_URL": "https://a:1"}, url="https://b:2", timeout=5) as flags_win:
        assert flags_win.url == "https://b:2"
        assert flags_win.timeout == 5
    with pytest.raises(ValueError, match="COUNTERSIGN_CERT and COUNTERSIGN_KEY must be given together"):
        Client.from_env({"COUNTERSIGN_URL": "https://a:1", "COUNTERSIGN_CERT": "c.pem"})
    missing = tmp_path / "ca.pem"
    with pytest.raises(ValueError, match=f"cannot read the COUNTERSIGN_CA file {missing}"):
        Client.from_env({"COUNTERSIGN_URL": "https://a:1", "COUNTERSIGN_CA": str(missing)})
