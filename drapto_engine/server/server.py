"""The engine service: one Engine served to this user's local clients over a Unix socket.

Each connection is a session: a reader that answers requests in order, and a writer
task draining a bounded outbox. Replies and events share the outbox, so a subscriber
sees its snapshot before any event that follows it. The engine's event bus calls
`_on_event` synchronously; it only queues lines, so a slow client can never hold the
engine up: when its outbox is full it is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from drapto_engine import __version__
from drapto_engine.core.errors import DraptoError
from drapto_engine.core.events import Event
from drapto_engine.core.text import from_json, model_from_json
from drapto_engine.engine import Engine
from drapto_engine.server.location import bind, peer_uid
from drapto_engine.server.protocol import (
    MAX_LINE,
    PROTOCOL_VERSION,
    REQUEST_ADAPTER,
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
    request_params,
)

log = logging.getLogger(__name__)

OUTBOX_LIMIT = 10_000
"""Messages a client may fall behind before it is dropped."""
HELLO_TIMEOUT_S = 10.0
FLUSH_TIMEOUT_S = 1.0
"""How long closing waits for a session's queued messages to go out."""
WRITE_BATCH = 256
SNAPSHOT_METHODS = frozenset({"subscribe", "get_snapshot"})
"""Answered from the engine's live view without a copy (see _send_snapshot)."""


class LineTooLong(Exception):
    def __init__(self, consumed: int) -> None:
        super().__init__(f"line longer than {MAX_LINE} bytes")
        self.consumed = consumed


async def read_line(reader: asyncio.StreamReader) -> bytes | None:
    """The next line; None once the client has closed. Raises LineTooLong, leaving the
    line in the stream for skip_line."""
    try:
        return await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as exc:
        return exc.partial or None  # a last line without its newline still counts
    except asyncio.LimitOverrunError as exc:
        raise LineTooLong(exc.consumed) from None


async def _read_hello_unseen(reader: asyncio.StreamReader) -> None:
    """Take a refused client's hello off the socket, unread: closing a Unix socket with
    data still queued resets the connection, and the client loses the refusal's reason."""
    with contextlib.suppress(LineTooLong, OSError, TimeoutError):
        async with asyncio.timeout(HELLO_TIMEOUT_S):
            await read_line(reader)


async def skip_line(reader: asyncio.StreamReader, consumed: int) -> bool:
    """Discard an overlong line up to and including its newline; False if the stream
    ended first. Reads in pieces of at most the limit, so it never buffers the line."""
    try:
        while True:
            await reader.readexactly(consumed)
            try:
                await reader.readuntil(b"\n")
                return True
            except asyncio.LimitOverrunError as exc:
                consumed = exc.consumed
    except asyncio.IncompleteReadError:
        return False


def error_line(message: str, request_id: int | None = None) -> bytes:
    return encode(ErrorReply(id=request_id, error=message))


class Session:
    """One client connection's outgoing side: a bounded outbox and its writer task."""

    def __init__(self, writer: asyncio.StreamWriter, number: int, outbox_limit: int) -> None:
        self.writer = writer
        self.name = f"client {number}"
        self.subscribed = False
        self.closed = False
        self._outbox: asyncio.Queue[bytes | None] = asyncio.Queue(outbox_limit)
        self._sender = asyncio.create_task(self._send_forever(), name=f"send-{number}")

    def send(self, line: bytes) -> None:
        """Queue a line without waiting; a client this far behind is dropped."""
        if self.closed:
            return
        try:
            self._outbox.put_nowait(line)
        except asyncio.QueueFull:
            self.drop(f"{self._outbox.maxsize} messages behind")

    def drop(self, reason: str, level: int = logging.WARNING) -> None:
        """Close now, discarding whatever is queued."""
        if self.closed:
            return
        self.closed = True
        log.log(level, "%s dropped: %s", self.name, reason)
        self._sender.cancel()
        self.writer.transport.abort()

    async def finish(self) -> None:
        """Send what is queued (for a bounded time), then close."""
        if self.closed:
            return
        with contextlib.suppress(asyncio.QueueFull):
            self._outbox.put_nowait(None)
        await asyncio.wait({self._sender}, timeout=FLUSH_TIMEOUT_S)
        self.closed = True
        self._sender.cancel()
        self.writer.close()

    async def _send_forever(self) -> None:
        try:
            while True:
                batch = [await self._outbox.get()]
                # Many events arrive together (progress of every encoder): one write each
                # time the socket drains instead of one per event.
                while len(batch) < WRITE_BATCH and not self._outbox.empty():
                    batch.append(self._outbox.get_nowait())
                lines = [line for line in batch if line is not None]
                self.writer.writelines(lines)
                await self.writer.drain()
                if len(lines) < len(batch):
                    return
        except (ConnectionError, OSError) as exc:
            self.drop(f"connection lost ({exc.__class__.__name__})", logging.INFO)


def request_id(line: bytes) -> int | None:
    """The id of a request that failed validation, when one can be read from it."""
    with contextlib.suppress(ValueError):
        data = json.loads(line)
        if isinstance(data, dict) and type(data.get("id")) is int:
            return int(data["id"])
    return None


def problem(exc: ValidationError) -> str:
    """What was wrong with a request line, in words."""
    first = exc.errors()[0]
    kind = first["type"]
    if kind == "json_invalid":
        return f"malformed JSON: {first['msg']}"
    if kind == "union_tag_invalid":
        return f"unknown method {first.get('ctx', {}).get('tag')!r}"
    if kind == "union_tag_not_found":
        return "a request needs a method"
    if kind == "dict_type" and not first["loc"]:
        return "a request is a JSON object"
    return f"bad request: {describe(exc)}"


class EngineServer:
    """Serves `engine` on `socket_path`. `shutdown_requested` is set by a client's
    `shutdown` request; whoever runs the server (service.serve) then stops both.
    Only clients running as `owner` (this process's uid by default) are served."""

    def __init__(
        self,
        engine: Engine,
        socket_path: Path,
        *,
        outbox_limit: int = OUTBOX_LIMIT,
        owner: int | None = None,
    ) -> None:
        self.engine = engine
        self.owner = os.getuid() if owner is None else owner
        self.socket_path = socket_path
        self.shutdown_requested = asyncio.Event()
        self._outbox_limit = outbox_limit
        self._sessions: set[Session] = set()
        self._handlers: set[asyncio.Task[Any]] = set()
        self._numbers = itertools.count(1)
        self._server: asyncio.Server | None = None
        self._unsubscribe: Callable[[], None] | None = None

    @property
    def sessions(self) -> int:
        return len(self._sessions)

    async def start(self) -> None:
        """Listen. The caller has claimed the path (location.claim_socket)."""
        sock = bind(self.socket_path)
        self._unsubscribe = self.engine.bus.subscribe(self._on_event)
        self._server = await asyncio.start_unix_server(self._handle, sock=sock, limit=MAX_LINE)
        log.info("serving on %s", self.socket_path)

    def stop_listening(self) -> None:
        """Accept no new clients; the ones connected keep being served."""
        if self._server is not None:
            self._server.close()
            self._server = None
            self.socket_path.unlink(missing_ok=True)

    async def close(self) -> None:
        """Stop listening, send each client what is queued for it, and disconnect."""
        self.stop_listening()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        await asyncio.gather(*(s.finish() for s in list(self._sessions)))
        for task in self._handlers:
            task.cancel()
        if self._handlers:
            await asyncio.wait(self._handlers, timeout=FLUSH_TIMEOUT_S)

    # -- one connection --

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        session = Session(writer, next(self._numbers), self._outbox_limit)
        self._sessions.add(session)
        try:
            if not self._admit(session, writer.get_extra_info("socket")):
                await _read_hello_unseen(reader)
            elif await self._greet(session, reader):
                await self._serve(session, reader)
        except Exception:
            log.exception("%s: connection failed", session.name)
        finally:
            self._sessions.discard(session)
            self._handlers.discard(task)
            await session.finish()
            log.info("%s disconnected", session.name)

    def _admit(self, session: Session, sock: socket.socket) -> bool:
        uid = peer_uid(sock)
        if uid == self.owner:
            return True
        log.warning("refused a connection from uid %d", uid)
        session.send(error_line(f"refused: this engine serves uid {self.owner} only"))
        return False

    async def _greet(self, session: Session, reader: asyncio.StreamReader) -> bool:
        """The hello exchange; False (after an error reply) when the client cannot stay."""
        try:
            async with asyncio.timeout(HELLO_TIMEOUT_S):
                line = await read_line(reader)
        except TimeoutError:
            session.send(error_line(f"no hello within {HELLO_TIMEOUT_S:g} s"))
            return False
        except LineTooLong as exc:
            session.send(error_line(f"expected a hello first, got {exc}"))
            return False
        if line is None:
            return False
        try:
            hello = model_from_json(Hello, line)
        except ValidationError as exc:
            session.send(error_line(f"expected a hello first: {describe(exc)}"))
            return False
        if not compatible(hello.protocol):
            session.send(
                error_line(
                    f"protocol {hello.protocol} is not supported: this engine speaks"
                    f" {PROTOCOL_VERSION} (run the same drapto version as the engine)"
                )
            )
            return False
        session.name = f"{hello.name} (pid {hello.pid})"
        session.send(encode(Hello(name=f"drapto {__version__}", pid=os.getpid())))
        log.info("%s connected", session.name)
        return True

    async def _serve(self, session: Session, reader: asyncio.StreamReader) -> None:
        """Answer requests in the order they come until the client leaves."""
        while not session.closed:
            try:
                line = await read_line(reader)
            except LineTooLong as exc:
                session.send(error_line(f"{exc}; ignored"))
                if not await skip_line(reader, exc.consumed):
                    return
                continue
            except ConnectionError:
                return
            if line is None:
                return
            if line.strip():
                await self._answer(session, line)

    async def _answer(self, session: Session, line: bytes) -> None:
        try:
            request = from_json(REQUEST_ADAPTER, line)
        except ValidationError as exc:
            session.send(error_line(problem(exc), request_id(line)))
            return
        if request.method in SNAPSHOT_METHODS:
            self._send_snapshot(session, request)
            return
        try:
            result = await self._call(session, request)
        except DraptoError as exc:
            session.send(error_line(exc.one_line(), request.id))
        except Exception as exc:
            log.exception("%s: %s failed", session.name, request.method)
            message = f"{request.method} failed: {exc!r} (a bug: the engine's log has the details)"
            session.send(error_line(message, request.id))
        else:
            session.send(encode(Reply(id=request.id, result=result)))

    async def _call(self, session: Session, request: BaseRequest) -> Any:
        if isinstance(request, Shutdown):
            log.info("%s asked the engine to shut down", session.name)
            self.shutdown_requested.set()
            return None
        method = getattr(
            self.engine, request.method
        )  # an EngineAPI call: the parser knows only those
        return await method(**request_params(request))

    def _send_snapshot(self, session: Session, request: BaseRequest) -> None:
        # Serialised from the live view and queued with no await in between, so it is
        # consistent (Engine.get_snapshot's deep copy would only protect an in-process
        # caller, at a cost of seconds for a large queue). For a subscription, every
        # event is then either in the snapshot or queued after it, never both.
        session.send(encode(Reply(id=request.id, result=self.engine.view.state)))
        if isinstance(request, Subscribe):
            session.subscribed = True

    def _on_event(self, event: Event) -> None:
        # Runs inside EventBus.emit on the engine's call stack: it must never await or
        # block. Each event is serialised once for every subscriber.
        listeners = [s for s in self._sessions if s.subscribed and not s.closed]
        if not listeners:
            return
        line = encode(EventMessage(event=event))
        for session in listeners:
            session.send(line)
