"""The engine service's wire protocol: newline-delimited JSON, one message a line.

Every message is a pydantic model defined here (the server and every client import
these); the request of each engine call is derived from its declaration in
`core.api.EngineAPI`. The payloads are the engine's own models: requests carry `JobOptions`,
replies carry `QueueEntry`, `FlagView`, `EngineSnapshot`, events are the `Event` union.

    client -> server   {"type":"hello","protocol":"1.2","name":"drapto-tui","pid":42}
    server -> client   {"type":"hello","protocol":"1.2","name":"drapto 0.3.0","pid":7}
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

import inspect
import types
import typing
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model

from drapto_engine.core.api import APICall, EngineSnapshot, api_calls
from drapto_engine.core.events import Event
from drapto_engine.core.text import model_json

PROTOCOL_VERSION = "1.2"
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


# -- requests: one model per EngineAPI call (derived from its declaration), plus the
# service's own subscribe and shutdown --


class NoParams(_Message):
    pass


class BaseRequest(_Message):
    id: int
    method: str
    returns: ClassVar[Any] = None
    """The Python type of the reply's result (None: the reply carries null)."""


def _on_the_wire(hint: Any) -> Any:
    """A declared parameter type as a request field: sequences travel as lists and
    mappings as objects (JSON has nothing else); Annotated validators stay."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is Annotated:
        return Annotated[(_on_the_wire(args[0]), *hint.__metadata__)]
    if origin in (Sequence, list):
        return list[_on_the_wire(args[0])]  # type: ignore[misc]
    if origin in (Mapping, dict):
        return dict[_on_the_wire(args[0]), _on_the_wire(args[1])]  # type: ignore[misc]
    if origin in (Union, types.UnionType):
        return Union[tuple(_on_the_wire(a) for a in args)]  # noqa: UP007 - built from a tuple
    return hint


def _camel(name: str) -> str:
    return "".join(part.title() for part in name.split("_"))


def _request_model(call: APICall) -> type[BaseRequest]:
    """The request of one declared call: {"id", "method": its name, "params": its
    parameters by name}, replied to with its declared result."""
    fields: dict[str, Any] = {
        name: (_on_the_wire(hint), ... if default is inspect.Parameter.empty else default)
        for name, (hint, default) in call.parameters.items()
    }
    if fields:
        params: Any = (create_model(f"{_camel(call.name)}Params", __base__=_Message, **fields), ...)
    else:
        params = (NoParams, NoParams())
    tag: Any = Literal[call.name]
    model = create_model(
        _camel(call.name),
        __base__=BaseRequest,
        __doc__=call.doc,
        method=(tag, call.name),
        params=params,
    )
    model.returns = call.returns
    return model


ENGINE_REQUESTS: dict[str, type[BaseRequest]] = {
    name: _request_model(call) for name, call in api_calls().items()
}
"""The request of each EngineAPI call, by method name: the server answers each by
calling the engine's method of the same name."""
ENGINE_METHODS = frozenset(ENGINE_REQUESTS)


class Subscribe(BaseRequest):
    """Reply: the full snapshot; then every event, each its own "event" message."""

    method: Literal["subscribe"] = "subscribe"
    params: NoParams = NoParams()
    returns: ClassVar[Any] = EngineSnapshot


class Shutdown(BaseRequest):
    """Stop the engine (running jobs go back to the queue) and the server."""

    method: Literal["shutdown"] = "shutdown"
    params: NoParams = NoParams()


_REQUESTS = (*ENGINE_REQUESTS.values(), Subscribe, Shutdown)
Request: Any = Annotated[Union[_REQUESTS], Field(discriminator="method")]  # noqa: UP007
"""Any request, told apart by its method."""
REQUEST_ADAPTER: TypeAdapter[BaseRequest] = TypeAdapter(
    Request, config=ConfigDict(defer_build=True)
)


def __getattr__(name: str) -> type[BaseRequest]:
    """The derived request classes by name, e.g. `protocol.AddPaths`."""
    for model in ENGINE_REQUESTS.values():
        if model.__name__ == name:
            return model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def engine_request(request_id: int, call: APICall, arguments: Mapping[str, Any]) -> BaseRequest:
    """The request of an EngineAPI call with these arguments (raises ValidationError)."""
    model = ENGINE_REQUESTS[call.name]
    params = model.model_fields["params"].annotation
    assert params is not None
    return model.model_validate({"id": request_id, "params": params(**arguments)})


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
