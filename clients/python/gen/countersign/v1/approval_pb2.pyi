from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DECISION_ACKNOWLEDGE: Decision
DECISION_APPROVE: Decision
DECISION_DENY: Decision
DECISION_UNSPECIFIED: Decision
DESCRIPTOR: _descriptor.FileDescriptor
STATE_APPROVED: State
STATE_CANCELLED: State
STATE_DENIED: State
STATE_EXPIRED: State
STATE_PENDING: State
STATE_UNSPECIFIED: State

class Approval(_message.Message):
    __slots__ = ["action", "admin_override", "create_time", "decide_time", "decided_by", "deny_threshold", "edits", "expire_time", "id", "justification", "lineage_id", "on_behalf_of", "origin", "overrides", "params", "params_sha256", "policy_name", "policy_sha256", "reason", "requester", "required_approvals", "rerequest_of", "stages", "state", "title", "version", "votes"]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    ADMIN_OVERRIDE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    DECIDED_BY_FIELD_NUMBER: _ClassVar[int]
    DECIDE_TIME_FIELD_NUMBER: _ClassVar[int]
    DENY_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    EDITS_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    JUSTIFICATION_FIELD_NUMBER: _ClassVar[int]
    LINEAGE_ID_FIELD_NUMBER: _ClassVar[int]
    ON_BEHALF_OF_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    OVERRIDES_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    PARAMS_SHA256_FIELD_NUMBER: _ClassVar[int]
    POLICY_NAME_FIELD_NUMBER: _ClassVar[int]
    POLICY_SHA256_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REQUESTER_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_APPROVALS_FIELD_NUMBER: _ClassVar[int]
    REREQUEST_OF_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    VOTES_FIELD_NUMBER: _ClassVar[int]
    action: str
    admin_override: bool
    create_time: _timestamp_pb2.Timestamp
    decide_time: _timestamp_pb2.Timestamp
    decided_by: str
    deny_threshold: int
    edits: _containers.RepeatedCompositeFieldContainer[ParamsEdit]
    expire_time: _timestamp_pb2.Timestamp
    id: str
    justification: str
    lineage_id: str
    on_behalf_of: str
    origin: Origin
    overrides: PolicyOverrides
    params: _struct_pb2.Struct
    params_sha256: str
    policy_name: str
    policy_sha256: str
    reason: str
    requester: str
    required_approvals: int
    rerequest_of: str
    stages: _containers.RepeatedCompositeFieldContainer[StageProgress]
    state: State
    title: str
    version: int
    votes: _containers.RepeatedCompositeFieldContainer[Vote]
    def __init__(self, id: _Optional[str] = ..., action: _Optional[str] = ..., title: _Optional[str] = ..., justification: _Optional[str] = ..., params: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., params_sha256: _Optional[str] = ..., requester: _Optional[str] = ..., on_behalf_of: _Optional[str] = ..., origin: _Optional[_Union[Origin, _Mapping]] = ..., policy_name: _Optional[str] = ..., policy_sha256: _Optional[str] = ..., state: _Optional[_Union[State, str]] = ..., votes: _Optional[_Iterable[_Union[Vote, _Mapping]]] = ..., required_approvals: _Optional[int] = ..., deny_threshold: _Optional[int] = ..., stages: _Optional[_Iterable[_Union[StageProgress, _Mapping]]] = ..., create_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., expire_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., decide_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., decided_by: _Optional[str] = ..., reason: _Optional[str] = ..., lineage_id: _Optional[str] = ..., rerequest_of: _Optional[str] = ..., edits: _Optional[_Iterable[_Union[ParamsEdit, _Mapping]]] = ..., admin_override: bool = ..., overrides: _Optional[_Union[PolicyOverrides, _Mapping]] = ..., version: _Optional[int] = ...) -> None: ...

class Link(_message.Message):
    __slots__ = ["label", "url"]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    label: str
    url: str
    def __init__(self, label: _Optional[str] = ..., url: _Optional[str] = ...) -> None: ...

class Origin(_message.Message):
    __slots__ = ["branch", "links", "pull_request", "repo", "run_id"]
    BRANCH_FIELD_NUMBER: _ClassVar[int]
    LINKS_FIELD_NUMBER: _ClassVar[int]
    PULL_REQUEST_FIELD_NUMBER: _ClassVar[int]
    REPO_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    branch: str
    links: _containers.RepeatedCompositeFieldContainer[Link]
    pull_request: str
    repo: str
    run_id: str
    def __init__(self, repo: _Optional[str] = ..., branch: _Optional[str] = ..., pull_request: _Optional[str] = ..., run_id: _Optional[str] = ..., links: _Optional[_Iterable[_Union[Link, _Mapping]]] = ...) -> None: ...

class ParamChange(_message.Message):
    __slots__ = ["after", "before", "key"]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    after: _struct_pb2.Value
    before: _struct_pb2.Value
    key: str
    def __init__(self, key: _Optional[str] = ..., before: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., after: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...

class ParamsEdit(_message.Message):
    __slots__ = ["changes", "editor", "params_sha256_after", "params_sha256_before", "time"]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    EDITOR_FIELD_NUMBER: _ClassVar[int]
    PARAMS_SHA256_AFTER_FIELD_NUMBER: _ClassVar[int]
    PARAMS_SHA256_BEFORE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    changes: _containers.RepeatedCompositeFieldContainer[ParamChange]
    editor: str
    params_sha256_after: str
    params_sha256_before: str
    time: _timestamp_pb2.Timestamp
    def __init__(self, editor: _Optional[str] = ..., time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., changes: _Optional[_Iterable[_Union[ParamChange, _Mapping]]] = ..., params_sha256_before: _Optional[str] = ..., params_sha256_after: _Optional[str] = ...) -> None: ...

class PolicyOverrides(_message.Message):
    __slots__ = ["channel", "timeout"]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    channel: str
    timeout: _duration_pb2.Duration
    def __init__(self, timeout: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., channel: _Optional[str] = ...) -> None: ...

class StageProgress(_message.Message):
    __slots__ = ["acknowledged_by", "complete", "name", "required"]
    ACKNOWLEDGED_BY_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_FIELD_NUMBER: _ClassVar[int]
    acknowledged_by: _containers.RepeatedScalarFieldContainer[str]
    complete: bool
    name: str
    required: int
    def __init__(self, name: _Optional[str] = ..., required: _Optional[int] = ..., acknowledged_by: _Optional[_Iterable[str]] = ..., complete: bool = ...) -> None: ...

class Vote(_message.Message):
    __slots__ = ["approver", "decision", "reason", "stage", "submitted_by", "time"]
    APPROVER_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_BY_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    approver: str
    decision: Decision
    reason: str
    stage: str
    submitted_by: str
    time: _timestamp_pb2.Timestamp
    def __init__(self, approver: _Optional[str] = ..., decision: _Optional[_Union[Decision, str]] = ..., reason: _Optional[str] = ..., time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., stage: _Optional[str] = ..., submitted_by: _Optional[str] = ...) -> None: ...

class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class Decision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
