"""The engine service's wire protocol: newline-delimited JSON, one message a line.

Every message is a pydantic model defined here (the server and every client import
these), and the payloads are the engine's own models: requests carry `JobOptions`,
replies carry `QueueEntry`, `FlagView`, `EngineSnapshot`, events are the `Event` union.

    client -> server   {"type":"hello","protocol":"1.1","name":"drapto-tui","pid":42}
    server -> client   {"type":"hello","protocol":"1.1","name":"drapto 0.2.0","pid":7}
    client -> server   {"id":1,"method":"set_flag","params":{"name":"crop_detection","state":"off"}}
    server -> client   {"type":"reply","id":1,"result":{...FlagView...}}
    server -> client   {"type":"error","id":1,"error":"unknown flag 'x' (flags are ...)"}
    server -> client   {"type":"event","event":{"type":"flag","at":1715000000.1,...}}

A client of another major version gets an error with id null and the connection is
closed. Paths travel absolute (the engine's working folder is not the client's): an
empty or relative path is refused with an error reply, never resolved on the server. `subscribe` replies with the full snapshot; from then on every engine event
follows as an "event" message, in the order the engine emitted them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import PurePosixPath
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from drapto_engine.core.api import EngineSnapshot
from drapto_engine.core.events import Event
from drapto_engine.core.flags import FlagView
from drapto_engine.core.jobs import JobOptions, QueueEntry
from drapto_engine.core.text import model_json

PROTOCOL_VERSION = "1.1"
MAX_LINE = 1 << 20
"""Longest line a client may send (bytes, newline included); longer ones are refused."""
CLIENT_READ_LIMIT = 1 << 30
"""Longest line a client accepts: a snapshot of a large queue is several megabytes."""


def major(version: str) -> str:
    return version.partition(".")[0]


def compatible(version: str) -> bool:
    """Same major version: minor versions only add methods or fields."""
    return major(version) == major(PROTOCOL_VERSION)


class _Message(BaseModel):
    model_config = ConfigDict(defer_build=True, frozen=True, extra="forbid")


class Hello(_Message):
    """The first line each side sends."""

    type: Literal["hello"] = "hello"
    protocol: str = PROTOCOL_VERSION
    name: str
    """The client's name, or the server's "drapto <version>"."""
    pid: int | None = None


# -- requests: one model per EngineAPI method, plus subscribe and shutdown --


class NoParams(_Message):
    pass


def _absolute(path: str) -> str:
    """Paths travel absolute: the engine's working folder is not the client's."""
    if not path:
        raise ValueError("an empty path (paths must be absolute)")
    if not PurePosixPath(path).is_absolute():
        raise ValueError(f"{path!r} is relative (paths must be absolute)")
    return path


AbsolutePath = Annotated[str, AfterValidator(_absolute)]


class AddPathsParams(_Message):
    paths: list[AbsolutePath]
    options: JobOptions | None = None
    flags: dict[str, str] | None = None
    batch: str | None = None


class AddFileParams(_Message):
    input: AbsolutePath
    output: AbsolutePath
    options: JobOptions | None = None
    flags: dict[str, str] | None = None
    batch: str | None = None


class EntriesParams(_Message):
    entry_ids: list[int]


class EntryParams(_Message):
    entry_id: int


class MoveParams(_Message):
    entry_id: int
    index: int


class WorkersParams(_Message):
    workers: int


class FlagParams(_Message):
    name: str
    state: str


class BaseRequest(_Message):
    id: int
    returns: ClassVar[Any] = None
    """The Python type of the reply's result (None: the reply carries null)."""


class AddPaths(BaseRequest):
    method: Literal["add_paths"] = "add_paths"
    params: AddPathsParams
    returns: ClassVar[Any] = list[QueueEntry]


class AddFile(BaseRequest):
    method: Literal["add_file"] = "add_file"
    params: AddFileParams
    returns: ClassVar[Any] = QueueEntry


class Interrupt(BaseRequest):
    """Stop entries' encoders, keeping their work (see Engine.interrupt)."""

    method: Literal["interrupt"] = "interrupt"
    params: EntriesParams


class Remove(BaseRequest):
    method: Literal["remove"] = "remove"
    params: EntryParams


class ClearFinished(BaseRequest):
    method: Literal["clear_finished"] = "clear_finished"
    params: NoParams = NoParams()
    returns: ClassVar[Any] = int


class Move(BaseRequest):
    method: Literal["move"] = "move"
    params: MoveParams


class Pause(BaseRequest):
    method: Literal["pause"] = "pause"
    params: NoParams = NoParams()


class Resume(BaseRequest):
    method: Literal["resume"] = "resume"
    params: NoParams = NoParams()


class Retry(BaseRequest):
    method: Literal["retry"] = "retry"
    params: EntryParams
    returns: ClassVar[Any] = QueueEntry


class Cancel(BaseRequest):
    method: Literal["cancel"] = "cancel"
    params: EntryParams


class SetWorkers(BaseRequest):
    method: Literal["set_workers"] = "set_workers"
    params: WorkersParams


class SetFlag(BaseRequest):
    method: Literal["set_flag"] = "set_flag"
    params: FlagParams
    returns: ClassVar[Any] = FlagView


class GetFlags(BaseRequest):
    method: Literal["get_flags"] = "get_flags"
    params: NoParams = NoParams()
    returns: ClassVar[Any] = list[FlagView]


class GetConfig(BaseRequest):
    method: Literal["get_config"] = "get_config"
    params: NoParams = NoParams()
    returns: ClassVar[Any] = dict[str, Any]


class GetSnapshot(BaseRequest):
    method: Literal["get_snapshot"] = "get_snapshot"
    params: NoParams = NoParams()
    returns: ClassVar[Any] = EngineSnapshot


class Subscribe(BaseRequest):
    """Reply: the full snapshot; then every event, each its own "event" message."""

    method: Literal["subscribe"] = "subscribe"
    params: NoParams = NoParams()
    returns: ClassVar[Any] = EngineSnapshot


class Shutdown(BaseRequest):
    """Stop the engine (running jobs go back to the queue) and the server."""

    method: Literal["shutdown"] = "shutdown"
    params: NoParams = NoParams()


Request = Annotated[
    AddPaths
    | AddFile
    | Interrupt
    | Remove
    | ClearFinished
    | Move
    | Pause
    | Resume
    | Retry
    | Cancel
    | SetWorkers
    | SetFlag
    | GetFlags
    | GetConfig
    | GetSnapshot
    | Subscribe
    | Shutdown,
    Field(discriminator="method"),
]
REQUEST_ADAPTER: TypeAdapter[Request] = TypeAdapter(Request, config=ConfigDict(defer_build=True))
ENGINE_METHODS = frozenset(
    {
        "add_paths",
        "add_file",
        "interrupt",
        "remove",
        "clear_finished",
        "move",
        "pause",
        "resume",
        "retry",
        "cancel",
        "set_workers",
        "set_flag",
        "get_flags",
        "get_config",
        "get_snapshot",
    }
)
"""Requests the server answers by calling the engine's method of the same name."""


def request_params(request: BaseRequest) -> dict[str, Any]:
    """The params as keyword arguments, models kept as models (JobOptions stays one)."""
    params: BaseModel = getattr(request, "params")  # noqa: B009 - every request has params
    return {name: getattr(params, name) for name in type(params).model_fields}


# -- what the server sends --


class Reply(_Message):
    type: Literal["reply"] = "reply"
    id: int
    result: Any = None


class ErrorReply(_Message):
    type: Literal["error"] = "error"
    id: int | None = None
    """The failed request's id; null for errors about the connection (hello, bad lines)."""
    error: str


class EventMessage(_Message):
    type: Literal["event"] = "event"
    event: Event


ServerMessage = Annotated[Hello | Reply | ErrorReply | EventMessage, Field(discriminator="type")]
SERVER_ADAPTER: TypeAdapter[ServerMessage] = TypeAdapter(
    ServerMessage, config=ConfigDict(defer_build=True)
)


def encode(message: BaseModel) -> bytes:
    return model_json(message).encode() + b"\n"


@cache
def result_adapter(returns: Any) -> TypeAdapter[Any]:
    return TypeAdapter(returns)


def parse_result(request: type[BaseRequest], result: Any) -> Any:
    """A reply's result as the Python type the request returns."""
    if request.returns is None:
        return None
    return result_adapter(request.returns).validate_python(result)


def describe(exc: ValidationError) -> str:
    """A validation failure as one line: what was wrong where."""
    parts = []
    for error in exc.errors()[:3]:
        where = ".".join(str(p) for p in error["loc"])
        parts.append(f"{where}: {error['msg']}" if where else error["msg"])
    return "; ".join(parts)


def add_paths_request(
    request_id: int,
    paths: Sequence[str],
    options: JobOptions | None,
    flags: Mapping[str, str] | None,
    batch: str | None,
) -> AddPaths:
    return AddPaths(
        id=request_id,
        params=AddPathsParams(
            paths=list(paths),
            options=options,
            flags=dict(flags) if flags is not None else None,
            batch=batch,
        ),
    )
