from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Outcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTCOME_UNSPECIFIED: _ClassVar[Outcome]
    PASS: _ClassVar[Outcome]
    FAIL: _ClassVar[Outcome]
    SKIP: _ClassVar[Outcome]
    INFO: _ClassVar[Outcome]
OUTCOME_UNSPECIFIED: Outcome
PASS: Outcome
FAIL: Outcome
SKIP: Outcome
INFO: Outcome

class ExplainRequest(_message.Message):
    __slots__ = ("method", "host", "path", "headers", "source_ip")
    class HeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    METHOD_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_IP_FIELD_NUMBER: _ClassVar[int]
    method: str
    host: str
    path: str
    headers: _containers.ScalarMap[str, str]
    source_ip: str
    def __init__(self, method: _Optional[str] = ..., host: _Optional[str] = ..., path: _Optional[str] = ..., headers: _Optional[_Mapping[str, str]] = ..., source_ip: _Optional[str] = ...) -> None: ...

class Step(_message.Message):
    __slots__ = ("name", "outcome", "detail")
    NAME_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    name: str
    outcome: Outcome
    detail: str
    def __init__(self, name: _Optional[str] = ..., outcome: _Optional[_Union[Outcome, str]] = ..., detail: _Optional[str] = ...) -> None: ...

class Header(_message.Message):
    __slots__ = ("name", "value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: str
    def __init__(self, name: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class ExplainResponse(_message.Message):
    __slots__ = ("allowed", "reason", "http_status", "description", "policy", "rule", "steps", "set_headers", "remove_headers", "response_headers", "dry_run", "subject", "snapshot_serial")
    ALLOWED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    HTTP_STATUS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    SET_HEADERS_FIELD_NUMBER: _ClassVar[int]
    REMOVE_HEADERS_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_HEADERS_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_SERIAL_FIELD_NUMBER: _ClassVar[int]
    allowed: bool
    reason: str
    http_status: int
    description: str
    policy: str
    rule: str
    steps: _containers.RepeatedCompositeFieldContainer[Step]
    set_headers: _containers.RepeatedCompositeFieldContainer[Header]
    remove_headers: _containers.RepeatedScalarFieldContainer[str]
    response_headers: _containers.RepeatedCompositeFieldContainer[Header]
    dry_run: bool
    subject: str
    snapshot_serial: int
    def __init__(self, allowed: _Optional[bool] = ..., reason: _Optional[str] = ..., http_status: _Optional[int] = ..., description: _Optional[str] = ..., policy: _Optional[str] = ..., rule: _Optional[str] = ..., steps: _Optional[_Iterable[_Union[Step, _Mapping]]] = ..., set_headers: _Optional[_Iterable[_Union[Header, _Mapping]]] = ..., remove_headers: _Optional[_Iterable[str]] = ..., response_headers: _Optional[_Iterable[_Union[Header, _Mapping]]] = ..., dry_run: _Optional[bool] = ..., subject: _Optional[str] = ..., snapshot_serial: _Optional[int] = ...) -> None: ...

class ListPoliciesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PolicyStatus(_message.Message):
    __slots__ = ("name", "source", "state", "message", "serving", "generation", "hosts", "mode")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SERVING_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    HOSTS_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    name: str
    source: str
    state: str
    message: str
    serving: bool
    generation: int
    hosts: _containers.RepeatedScalarFieldContainer[str]
    mode: str
    def __init__(self, name: _Optional[str] = ..., source: _Optional[str] = ..., state: _Optional[str] = ..., message: _Optional[str] = ..., serving: _Optional[bool] = ..., generation: _Optional[int] = ..., hosts: _Optional[_Iterable[str]] = ..., mode: _Optional[str] = ...) -> None: ...

class ListPoliciesResponse(_message.Message):
    __slots__ = ("policies", "snapshot_serial")
    POLICIES_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_SERIAL_FIELD_NUMBER: _ClassVar[int]
    policies: _containers.RepeatedCompositeFieldContainer[PolicyStatus]
    snapshot_serial: int
    def __init__(self, policies: _Optional[_Iterable[_Union[PolicyStatus, _Mapping]]] = ..., snapshot_serial: _Optional[int] = ...) -> None: ...

class RevokeRequest(_message.Message):
    __slots__ = ("jti", "subject", "issuer", "until")
    JTI_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    ISSUER_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    jti: str
    subject: str
    issuer: str
    until: float
    def __init__(self, jti: _Optional[str] = ..., subject: _Optional[str] = ..., issuer: _Optional[str] = ..., until: _Optional[float] = ...) -> None: ...

class Revocation(_message.Message):
    __slots__ = ("kind", "value", "issuer", "revoked_at", "until")
    KIND_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    ISSUER_FIELD_NUMBER: _ClassVar[int]
    REVOKED_AT_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    kind: str
    value: str
    issuer: str
    revoked_at: float
    until: float
    def __init__(self, kind: _Optional[str] = ..., value: _Optional[str] = ..., issuer: _Optional[str] = ..., revoked_at: _Optional[float] = ..., until: _Optional[float] = ...) -> None: ...

class RevokeResponse(_message.Message):
    __slots__ = ("revocation", "shared")
    REVOCATION_FIELD_NUMBER: _ClassVar[int]
    SHARED_FIELD_NUMBER: _ClassVar[int]
    revocation: Revocation
    shared: bool
    def __init__(self, revocation: _Optional[_Union[Revocation, _Mapping]] = ..., shared: _Optional[bool] = ...) -> None: ...

class ListRevocationsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListRevocationsResponse(_message.Message):
    __slots__ = ("revocations", "shared")
    REVOCATIONS_FIELD_NUMBER: _ClassVar[int]
    SHARED_FIELD_NUMBER: _ClassVar[int]
    revocations: _containers.RepeatedCompositeFieldContainer[Revocation]
    shared: bool
    def __init__(self, revocations: _Optional[_Iterable[_Union[Revocation, _Mapping]]] = ..., shared: _Optional[bool] = ...) -> None: ...

class ListBlocksRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class BlockInfo(_message.Message):
    __slots__ = ("key", "policy", "protection", "value", "until_unix_ms", "seconds_left")
    KEY_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    PROTECTION_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    SECONDS_LEFT_FIELD_NUMBER: _ClassVar[int]
    key: str
    policy: str
    protection: str
    value: str
    until_unix_ms: int
    seconds_left: int
    def __init__(self, key: _Optional[str] = ..., policy: _Optional[str] = ..., protection: _Optional[str] = ..., value: _Optional[str] = ..., until_unix_ms: _Optional[int] = ..., seconds_left: _Optional[int] = ...) -> None: ...

class ListBlocksResponse(_message.Message):
    __slots__ = ("blocks",)
    BLOCKS_FIELD_NUMBER: _ClassVar[int]
    blocks: _containers.RepeatedCompositeFieldContainer[BlockInfo]
    def __init__(self, blocks: _Optional[_Iterable[_Union[BlockInfo, _Mapping]]] = ...) -> None: ...

class ClearBlocksRequest(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: str
    def __init__(self, key: _Optional[str] = ...) -> None: ...

class ClearBlocksResponse(_message.Message):
    __slots__ = ("cleared",)
    CLEARED_FIELD_NUMBER: _ClassVar[int]
    cleared: int
    def __init__(self, cleared: _Optional[int] = ...) -> None: ...
