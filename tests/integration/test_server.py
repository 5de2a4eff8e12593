"""The engine service over real Unix sockets: several clients, bad input, refusals,
auto-start, a SIGKILLed engine resuming its queue, `drapto serve` and `drapto status`.

Fast cases serve an in-process Engine from the test's own event loop; the lifecycle
cases run `drapto serve` as a real process with its own XDG folders. Nothing waits by
sleeping: every wait polls a condition against a deadline.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import stat
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from drapto_engine.config import Config
from drapto_engine.core import events as ev
from drapto_engine.core.api import EngineView
from drapto_engine.core.errors import DraptoError
from drapto_engine.core.flags import FlagSource, FlagState
from drapto_engine.core.jobs import EntryStatus, JobOptions, QueueEntry
from drapto_engine.engine import Engine
from drapto_engine.server.autostart import connect_or_start
from drapto_engine.server.client import EngineClient, EngineUnavailable
from drapto_engine.server.location import answers
from drapto_engine.server.protocol import (
    MAX_LINE,
    PROTOCOL_VERSION,
    SERVER_ADAPTER,
    ErrorReply,
    Hello,
    Reply,
    encode,
)
from drapto_engine.server.server import EngineServer

DRAPTO = [sys.executable, "-m", "drapto_engine.cli"]
FAST = JobOptions(preset=12)
SERVE_START_S = 20.0


# -- waiting without sleeping blindly --


async def until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.02)


@dataclass
class Recorder:
    """Drains a subscribed client's events into a list (and a view of the engine)."""

    client: EngineClient
    view: EngineView = field(default_factory=EngineView)
    events: list[ev.Event] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    @classmethod
    async def subscribe(cls, client: EngineClient) -> Recorder:
        recorder = cls(client, EngineView(await client.subscribe()))
        recorder.task = asyncio.create_task(recorder._drain())
        return recorder

    async def _drain(self) -> None:
        async for event in self.client.events():
            self.view.apply(event)
            self.events.append(event)

    def entry(self, entry_id: int) -> QueueEntry | None:
        return self.view.entry(entry_id)

    def count(self, kind: type[object]) -> int:
        return sum(isinstance(e, kind) for e in self.events)

    def saw(self, kind: type[object], **fields: object) -> bool:
        return any(
            isinstance(e, kind) and all(getattr(e, k) == v for k, v in fields.items())
            for e in self.events
        )


# -- an engine served in-process --


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A folder whose socket paths fit the 107-byte limit (pytest's tmp paths may not)."""
    folder = Path(tempfile.mkdtemp(prefix="drs-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@dataclass
class Served:
    engine: Engine
    server: EngineServer
    socket: Path
    clients: list[EngineClient] = field(default_factory=list)

    async def client(self, name: str = "test") -> EngineClient:
        client = await EngineClient.connect(self.socket, client_name=name)
        self.clients.append(client)
        return client


@pytest.fixture
async def served(tmp_path: Path, ffmpeg: str, short_dir: Path) -> AsyncIterator[Served]:
    engine = Engine(
        ffmpeg,
        config=Config(),
        state_dir=tmp_path / "state",
        config_path=tmp_path / "config" / "config.toml",
        workers=2,
    )
    server = EngineServer(engine, short_dir / "engine.sock", outbox_limit=200)
    await engine.start()
    await server.start()
    runner = asyncio.create_task(engine.run())
    served = Served(engine, server, server.socket_path)
    try:
        yield served
    finally:
        for client in served.clients:
            await client.close()
        await engine.stop()
        await runner
        await server.close()
        engine.close()


async def raw_connection(
    path: Path, protocol: str = "1.0"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    """A connection that speaks the protocol by hand; returns the server's first line."""
    reader, writer = await asyncio.open_unix_connection(str(path), limit=1 << 26)
    writer.write(encode(Hello(protocol=protocol, name="raw", pid=os.getpid())))
    return reader, writer, await asyncio.wait_for(reader.readline(), 5)


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: bytes
) -> Reply | ErrorReply:
    writer.write(line)
    message = SERVER_ADAPTER.validate_json(await asyncio.wait_for(reader.readline(), 5))
    assert isinstance(message, Reply | ErrorReply)
    return message


# -- `drapto serve` as a real process --


@dataclass
class User:
    """The XDG folders of one simulated user session, passed to every subprocess."""

    env: dict[str, str]
    socket: Path
    state: Path
    started: list[asyncio.subprocess.Process] = field(default_factory=list)

    async def serve(self, *extra: str) -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(
            *DRAPTO, "serve", *extra, env=self.env, stderr=asyncio.subprocess.PIPE
        )
        self.started.append(process)
        deadline = time.monotonic() + SERVE_START_S
        while not answers(self.socket):
            if process.returncode is not None or time.monotonic() > deadline:
                assert process.stderr is not None
                raise AssertionError(f"drapto serve did not start: {await process.stderr.read()!r}")
            await asyncio.sleep(0.02)
        return process

    async def run(self, *args: str) -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            *DRAPTO,
            *args,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode is not None
        return process.returncode, out.decode(), err.decode()


@pytest.fixture
async def user(tmp_path: Path, short_dir: Path) -> AsyncIterator[User]:
    env = {
        **os.environ,
        "XDG_RUNTIME_DIR": str(short_dir),
        "XDG_STATE_HOME": str(tmp_path / "xdg-state"),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg-config"),
    }
    env.pop("DRAPTO_STATE_DIR", None)
    user = User(env, short_dir / "drapto" / "engine.sock", tmp_path / "xdg-state" / "drapto")
    yield user
    for process in user.started:
        if process.returncode is None:
            process.kill()
            await process.wait()


def gone(pid: int) -> bool:
    """Whether a process (not necessarily our child) has exited; a zombie counts."""
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


async def add_one(client: EngineClient, video: Path, out: Path) -> QueueEntry:
    out.mkdir(exist_ok=True)
    options = FAST.model_copy(update={"output_dir": out})
    entries = await client.add_paths([str(video)], options)
    assert len(entries) == 1
    return entries[0]


# -- several clients --


@pytest.mark.xdist_group("timing")  # timed (1 s): one at a time with the other timed tests
async def test_a_flag_changed_by_one_client_reaches_the_other(served: Served) -> None:
    a, b = await served.client("a"), await served.client("b")
    seen_a, seen_b = await Recorder.subscribe(a), await Recorder.subscribe(b)

    view = await a.set_flag("crop_detection", "off")
    assert view.state is FlagState.OFF and view.source is FlagSource.LIVE

    started = time.monotonic()
    await until(lambda: seen_b.saw(ev.FlagChanged, previous=FlagState.ON), "b's flag event", 1.0)
    assert time.monotonic() - started < 1.0
    event = next(e for e in seen_b.events if isinstance(e, ev.FlagChanged))
    assert event.flag.name == "crop_detection" and event.flag.state is FlagState.OFF
    await until(lambda: seen_a.saw(ev.FlagChanged), "a's own flag event", 1.0)

    newcomer = await (await served.client("c")).get_snapshot()
    crop = next(f for f in newcomer.flags if f.name == "crop_detection")
    assert (crop.state, crop.source) == (FlagState.OFF, FlagSource.LIVE)
    assert {f.name: f.state for f in await b.get_flags()}["crop_detection"] is FlagState.OFF


async def test_a_queued_file_is_seen_by_both_clients_and_encoded(
    served: Served, make_media: Callable[..., Path], tmp_path: Path
) -> None:
    video = make_media("clip.mkv", size=(64, 64), duration=1)
    a, b = await served.client("a"), await served.client("b")
    seen_a, seen_b = await Recorder.subscribe(a), await Recorder.subscribe(b)

    entry = await add_one(b, video, tmp_path / "out")

    for seen in (seen_a, seen_b):
        await until(lambda s=seen: s.entry(entry.id) is not None, "the new entry")  # type: ignore[misc]
    for seen in (seen_a, seen_b):
        await until_done(seen, entry.id)
    assert seen_b.saw(ev.JobFinished) and seen_a.saw(ev.JobFinished)
    assert seen_a.view.state.entries == seen_b.view.state.entries


async def test_a_path_list_longer_than_a_line_is_sent_in_parts(
    served: Served, tmp_path: Path
) -> None:
    client = await served.client()
    await client.pause()  # placeholders, never to be encoded
    folder = tmp_path.joinpath(*["d" * 200] * 16)
    folder.mkdir(parents=True)
    files = [folder / f"{n:03d}-{'f' * 200}.mkv" for n in range(320)]
    for file in files:
        file.touch()
    assert sum(len(str(f)) for f in files) > MAX_LINE

    entries = await client.add_paths([str(f) for f in files], FAST)

    assert [e.input for e in entries] == [str(f) for f in files]
    assert len((await client.get_snapshot()).entries) == 320


# -- clients that misbehave --

DOOMED_CLIENT = """
import asyncio, sys
from pathlib import Path
from drapto_engine.server.client import EngineClient

async def main():
    client = await EngineClient.connect(Path(sys.argv[1]), client_name="doomed")
    await client.subscribe()
    print("subscribed", flush=True)
    async for _ in client.events():
        pass

asyncio.run(main())
"""


async def test_a_client_killed_mid_stream_leaves_the_server_serving(served: Served) -> None:
    doomed = await asyncio.create_subprocess_exec(
        sys.executable, "-c", DOOMED_CLIENT, str(served.socket), stdout=asyncio.subprocess.PIPE
    )
    assert doomed.stdout is not None
    try:
        assert await asyncio.wait_for(doomed.stdout.readline(), 20) == b"subscribed\n"
        survivor = await served.client("survivor")
        seen = await Recorder.subscribe(survivor)
        stream = asyncio.create_task(_stream_warnings(served.engine, 2000))
        await until(lambda: seen.count(ev.WarningEvent) > 100, "events to flow")
        doomed.kill()
        await doomed.wait()
        await stream
    finally:
        if doomed.returncode is None:
            doomed.kill()
            await doomed.wait()
    await until(lambda: served.server.sessions == 1, "the dead client's session to end")
    await until(lambda: seen.count(ev.WarningEvent) == 2000, "every event at the survivor")
    assert (await survivor.get_snapshot()).workers == 2


async def _stream_warnings(engine: Engine, count: int) -> None:
    for number in range(count):
        engine.bus.emit(ev.WarningEvent(message=f"warning {number}"))
        if number % 20 == 0:
            await asyncio.sleep(0)  # let the sessions write, as a real engine would


async def test_garbage_and_oversized_lines_get_errors_and_others_keep_working(
    served: Served,
) -> None:
    other = await served.client("other")
    seen = await Recorder.subscribe(other)
    reader, writer, hello = await raw_connection(served.socket)
    assert SERVER_ADAPTER.validate_json(hello).type == "hello"

    garbage = await exchange(reader, writer, b"this is not json\n")
    assert isinstance(garbage, ErrorReply) and "malformed JSON" in garbage.error
    unknown = await exchange(reader, writer, b'{"id": 5, "method": "format_disk"}\n')
    assert isinstance(unknown, ErrorReply) and unknown.id == 5
    assert "unknown method 'format_disk'" in unknown.error
    bad = await exchange(reader, writer, b'{"id": 6, "method": "set_flag", "params": {}}\n')
    assert isinstance(bad, ErrorReply) and bad.id == 6 and "params.name" in bad.error
    refused = await exchange(
        reader, writer, b'{"id":7,"method":"set_flag","params":{"name":"nope","state":"on"}}\n'
    )
    assert isinstance(refused, ErrorReply) and refused.error.startswith("unknown flag 'nope'")

    huge = b'{"id": 8, "method": "add_paths", "params": {"paths": ["' + b"x" * (2 * MAX_LINE)
    oversized = await exchange(reader, writer, huge + b'"]}}\n')
    assert isinstance(oversized, ErrorReply) and "longer than" in oversized.error
    await other.pause()  # the other client is served while and after the line arrives
    after = await exchange(reader, writer, b'{"id": 9, "method": "get_flags"}\n')
    assert isinstance(after, Reply) and after.id == 9 and len(after.result) > 0

    with pytest.raises(DraptoError, match="unknown flag 'nope'"):
        await other.set_flag("nope", "on")
    await until(lambda: seen.saw(ev.QueueStateChanged, paused=True), "the pause event")
    assert served.server.sessions == 2
    writer.close()


async def test_only_absolute_paths_and_a_sane_worker_bound_are_accepted(
    served: Served, make_media: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_media("here.mkv", size=(64, 64), duration=1)  # what "" or "." would have queued
    monkeypatch.chdir(tmp_path)  # the engine's working folder holds a video
    await (await served.client()).pause()
    reader, writer, _ = await raw_connection(served.socket)

    def add(paths: list[str]) -> bytes:
        params = {"paths": paths, "options": {"preset": 12}}
        return json.dumps({"id": 1, "method": "add_paths", "params": params}).encode() + b"\n"

    for paths, expected in (
        ([""], "an empty path (paths must be absolute)"),
        (["here.mkv"], "'here.mkv' is relative (paths must be absolute)"),
        ([str(tmp_path), "."], "'.' is relative"),
    ):
        refused = await exchange(reader, writer, add(paths))
        assert isinstance(refused, ErrorReply) and refused.id == 1, refused
        assert expected in refused.error and "\n" not in refused.error
    single = b'{"id":2,"method":"add_file","params":{"input":"here.mkv","output":"/x.mkv"}}\n'
    refused = await exchange(reader, writer, single)
    assert isinstance(refused, ErrorReply) and "'here.mkv' is relative" in refused.error
    assert served.engine.entries() == []  # nothing of the engine's folder was queued

    cores = os.cpu_count() or 1
    for workers in (0, -1, 4 * cores + 1):
        line = json.dumps({"id": 3, "method": "set_workers", "params": {"workers": workers}})
        refused = await exchange(reader, writer, line.encode() + b"\n")
        assert isinstance(refused, ErrorReply), workers
        assert f"between 1 and {4 * cores}" in refused.error
    assert served.engine.resources.limit == 2
    line = json.dumps({"id": 4, "method": "set_workers", "params": {"workers": 4 * cores}})
    assert isinstance(await exchange(reader, writer, line.encode() + b"\n"), Reply)
    assert served.engine.resources.limit == 4 * cores

    client = await served.client()  # the client sends what it was given as absolute
    with pytest.raises(DraptoError, match="an empty path"):
        await client.add_paths([""])
    entries = await client.add_paths([str(tmp_path / "here.mkv")], FAST)
    assert [e.input for e in entries] == [str(tmp_path / "here.mkv")]
    writer.close()


async def test_a_subscriber_that_stops_reading_is_dropped(served: Served) -> None:
    # A plain socket: an asyncio one would keep reading into its buffer for us.
    stalled = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stalled.connect(str(served.socket))
    stalled.sendall(encode(Hello(name="stalled")) + b'{"id": 1, "method": "subscribe"}\n')
    reading = await served.client("reading")
    seen = await Recorder.subscribe(reading)
    await until(lambda: served.server.sessions == 2, "both sessions")
    sent = 0
    with stalled:
        while served.server.sessions == 2:
            assert sent < 20_000, "the stalled client was never dropped"
            for _ in range(50):
                served.engine.bus.emit(ev.WarningEvent(message="x" * 1000))
            sent += 50
            await until(lambda s=sent: seen.count(ev.WarningEvent) == s, "the reader to keep up")  # type: ignore[misc]
    assert (await reading.get_snapshot()).workers == 2


async def test_a_connection_from_another_user_is_refused(served: Served) -> None:
    # The real SO_PEERCRED of a real connection, compared with an owner it is not.
    served.server.owner = os.getuid() + 1
    with pytest.raises(
        DraptoError, match=f"refused: this engine serves uid {os.getuid() + 1} only"
    ):
        await EngineClient.connect(served.socket)
    served.server.owner = os.getuid()
    assert (await (await served.client()).get_snapshot()).workers == 2


async def test_a_client_of_another_major_version_is_refused(served: Served) -> None:
    reader, writer, first = await raw_connection(served.socket, protocol="2.0")
    refusal = SERVER_ADAPTER.validate_json(first)
    assert isinstance(refusal, ErrorReply) and refusal.id is None
    assert f"protocol 2.0 is not supported: this engine speaks {PROTOCOL_VERSION}" in refusal.error
    assert await asyncio.wait_for(reader.read(), 5) == b""  # then closed
    writer.close()
    _, newer, hello = await raw_connection(served.socket, protocol="1.9")  # minor: fine
    assert SERVER_ADAPTER.validate_json(hello).type == "hello"
    newer.close()


# -- `drapto serve`, auto-start, `drapto status` --

STARTER = """
import asyncio, sys
from pathlib import Path
from drapto_engine.server.autostart import connect_or_start

async def main():
    client = await connect_or_start(
        Path(sys.argv[1]), state_dir=Path(sys.argv[2]), config_path=None, start=True
    )
    print(client.server.pid, flush=True)
    await client.close()
    sys.stdin.read()  # a terminal session that stays until it is hung up

asyncio.run(main())
"""


async def test_sighup_to_the_starters_group_leaves_the_started_engine_running(
    user: User,
) -> None:
    assert await _connect_or_none(user.socket) is None
    starter = await asyncio.create_subprocess_exec(
        sys.executable, "-c", STARTER, str(user.socket), str(user.state),
        env=user.env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip
    user.started.append(starter)
    assert starter.stdout is not None
    engine_pid = int(await asyncio.wait_for(starter.stdout.readline(), SERVE_START_S))
    try:
        assert os.getsid(engine_pid) != os.getsid(starter.pid)
        os.killpg(starter.pid, signal.SIGHUP)
        assert await asyncio.wait_for(starter.wait(), 5) == -signal.SIGHUP

        client = await EngineClient.connect(user.socket)
        assert client.server.pid == engine_pid and not gone(engine_pid)
        await client.pause()
        await client.shutdown()
        await until(lambda: gone(engine_pid), "the engine to exit after shutdown", 5)
        assert not user.socket.exists()
    finally:
        if not gone(engine_pid):
            os.kill(engine_pid, signal.SIGKILL)


async def _connect_or_none(path: Path) -> EngineClient | None:
    try:
        return await EngineClient.connect(path)
    except EngineUnavailable:
        return None


async def test_an_engine_killed_or_stopped_resumes_its_queue_when_started_again(
    user: User, make_media: Callable[..., Path], tmp_path: Path
) -> None:
    video = make_media("clip.mkv", size=(64, 64), duration=1)
    first = await user.serve()
    client = await EngineClient.connect(user.socket)
    seen = await Recorder.subscribe(client)
    entry = await add_one(client, video, tmp_path / "out")
    await until(lambda: seen.saw(ev.SegmentStarted), "an encoder to start", 30)
    await client.pause()  # the running job goes on; the next engine starts paused
    first.kill()
    await first.wait()
    await until(lambda: not client.connected, "the client to notice")
    assert user.socket.exists()  # left behind: the next engine must replace it

    second = await user.serve()
    client = await EngineClient.connect(user.socket)
    seen = await Recorder.subscribe(client)
    assert _status(seen, entry.id) is EntryStatus.QUEUED  # SIGKILL left it running
    await client.resume()
    await until(lambda: _status(seen, entry.id) is EntryStatus.RUNNING, "the entry to run again")
    started = time.monotonic()
    second.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(second.wait(), 5) == 0
    assert time.monotonic() - started < 5 and not user.socket.exists()

    third = await connect_or_start(
        user.socket, state_dir=user.state, config_path=None, start=True
    )  # and SIGTERM put it back in the queue: an auto-started engine finishes it
    assert third is not None
    try:
        seen = await Recorder.subscribe(third)
        assert _status(seen, entry.id) in (EntryStatus.QUEUED, EntryStatus.RUNNING)
        await until_done(seen, entry.id)
    finally:
        pid = third.server.pid
        await third.shutdown()
        assert pid is not None
        await until(lambda: gone(pid), "the auto-started engine to exit", 5)


def _status(seen: Recorder, entry_id: int) -> EntryStatus | None:
    entry = seen.entry(entry_id)
    return entry.status if entry is not None else None


async def until_done(seen: Recorder, entry_id: int) -> QueueEntry:
    """Wait for an entry to finish; a failure ends the test with the entry's error."""

    def ended() -> bool:
        entry = seen.entry(entry_id)
        assert entry is None or entry.status is not EntryStatus.FAILED, entry.error
        return entry is not None and entry.status is EntryStatus.DONE

    await until(ended, f"entry {entry_id} to finish", 60)
    done = seen.entry(entry_id)
    assert done is not None and Path(done.output).is_file()
    return done


async def test_serve_refuses_a_second_engine_and_status_summarises_the_first(
    user: User, short_dir: Path
) -> None:
    code, _, err = await user.run("status")
    assert code == 1 and "no engine is running" in err

    engine = await user.serve()
    assert stat.S_IMODE(user.socket.stat().st_mode) == 0o600
    assert stat.S_IMODE(user.socket.parent.stat().st_mode) == 0o700

    code, _, err = await user.run("serve")
    assert code == 1 and err.strip().count("\n") == 0
    assert f"an engine is already running on {user.socket} (pid {engine.pid})" in err
    code, _, err = await user.run("serve", "--socket", str(short_dir / "other.sock"))
    assert code == 1 and "the state folder" in err and err.strip().count("\n") == 0

    client = await EngineClient.connect(user.socket)
    await client.set_flag("crop_detection", "off")
    await client.pause()
    await client.close()
    code, out, _ = await user.run("status")
    assert code == 0, out
    assert f"pid {engine.pid}, on {user.socket}" in out
    assert "queue      empty, paused" in out
    assert "flags      crop_detection off (live)" in out
    code, out, _ = await user.run("status", "--json")
    assert code == 0 and json.loads(out)["paused"] is True

    started = time.monotonic()
    engine.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(engine.wait(), 5) == 0
    assert time.monotonic() - started < 5
    assert not user.socket.exists()


async def test_plain_status_says_why_an_entry_failed_and_that_an_interrupted_one_resumes(
    user: User, make_media: Callable[..., Path], tmp_path: Path
) -> None:
    video = make_media("clip.mkv", size=(64, 64), duration=1)
    broken = tmp_path / "broken.mkv"
    broken.write_bytes(b"not a video at all\n" * 100)
    await user.serve()
    client = await EngineClient.connect(user.socket)
    seen = await Recorder.subscribe(client)
    await client.pause()
    kept = await add_one(client, video, tmp_path / "out")
    await client.interrupt([kept.id])
    failed = await add_one(client, broken, tmp_path / "out")
    await client.resume()

    def ended() -> bool:
        entry = seen.entry(failed.id)
        return entry is not None and entry.status is EntryStatus.FAILED

    await until(ended, "the broken file's entry to fail", 30)
    error = seen.entry(failed.id).error  # type: ignore[union-attr]
    assert error and "broken.mkv" in error
    await client.close()
    code, out, _ = await user.run("status")
    assert code == 0, out
    assert "1 failed, 1 cancelled" in out, out
    assert f"#{failed.id} broken.mkv failed: {error}" in out, out
    assert f"#{kept.id} clip.mkv cancelled: interrupted: the next run resumes" in out, out
