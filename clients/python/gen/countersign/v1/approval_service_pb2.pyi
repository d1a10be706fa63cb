from countersign.v1 import approval_pb2 as _approval_pb2
from countersign.v1 import approval_rules_pb2 as _approval_rules_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CancelApprovalRequest(_message.Message):
    __slots__ = ["id", "reason"]
    ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    id: str
    reason: str
    def __init__(self, id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class CancelApprovalResponse(_message.Message):
    __slots__ = ["approval"]
    APPROVAL_FIELD_NUMBER: _ClassVar[int]
    approval: _approval_pb2.Approval
    def __init__(self, approval: _Optional[_Union[_approval_pb2.Approval, _Mapping]] = ...) -> None: ...

class CreateApprovalRequest(_message.Message):
    __slots__ = ["action", "idempotency_key", "justification", "on_behalf_of", "origin", "overrides", "params", "rerequest_of", "title"]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    JUSTIFICATION_FIELD_NUMBER: _ClassVar[int]
    ON_BEHALF_OF_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    OVERRIDES_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    REREQUEST_OF_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    action: str
    idempotency_key: str
    justification: str
    on_behalf_of: str
    origin: _approval_pb2.Origin
    overrides: _approval_pb2.PolicyOverrides
    params: _struct_pb2.Struct
    rerequest_of: str
    title: str
    def __init__(self, action: _Optional[str] = ..., title: _Optional[str] = ..., justification: _Optional[str] = ..., params: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., idempotency_key: _Optional[str] = ..., on_behalf_of: _Optional[str] = ..., origin: _Optional[_Union[_approval_pb2.Origin, _Mapping]] = ..., overrides: _Optional[_Union[_approval_pb2.PolicyOverrides, _Mapping]] = ..., rerequest_of: _Optional[str] = ...) -> None: ...

class CreateApprovalResponse(_message.Message):
    __slots__ = ["approval", "created"]
    APPROVAL_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    approval: _approval_pb2.Approval
    created: bool
    def __init__(self, approval: _Optional[_Union[_approval_pb2.Approval, _Mapping]] = ..., created: bool = ...) -> None: ...

class GetApprovalRequest(_message.Message):
    __slots__ = ["id"]
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetApprovalResponse(_message.Message):
    __slots__ = ["approval"]
    APPROVAL_FIELD_NUMBER: _ClassVar[int]
    approval: _approval_pb2.Approval
    def __init__(self, approval: _Optional[_Union[_approval_pb2.Approval, _Mapping]] = ...) -> None: ...

class RerequestApprovalRequest(_message.Message):
    __slots__ = ["id", "interaction_id", "requested_by"]
    ID_FIELD_NUMBER: _ClassVar[int]
    INTERACTION_ID_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_BY_FIELD_NUMBER: _ClassVar[int]
    id: str
    interaction_id: str
    requested_by: str
    def __init__(self, id: _Optional[str] = ..., requested_by: _Optional[str] = ..., interaction_id: _Optional[str] = ...) -> None: ...

class RerequestApprovalResponse(_message.Message):
    __slots__ = ["approval", "created"]
    APPROVAL_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    approval: _approval_pb2.Approval
    created: bool
    def __init__(self, approval: _Optional[_Union[_approval_pb2.Approval, _Mapping]] = ..., created: bool = ...) -> None: ...

class SubmitDecisionRequest(_message.Message):
    __slots__ = ["approver", "approver_aliases", "approver_groups", "decision", "edited_params", "id", "interaction_id", "reason"]
    APPROVER_ALIASES_FIELD_NUMBER: _ClassVar[int]
    APPROVER_FIELD_NUMBER: _ClassVar[int]
    APPROVER_GROUPS_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    EDITED_PARAMS_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    INTERACTION_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    approver: str
    approver_aliases: _containers.RepeatedScalarFieldContainer[str]
    approver_groups: _containers.RepeatedScalarFieldContainer[str]
    decision: _approval_pb2.Decision
    edited_params: _struct_pb2.Struct
    id: str
    interaction_id: str
    reason: str
    def __init__(self, id: _Optional[str] = ..., approver: _Optional[str] = ..., approver_groups: _Optional[_Iterable[str]] = ..., decision: _Optional[_Union[_approval_pb2.Decision, str]] = ..., reason: _Optional[str] = ..., interaction_id: _Optional[str] = ..., edited_params: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., approver_aliases: _Optional[_Iterable[str]] = ...) -> None: ...

class SubmitDecisionResponse(_message.Message):
    __slots__ = ["approval", "recorded"]
    APPROVAL_FIELD_NUMBER: _ClassVar[int]
    RECORDED_FIELD_NUMBER: _ClassVar[int]
    approval: _approval_pb2.Approval
    recorded: bool
    def __init__(self, approval: _Optional[_Union[_approval_pb2.Approval, _Mapping]] = ..., recorded: bool = ...) -> None: ...

class WatchApprovalRequest(_message.Message):
    __slots__ = ["id"]
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class WatchApprovalResponse(_message.Message):
    __slots__ = ["approval", "heartbeat"]
    APPROVAL_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    approval: _approval_pb2.Approval
    heartbeat: bool
    def __init__(self, approval: _Optional[_Union[_approval_pb2.Approval, _Mapping]] = ..., heartbeat: bool = ...) -> None: ...

class WatchApprovalsRequest(_message.Message):
    __slots__ = ["ids"]
    IDS_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, ids: _Optional[_Iterable[str]] = ...) -> None: ...

class WatchApprovalsResponse(_message.Message):
    __slots__ = ["approval", "heartbeat", "rules", "snapshot_complete"]
    APPROVAL_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_COMPLETE_FIELD_NUMBER: _ClassVar[int]
    approval: _approval_pb2.Approval
    heartbeat: bool
    rules: _approval_rules_pb2.ApprovalRules
    snapshot_complete: bool
    def __init__(self, approval: _Optional[_Union[_approval_pb2.Approval, _Mapping]] = ..., rules: _Optional[_Union[_approval_rules_pb2.ApprovalRules, _Mapping]] = ..., heartbeat: bool = ..., snapshot_complete: bool = ...) -> None: ...
