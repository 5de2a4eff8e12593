"""A client of the engine service with the Engine's own API (core.api.EngineAPI).

`EngineClient` and `Engine` are interchangeable for callers: the same method names,
arguments and return types, the client's derived from the declaration. One reader task sorts what the server sends: replies go
to the future of the request with their id, events to a queue read by `events()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from drapto_engine.core.api import APICall, EngineSnapshot, ForwardsEngineAPI, api_calls
from drapto_engine.core.errors import DraptoError
from drapto_engine.core.events import Event
from drapto_engine.core.jobs import JobOptions, QueueEntry
from drapto_engine.core.text import from_json
from drapto_engine.server.location import check_folder, check_peer
from drapto_engine.server.protocol import (
    CLIENT_READ_LIMIT,
    MAX_LINE,
    PROTOCOL_VERSION,
    SERVER_ADAPTER,
    BaseRequest,
    ErrorReply,
    EventMessage,
    Hello,
    Reply,
    Shutdown,
    Subscribe,
    compatible,
    describe,
    encode,
    engine_request,
    parse_result,
)

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0
SHUTDOWN_TIMEOUT_S = 10.0
"""How long shutdown() waits for the engine to stop and close the connection."""


class EngineUnavailable(DraptoError):
    """No engine listens on the socket (no file, or nobody accepting): one may be started."""


class EngineLost(DraptoError):
    """The connection to the engine ended while a client still needed it (the engine
    died or was stopped): what it was doing there is not known to have finished."""


class EngineClient(ForwardsEngineAPI):
    """A connection to the engine service. Make one with `await EngineClient.connect()`.

    Each EngineAPI call is sent as its request (server/protocol.py) and answered with
    the declared result; only add_paths and add_file are written out here, since they
    make the caller's relative paths absolute first."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        socket_path: Path,
        server: Hello,
    ) -> None:
        self.socket_path = socket_path
        self.server = server
        """The engine's hello: its version and pid."""
        self._reader, self._writer = reader, writer
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[type[BaseRequest], asyncio.Future[Any]]] = {}
        self._events: asyncio.Queue[Event | None] = asyncio.Queue()
        self._lost: str | None = None
        self._notice: str | None = None
        """The engine's last error about the connection itself (e.g. why it closes it)."""
        self._reading = asyncio.create_task(self._read_forever(), name="engine-client-reader")

    @classmethod
    async def connect(cls, socket_path: Path, *, client_name: str = "drapto") -> EngineClient:
        """Connect and exchange hellos. Raises EngineUnavailable when no engine runs there,
        UntrustedSocket (before sending anything) when another user could be listening."""
        if not check_folder(socket_path):
            raise EngineUnavailable(
                "no engine is running on this socket", socket_path, hint="start one: drapto serve"
            )
        try:
            reader, writer = await asyncio.open_unix_connection(
                str(socket_path), limit=CLIENT_READ_LIMIT
            )
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise EngineUnavailable(
                "no engine is running on this socket", socket_path, hint="start one: drapto serve"
            ) from exc
        except OSError as exc:
            raise DraptoError(f"cannot connect to the engine: {exc}", socket_path) from exc
        try:
            check_peer(writer.get_extra_info("socket"), socket_path)
            server = await _hello(reader, writer, client_name, socket_path)
        except BaseException:
            writer.close()
            raise
        return cls(reader, writer, socket_path=socket_path, server=server)

    # -- EngineAPI: every call not written here is derived from its declaration --

    async def forward(self, call: APICall, arguments: dict[str, Any]) -> Any:
        """Send one EngineAPI call as its request; its reply as the declared result."""
        try:
            request = engine_request(next(self._ids), call, arguments)
        except ValidationError as exc:
            verb = "queue" if call.name.startswith("add_") else call.name
            raise DraptoError(f"cannot {verb}: {describe(exc)}") from None
        return await self._call(request)

    async def add_paths(
        self,
        paths: Sequence[str],
        options: JobOptions | None = None,
        flags: Mapping[str, str] | None = None,
        batch: str | None = None,
    ) -> list[QueueEntry]:
        """Queue files and folders. Relative paths are this process's, so they are made
        absolute here; a list too long for one request line is sent in parts."""
        call = api_calls()["add_paths"]
        # An empty path stays empty: the engine refuses it rather than read it as ".".
        paths = [_absolute(p) for p in paths]
        arguments = {"paths": paths, "options": options, "flags": flags, "batch": batch}
        try:
            request = engine_request(next(self._ids), call, arguments)
        except ValidationError as exc:
            raise DraptoError(f"cannot queue: {describe(exc)}") from None
        if len(paths) > 1 and len(encode(request)) > MAX_LINE:
            half = len(paths) // 2
            first = await self.add_paths(paths[:half], options, flags, batch)
            return first + await self.add_paths(paths[half:], options, flags, batch)
        result: list[QueueEntry] = await self._call(request)
        return result

    async def add_file(
        self,
        input: str,
        output: str,
        options: JobOptions | None = None,
        flags: Mapping[str, str] | None = None,
        batch: str | None = None,
    ) -> QueueEntry:
        """Queue one file with its output path; relative paths are made absolute here."""
        arguments = {
            "input": _absolute(input),
            "output": _absolute(output),
            "options": options,
            "flags": flags,
            "batch": batch,
        }
        entry: QueueEntry = await self.forward(api_calls()["add_file"], arguments)
        return entry

    # -- the service's own --

    async def subscribe(self) -> EngineSnapshot:
        """The full state now; every event after it arrives through events()."""
        snapshot: EngineSnapshot = await self._call(Subscribe(id=next(self._ids)))
        return snapshot

    async def events(self) -> AsyncIterator[Event]:
        """Events after subscribe(), in the engine's order; ends when the connection does."""
        while True:
            event = await self._events.get()
            if event is None:
                self._events.put_nowait(None)  # any other reader of events() ends too
                return
            yield event

    async def shutdown(self) -> None:
        """Stop the engine (running jobs go back to the queue) and its server; returns
        once the engine has closed the connection, i.e. has stopped."""
        await self._call(Shutdown(id=next(self._ids)))
        await asyncio.wait({self._reading}, timeout=SHUTDOWN_TIMEOUT_S)
        await self.close()

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()
        self._reading.cancel()
        await asyncio.wait({self._reading})
        self._end("the connection was closed")

    @property
    def connected(self) -> bool:
        return self._lost is None

    # -- plumbing --

    @property
    def lost(self) -> str | None:
        """Why the connection ended, once it has."""
        return self._lost

    async def _call(self, request: BaseRequest) -> Any:
        if self._lost is not None:
            raise EngineLost(f"engine connection lost: {self._lost}", self.socket_path)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request.id] = (type(request), future)
        try:
            self._writer.write(encode(request))
            await self._writer.drain()
        except OSError as exc:
            self._pending.pop(request.id, None)
            raise EngineLost(f"engine connection lost: {exc}", self.socket_path) from exc
        return await future

    async def _read_forever(self) -> None:
        reason = "the engine closed the connection"
        try:
            while line := await self._reader.readline():
                self._dispatch(line)
        except (OSError, ValueError) as exc:
            reason = f"reading from the engine failed: {exc}"
        finally:
            self._end(f"{reason} ({self._notice})" if self._notice else reason)

    def _dispatch(self, line: bytes) -> None:
        try:
            message = from_json(SERVER_ADAPTER, line)
        except ValidationError as exc:
            log.warning("ignored a message from the engine: %s", describe(exc))
            return
        if isinstance(message, EventMessage):
            self._events.put_nowait(message.event)
        elif isinstance(message, Reply | ErrorReply):
            self._answered(message)

    def _answered(self, message: Reply | ErrorReply) -> None:
        pending = self._pending.pop(message.id, None) if message.id is not None else None
        if pending is None:
            if isinstance(message, ErrorReply):  # about the connection, not a request
                log.warning("engine: %s", message.error)
                self._notice = message.error
            return
        request, future = pending
        if future.done():
            return
        if isinstance(message, ErrorReply):
            future.set_exception(DraptoError(message.error))
            return
        try:
            future.set_result(parse_result(request, message.result))
        except ValidationError as exc:
            future.set_exception(DraptoError(f"unexpected reply from the engine: {describe(exc)}"))

    def _end(self, reason: str) -> None:
        """The connection is over: every waiting call fails, events() ends."""
        if self._lost is None:
            self._lost = reason
            self._events.put_nowait(None)
        for _, future in self._pending.values():
            if not future.done():
                future.set_exception(
                    EngineLost(f"engine connection lost: {self._lost}", self.socket_path)
                )
        self._pending.clear()


def _absolute(path: str) -> str:
    return str(Path(path).expanduser().absolute()) if path else path


async def _hello(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, name: str, socket_path: Path
) -> Hello:
    writer.write(encode(Hello(name=name, pid=os.getpid())))
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            await writer.drain()
            line = await reader.readline()
    except TimeoutError:
        raise DraptoError("the engine did not answer within 5 s", socket_path) from None
    except (OSError, ValueError) as exc:
        raise DraptoError(f"the engine refused the connection: {exc}", socket_path) from exc
    if not line:
        raise DraptoError("the engine closed the connection", socket_path)
    try:
        message = from_json(SERVER_ADAPTER, line)
    except ValidationError as exc:
        raise DraptoError(f"not a drapto engine: {describe(exc)}", socket_path) from exc
    if isinstance(message, ErrorReply):
        raise DraptoError(f"the engine refused the connection: {message.error}", socket_path)
    if not isinstance(message, Hello):
        raise DraptoError("the engine did not say hello", socket_path)
    if not compatible(message.protocol):
        raise DraptoError(
            f"the engine speaks protocol {message.protocol}, this drapto {PROTOCOL_VERSION}",
            socket_path,
            hint="restart the engine with this drapto version",
        )
    return message
