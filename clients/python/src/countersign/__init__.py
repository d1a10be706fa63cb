"""Countersign for Python: ask humans for approval before doing something risky, and get the decision
pushed back over a gRPC stream.

.. code-block:: python

    from countersign import ApprovalDenied, Client

    with Client.from_env() as countersign:  # COUNTERSIGN_URL, COUNTERSIGN_CA/CERT/KEY, like the CLI
        try:
            approval = countersign.require_approval(
                "deploy.production",
                "Deploy api v42",
                params={"service": "api", "version": "v42"},
                on_requested=lambda r: print(f"waiting for approval {r.id}"),
            )
        except ApprovalDenied as denied:
            raise SystemExit(f"denied by {denied.approver}: {denied.reason}")
        print("approved by", approval.decided_by, "- deploying exactly", dict(approval.params))

The generated Protobuf and gRPC modules of the API are ``countersign.v1.*_pb2`` and
``countersign.v1.*_pb2_grpc``.
"""

# The generated package countersign.v1 may live in another directory of sys.path (clients/python/gen in
# the repository), so this package spans every `countersign` directory on the path.
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)

from countersign.backoff import ReconnectPolicy, backoff_delay  # noqa: E402
from countersign.client import (  # noqa: E402
    Client,
    Pem,
    ReconnectEvent,
    RequestedApproval,
    ServiceClient,
    is_final_state,
)
from countersign.errors import (  # noqa: E402
    AlreadyExistsError,
    ApprovalCancelled,
    ApprovalDenied,
    ApprovalExpired,
    ApprovalNotApproved,
    CallCancelledError,
    CountersignError,
    DeadlineExceededError,
    FailedPreconditionError,
    FieldViolation,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    RpcError,
    TlsError,
    UnauthenticatedError,
    UnavailableError,
    not_approved_error,
    to_countersign_error,
)
from countersign.v1.approval_pb2 import Approval, Decision, State  # noqa: E402

__all__ = [
    "AlreadyExistsError",
    "Approval",
    "ApprovalCancelled",
    "ApprovalDenied",
    "ApprovalExpired",
    "ApprovalNotApproved",
    "CallCancelledError",
    "Client",
    "CountersignError",
    "DeadlineExceededError",
    "Decision",
    "FailedPreconditionError",
    "FieldViolation",
    "InvalidArgumentError",
    "NotFoundError",
    "Pem",
    "PermissionDeniedError",
    "ReconnectEvent",
    "ReconnectPolicy",
    "RequestedApproval",
    "ResourceExhaustedError",
    "RpcError",
    "ServiceClient",
    "State",
    "TlsError",
    "UnauthenticatedError",
    "UnavailableError",
    "backoff_delay",
    "is_final_state",
    "not_approved_error",
    "to_countersign_error",
]
