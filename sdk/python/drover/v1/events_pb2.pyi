from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class WatchRequest(_message.Message):
    __slots__ = ("after", "task", "queue", "states", "types", "workflow", "namespace")
    AFTER_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    TYPES_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    after: int
    task: str
    queue: str
    states: _containers.RepeatedScalarFieldContainer[str]
    types: _containers.RepeatedScalarFieldContainer[str]
    workflow: str
    namespace: str
    def __init__(self, after: _Optional[int] = ..., task: _Optional[str] = ..., queue: _Optional[str] = ..., states: _Optional[_Iterable[str]] = ..., types: _Optional[_Iterable[str]] = ..., workflow: _Optional[str] = ..., namespace: _Optional[str] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("seq", "type", "at", "at_us", "name", "state", "task_id", "queue", "attempt", "worker", "reason", "workflow", "schedule", "namespace", "result_bytes")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    AT_US_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    RESULT_BYTES_FIELD_NUMBER: _ClassVar[int]
    seq: int
    type: str
    at: str
    at_us: int
    name: str
    state: str
    task_id: str
    queue: str
    attempt: int
    worker: str
    reason: str
    workflow: str
    schedule: str
    namespace: str
    result_bytes: int
    def __init__(self, seq: _Optional[int] = ..., type: _Optional[str] = ..., at: _Optional[str] = ..., at_us: _Optional[int] = ..., name: _Optional[str] = ..., state: _Optional[str] = ..., task_id: _Optional[str] = ..., queue: _Optional[str] = ..., attempt: _Optional[int] = ..., worker: _Optional[str] = ..., reason: _Optional[str] = ..., workflow: _Optional[str] = ..., schedule: _Optional[str] = ..., namespace: _Optional[str] = ..., result_bytes: _Optional[int] = ...) -> None: ...
