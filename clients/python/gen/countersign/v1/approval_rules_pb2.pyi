from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor
REDACTION_MODE_ALL: RedactionMode
REDACTION_MODE_ALLOWLIST: RedactionMode
REDACTION_MODE_DENYLIST: RedactionMode
REDACTION_MODE_NONE: RedactionMode
REDACTION_MODE_UNSPECIFIED: RedactionMode

class ApprovalRules(_message.Message):
    __slots__ = ["approvers", "channel", "deny_reason_required", "deny_threshold", "dm", "escalation", "overrides", "policy_name", "redaction", "reminders", "required_approvals", "rerequest", "stages", "super_approvers", "timeout"]
    APPROVERS_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    DENY_REASON_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    DENY_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    DM_FIELD_NUMBER: _ClassVar[int]
    ESCALATION_FIELD_NUMBER: _ClassVar[int]
    OVERRIDES_FIELD_NUMBER: _ClassVar[int]
    POLICY_NAME_FIELD_NUMBER: _ClassVar[int]
    REDACTION_FIELD_NUMBER: _ClassVar[int]
    REMINDERS_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_APPROVALS_FIELD_NUMBER: _ClassVar[int]
    REREQUEST_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    SUPER_APPROVERS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    approvers: People
    channel: str
    deny_reason_required: bool
    deny_threshold: int
    dm: bool
    escalation: EscalationRule
    overrides: OverrideRules
    policy_name: str
    redaction: RedactionRule
    reminders: _containers.RepeatedCompositeFieldContainer[_duration_pb2.Duration]
    required_approvals: int
    rerequest: RerequestRules
    stages: _containers.RepeatedCompositeFieldContainer[CoSignStageRule]
    super_approvers: _containers.RepeatedScalarFieldContainer[str]
    timeout: _duration_pb2.Duration
    def __init__(self, policy_name: _Optional[str] = ..., channel: _Optional[str] = ..., dm: bool = ..., approvers: _Optional[_Union[People, _Mapping]] = ..., super_approvers: _Optional[_Iterable[str]] = ..., required_approvals: _Optional[int] = ..., deny_threshold: _Optional[int] = ..., deny_reason_required: bool = ..., stages: _Optional[_Iterable[_Union[CoSignStageRule, _Mapping]]] = ..., timeout: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., reminders: _Optional[_Iterable[_Union[_duration_pb2.Duration, _Mapping]]] = ..., escalation: _Optional[_Union[EscalationRule, _Mapping]] = ..., redaction: _Optional[_Union[RedactionRule, _Mapping]] = ..., overrides: _Optional[_Union[OverrideRules, _Mapping]] = ..., rerequest: _Optional[_Union[RerequestRules, _Mapping]] = ...) -> None: ...

class CoSignStageRule(_message.Message):
    __slots__ = ["members", "name", "required"]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_FIELD_NUMBER: _ClassVar[int]
    members: People
    name: str
    required: int
    def __init__(self, name: _Optional[str] = ..., members: _Optional[_Union[People, _Mapping]] = ..., required: _Optional[int] = ...) -> None: ...

class EscalationRule(_message.Message):
    __slots__ = ["after", "channel", "users"]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    USERS_FIELD_NUMBER: _ClassVar[int]
    after: _duration_pb2.Duration
    channel: str
    users: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, after: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., channel: _Optional[str] = ..., users: _Optional[_Iterable[str]] = ...) -> None: ...

class OverrideRules(_message.Message):
    __slots__ = ["keys", "max_diff_bytes", "max_keys", "request_keys", "schema"]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    MAX_DIFF_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_KEYS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_KEYS_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedScalarFieldContainer[str]
    max_diff_bytes: int
    max_keys: int
    request_keys: _containers.RepeatedScalarFieldContainer[str]
    schema: _struct_pb2.Struct
    def __init__(self, keys: _Optional[_Iterable[str]] = ..., max_keys: _Optional[int] = ..., max_diff_bytes: _Optional[int] = ..., schema: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., request_keys: _Optional[_Iterable[str]] = ...) -> None: ...

class People(_message.Message):
    __slots__ = ["groups", "users"]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    USERS_FIELD_NUMBER: _ClassVar[int]
    groups: _containers.RepeatedScalarFieldContainer[str]
    users: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, users: _Optional[_Iterable[str]] = ..., groups: _Optional[_Iterable[str]] = ...) -> None: ...

class RedactionRule(_message.Message):
    __slots__ = ["keys", "mode"]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedScalarFieldContainer[str]
    mode: RedactionMode
    def __init__(self, mode: _Optional[_Union[RedactionMode, str]] = ..., keys: _Optional[_Iterable[str]] = ...) -> None: ...

class RerequestRules(_message.Message):
    __slots__ = ["allowed", "cooldown", "max_per_day"]
    ALLOWED_FIELD_NUMBER: _ClassVar[int]
    COOLDOWN_FIELD_NUMBER: _ClassVar[int]
    MAX_PER_DAY_FIELD_NUMBER: _ClassVar[int]
    allowed: bool
    cooldown: _duration_pb2.Duration
    max_per_day: int
    def __init__(self, allowed: bool = ..., cooldown: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., max_per_day: _Optional[int] = ...) -> None: ...

class RedactionMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
