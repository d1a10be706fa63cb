from countersign.v1 import approval_pb2 as _approval_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AdminServiceCancelApprovalRequest(_message.Message):
    __slots__ = ["admin", "id", "reason"]
    ADMIN_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    admin: str
    id: str
    reason: str
    def __init__(self, id: _Optional[str] = ..., reason: _Optional[str] = ..., admin: _Optional[str] = ...) -> None: ...

class AdminServiceCancelApprovalResponse(_message.Message):
    __slots__ = ["approval"]
    APPROVAL_FIELD_NUMBER: _ClassVar[int]
    approval: _approval_pb2.Approval
    def __init__(self, approval: _Optional[_Union[_approval_pb2.Approval, _Mapping]] = ...) -> None: ...

class AdminServiceGetApprovalRequest(_message.Message):
    __slots__ = ["id"]
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class AdminServiceGetApprovalResponse(_message.Message):
    __slots__ = ["approval"]
    APPROVAL_FIELD_NUMBER: _ClassVar[int]
    approval: _approval_pb2.Approval
    def __init__(self, approval: _Optional[_Union[_approval_pb2.Approval, _Mapping]] = ...) -> None: ...

class GetPoliciesRequest(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class GetPoliciesResponse(_message.Message):
    __slots__ = ["disagreement", "document", "generation", "load_time", "replicas", "replicas_disagree", "sha256", "source"]
    DISAGREEMENT_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    LOAD_TIME_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_DISAGREE_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    disagreement: str
    document: _struct_pb2.Struct
    generation: int
    load_time: _timestamp_pb2.Timestamp
    replicas: _containers.RepeatedCompositeFieldContainer[ReplicaPolicies]
    replicas_disagree: bool
    sha256: str
    source: str
    def __init__(self, sha256: _Optional[str] = ..., document: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., source: _Optional[str] = ..., load_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., generation: _Optional[int] = ..., replicas: _Optional[_Iterable[_Union[ReplicaPolicies, _Mapping]]] = ..., replicas_disagree: bool = ..., disagreement: _Optional[str] = ...) -> None: ...

class GetStatsRequest(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class GetStatsResponse(_message.Message):
    __slots__ = ["counts", "oldest_pending_age", "oldest_pending_id"]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    OLDEST_PENDING_AGE_FIELD_NUMBER: _ClassVar[int]
    OLDEST_PENDING_ID_FIELD_NUMBER: _ClassVar[int]
    counts: _containers.RepeatedCompositeFieldContainer[StateCount]
    oldest_pending_age: _duration_pb2.Duration
    oldest_pending_id: str
    def __init__(self, counts: _Optional[_Iterable[_Union[StateCount, _Mapping]]] = ..., oldest_pending_age: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., oldest_pending_id: _Optional[str] = ...) -> None: ...

class ListApprovalsRequest(_message.Message):
    __slots__ = ["action", "create_time_after", "create_time_before", "page_size", "page_token", "requester", "state"]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_AFTER_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_BEFORE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    REQUESTER_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    action: str
    create_time_after: _timestamp_pb2.Timestamp
    create_time_before: _timestamp_pb2.Timestamp
    page_size: int
    page_token: str
    requester: str
    state: _approval_pb2.State
    def __init__(self, state: _Optional[_Union[_approval_pb2.State, str]] = ..., action: _Optional[str] = ..., requester: _Optional[str] = ..., create_time_after: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., create_time_before: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListApprovalsResponse(_message.Message):
    __slots__ = ["approvals", "next_page_token"]
    APPROVALS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    approvals: _containers.RepeatedCompositeFieldContainer[_approval_pb2.Approval]
    next_page_token: str
    def __init__(self, approvals: _Optional[_Iterable[_Union[_approval_pb2.Approval, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class PolicyProblem(_message.Message):
    __slots__ = ["message", "path"]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    message: str
    path: str
    def __init__(self, path: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class ReloadPoliciesRequest(_message.Message):
    __slots__ = ["dry_run"]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    dry_run: bool
    def __init__(self, dry_run: bool = ...) -> None: ...

class ReloadPoliciesResponse(_message.Message):
    __slots__ = ["applied", "candidate_sha256", "policy_count", "sha256"]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_SHA256_FIELD_NUMBER: _ClassVar[int]
    POLICY_COUNT_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    applied: bool
    candidate_sha256: str
    policy_count: int
    sha256: str
    def __init__(self, applied: bool = ..., sha256: _Optional[str] = ..., candidate_sha256: _Optional[str] = ..., policy_count: _Optional[int] = ...) -> None: ...

class ReplicaPolicies(_message.Message):
    __slots__ = ["error", "generation", "replica", "report_time", "sha256", "stale"]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    REPORT_TIME_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    STALE_FIELD_NUMBER: _ClassVar[int]
    error: str
    generation: int
    replica: str
    report_time: _timestamp_pb2.Timestamp
    sha256: str
    stale: bool
    def __init__(self, replica: _Optional[str] = ..., sha256: _Optional[str] = ..., generation: _Optional[int] = ..., report_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., stale: bool = ..., error: _Optional[str] = ...) -> None: ...

class ResolveApprovalRequest(_message.Message):
    __slots__ = ["admin", "decision", "id", "reason"]
    ADMIN_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    admin: str
    decision: _approval_pb2.Decision
    id: str
    reason: str
    def __init__(self, id: _Optional[str] = ..., decision: _Optional[_Union[_approval_pb2.Decision, str]] = ..., reason: _Optional[str] = ..., admin: _Optional[str] = ...) -> None: ...

class ResolveApprovalResponse(_message.Message):
    __slots__ = ["approval"]
    APPROVAL_FIELD_NUMBER: _ClassVar[int]
    approval: _approval_pb2.Approval
    def __init__(self, approval: _Optional[_Union[_approval_pb2.Approval, _Mapping]] = ...) -> None: ...

class StateCount(_message.Message):
    __slots__ = ["count", "state"]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    count: int
    state: _approval_pb2.State
    def __init__(self, state: _Optional[_Union[_approval_pb2.State, str]] = ..., count: _Optional[int] = ...) -> None: ...

class ValidatePoliciesRequest(_message.Message):
    __slots__ = ["content"]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    content: str
    def __init__(self, content: _Optional[str] = ...) -> None: ...

class ValidatePoliciesResponse(_message.Message):
    __slots__ = ["policy_count", "problems", "sha256", "valid"]
    POLICY_COUNT_FIELD_NUMBER: _ClassVar[int]
    PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    VALID_FIELD_NUMBER: _ClassVar[int]
    policy_count: int
    problems: _containers.RepeatedCompositeFieldContainer[PolicyProblem]
    sha256: str
    valid: bool
    def __init__(self, valid: bool = ..., problems: _Optional[_Iterable[_Union[PolicyProblem, _Mapping]]] = ..., sha256: _Optional[str] = ..., policy_count: _Optional[int] = ...) -> None: ...
