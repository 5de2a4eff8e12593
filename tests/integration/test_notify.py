"""notify() against a real HTTP server on 127.0.0.1: what it sends, and that every
failure comes back as text, never as an exception."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.header import decode_header, make_header
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from drapto_engine.config import Config
from drapto_engine.core.savings import Saving
from drapto_engine.engine import Engine
from drapto_engine.infrastructure.notify import notify
from drapto_engine.infrastructure.queue_store import QueueStore
from drapto_engine.infrastructure.savings import SavingsStore
from drapto_engine.infrastructure.store import StateStore
from drapto_engine.services.daily_summary import DailySummary


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Server:
    url: str
    status: int = 200
    requests: list[Received] = field(default_factory=list)
    answered: threading.Event = field(default_factory=threading.Event)
    delay: threading.Event | None = None


@pytest.fixture
def server() -> Iterator[Server]:
    state = Server(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            state.requests.append(
                Received("POST", self.path, {k: v for k, v in self.headers.items()}, body)
            )
            if state.delay is not None:
                state.delay.wait(5)
            self.send_response(state.status)
            self.end_headers()
            if state.status >= 400:
                self.wfile.write(b"topic is\nover quota")
            state.answered.set()

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep the test output clean

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/drapto"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        if state.delay is not None:
            state.delay.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


async def test_posts_the_message_with_title_and_tags(server: Server) -> None:
    error = await notify(
        server.url, "drapto: job done", "Film.mkv: done, 61% smaller", tags=["done", "batch"]
    )
    assert error is None
    (request,) = server.requests
    assert request.path == "/drapto"
    assert request.body == b"Film.mkv: done, 61% smaller"
    assert request.headers["Title"] == "drapto: job done"
    assert request.headers["Tags"] == "done,batch"
    assert request.headers["Content-Type"] == "text/plain; charset=utf-8"


async def test_non_ascii_title_and_body(server: Server) -> None:
    assert await notify(server.url, "Amélie — fini\nnext", "Amélie (2001).mkv: 完了") is None
    (request,) = server.requests
    assert request.body == "Amélie (2001).mkv: 完了".encode()
    title = request.headers["Title"]
    assert title.isascii()  # RFC 2047, which ntfy decodes
    assert str(make_header(decode_header(title))) == "Amélie — fini next"
    assert "Tags" not in request.headers


async def test_a_name_that_is_not_utf8_is_sent_escaped(server: Server) -> None:
    """bad\xff\xfe.mp4 from an old Samba share: its undecodable bytes shown as `\xff`."""
    name = os.fsdecode(b"bad\xff\xfe.mp4")
    assert await notify(server.url, f"drapto: {name}", f"{name}: done") is None
    (request,) = server.requests
    assert request.body == b"bad\\xff\\xfe.mp4: done"
    assert request.headers["Title"] == "drapto: bad\\xff\\xfe.mp4"


async def test_error_status_is_reported(server: Server) -> None:
    server.status = 500
    error = await notify(server.url, "t", "m")
    assert error == "HTTP 500 Internal Server Error: topic is over quota"
    assert len(server.requests) == 1


async def test_refused_connection_is_reported() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once the socket closes
    error = await notify(f"http://127.0.0.1:{port}/x", "t", "m")
    assert error == "cannot connect: Connection refused"


async def test_timeout_is_reported(server: Server) -> None:
    server.delay = threading.Event()
    error = await notify(server.url, "t", "m", timeout_s=0.3)
    assert error == "no answer within 0.3 s"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://example.com/x", "only http and https are supported"),
        ("file:///etc/passwd", "only http and https are supported"),
        ("ntfy.sh/topic", "only http and https are supported"),
        ("http:///topic", "no host"),
        ("http://[::1/x", "Invalid IPv6 URL"),
    ],
)
async def test_bad_urls_are_refused_before_sending(url: str, problem: str) -> None:
    error = await notify(url, "t", "m")
    assert error is not None
    assert error.startswith(f"invalid URL {url!r}: ")
    assert problem in error


async def test_the_daily_summary_of_the_space_saved(server: Server, tmp_path: Path) -> None:
    """Sent once a local day, at or after its time, with the last day's and the total
    savings; the day sent is kept in the store, so a restarted engine does not repeat it."""
    state = StateStore(tmp_path / "drapto.db")
    savings = SavingsStore(state)
    noon = time.mktime((2026, 12, 7, 12, 0, 0, 0, 0, -1))
    savings.add(Saving(key="a", path="/m/a.mp4", output="/m/a.mkv", bytes_before=3_000_000,
                       bytes_after=1_000_000, time=noon - 3 * 86400))  # fmt: skip
    savings.add(Saving(key="b", path="/m/b.mp4", output="/m/b.mkv", bytes_before=2_000_000,
                       bytes_after=1_500_000, time=noon - 3600))  # fmt: skip
    clock = [noon - 2 * 3600]  # 10:00, before the time

    def summary() -> DailySummary:
        send = partial(notify, server.url, tags=["floppy_disk"])
        return DailySummary(savings, QueueStore(state), (11, 30), send, lambda: clock[0])

    try:
        assert await summary().send_if_due() is None
        assert server.requests == []
        clock[0] = noon
        assert await summary().send_if_due() is None
        (request,) = server.requests
        assert request.headers["Title"] == "drapto: space saved today"
        assert request.body.decode() == (
            "Last 24 hours: 1 file, 2.0 MB -> 1.5 MB, saved 500.0 kB (25%).\n"
            "In total: 2 files, 5.0 MB -> 2.5 MB, saved 2.5 MB (50%)."
        )
        clock[0] = noon + 3600
        assert await summary().send_if_due() is None  # a new engine, the same day
        assert len(server.requests) == 1
        clock[0] = noon + 86400
        assert await summary().send_if_due() is None
        assert len(server.requests) == 2
        assert server.requests[1].body.decode().startswith("Last 24 hours: nothing encoded.")
    finally:
        state.close()


async def test_a_failed_daily_summary_is_tried_again(server: Server, tmp_path: Path) -> None:
    state = StateStore(tmp_path / "drapto.db")
    server.status = 500
    clock = [time.mktime((2026, 12, 7, 12, 0, 0, 0, 0, -1))]

    def summary() -> DailySummary:
        send = partial(notify, server.url)
        return DailySummary(SavingsStore(state), QueueStore(state), (8, 0), send, lambda: clock[0])

    try:
        assert (await summary().send_if_due() or "").startswith("HTTP 500")
        server.status = 200
        assert await summary().send_if_due() is None
        assert len(server.requests) == 2
    finally:
        state.close()


async def test_the_engine_sends_the_daily_summary_its_config_asks_for(
    server: Server, tmp_path: Path, ffmpeg: str
) -> None:
    engine = Engine(ffmpeg, config=Config(notify_url=server.url), state_dir=tmp_path / "a")
    try:
        assert engine.upkeep is not None and engine.upkeep.summary is None  # not asked for
    finally:
        engine.close()
    config = Config(notify_url=server.url, notify_daily="00:00")
    engine = Engine(ffmpeg, config=config, state_dir=tmp_path / "b")
    try:
        assert engine.upkeep is not None and engine.upkeep.summary is not None
        assert await engine.upkeep.summary.send_if_due() is None
        (request,) = server.requests
        assert request.headers["Title"] == "drapto: space saved today"
        assert request.headers["Tags"] == "floppy_disk"
        assert request.body.decode().startswith("Last 24 hours: nothing encoded.")
    finally:
        engine.close()
