"""Clients of the engine service never report success that did not happen.

Real `drapto serve`, real `drapto --batch` and `drapto encode` clients, real signals:
an engine killed under its clients (exit 3, jobs listed as interrupted), a client
stopped by the user (the engine stops that client's encoders, the next run resumes),
`drapto encode` going through a running engine, `--detach`, and unreadable files in
a queued folder counted as failures. Every wait polls a condition against a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import psutil
import pytest
from encode_helpers import inspect
from forked import run_forked, warm_imports
from test_batch import Inbox

from drapto_engine.server.client import EngineClient
from drapto_engine.server.location import answers

pytestmark = pytest.mark.slow

DRAPTO = [sys.executable, "-m", "drapto_engine.cli"]
START_S = 30.0
SEGMENTS = "min_segment_s = 1.0\nmax_segment_s = 1.5\n"


def until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)


class Lines:
    """A client's stdout read by a thread; JSON events parsed, other lines kept."""

    def __init__(self, stream: TextIO) -> None:
        self.seen: list[dict[str, Any]] = []
        self.text: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: TextIO) -> None:
        for line in stream:
            self._queue.put(line)
        self._queue.put(None)

    def wait(self, match: Callable[[dict[str, Any]], bool], what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {what}; output: {self.text[-5:]}")
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"the client ended before {what}; output: {self.text[-5:]}")
            self.text.append(line)
            event = json.loads(line) if line.startswith("{") else {}
            self.seen.append(event)
            if match(event):
                return


def encoders_of(pid: int) -> list[psutil.Process]:
    """ffmpeg processes below `pid` (the encoders an engine or client started)."""
    found = []
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    for child in children:
        try:
            if "ffmpeg" in child.name() and child.status() != psutil.STATUS_ZOMBIE:
                found.append(child)
        except psutil.NoSuchProcess:
            pass
    return found


@dataclass
class User:
    """One user's XDG folders (a short runtime folder: socket paths are limited)."""

    env: dict[str, str]
    socket: Path
    state: Path
    home: Path
    started: list[subprocess.Popen[str]] = field(default_factory=list)
    orphans: list[psutil.Process] = field(default_factory=list)

    def serve(self, *extra: str, config: Path | None = None) -> subprocess.Popen[str]:
        chosen = ["--config", str(config)] if config else []
        engine = subprocess.Popen(
            [*DRAPTO, *chosen, "serve", *extra], env=self.env, stderr=subprocess.PIPE, text=True
        )
        self.started.append(engine)
        deadline = time.monotonic() + START_S
        while not answers(self.socket):
            assert engine.poll() is None and time.monotonic() < deadline, "drapto serve failed"
            time.sleep(0.05)
        return engine

    def client(self, *args: str) -> tuple[subprocess.Popen[str], Lines]:
        process = subprocess.Popen(
            [*DRAPTO, *args],
            env=self.env,
            cwd=self.home,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.started.append(process)
        assert process.stdout is not None
        return process, Lines(process.stdout)

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """`drapto ARGS` to its end, forked (forked.py: a real process without a fresh
        interpreter's imports); clients signalled while they run are `client`'s."""
        warm_imports()
        return run_forked(args, self.home, self.env, timeout)

    def snapshot(self) -> dict[str, Any]:
        status = self.run("status", "--json", timeout=30)
        assert status.returncode == 0, status.stderr
        return json.loads(status.stdout)  # type: ignore[no-any-return]

    def summary(self) -> list[dict[str, Any]]:
        data = json.loads((self.state / "last-batch.json").read_text())
        return data["jobs"]  # type: ignore[no-any-return]


@contextlib.contextmanager
def user_in(home: Path, prefix: str = "drc-") -> Iterator[User]:
    """A user with its own XDG folders under `home` and a short runtime folder (socket
    paths are limited); whatever it started, encoders included, is killed at the end."""
    runtime = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    env = {
        **os.environ,
        "XDG_RUNTIME_DIR": str(runtime),
        "XDG_STATE_HOME": str(home / "xdg-state"),
        "XDG_CONFIG_HOME": str(home / "xdg-config"),
    }
    env.pop("DRAPTO_STATE_DIR", None)
    user = User(env, runtime / "drapto" / "engine.sock", home / "xdg-state" / "drapto", home)
    try:
        yield user
    finally:
        for process in user.started:
            user.orphans += encoders_of(process.pid)
            if process.poll() is None:
                process.kill()
                process.wait()
        for orphan in user.orphans:  # encoders of a SIGKILLed engine outlive it
            with contextlib.suppress(psutil.NoSuchProcess):
                orphan.kill()
        shutil.rmtree(runtime, ignore_errors=True)


@pytest.fixture
def user(tmp_path: Path) -> Iterator[User]:
    with user_in(tmp_path) as made:
        yield made


def one_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


def queue_file(folder: Path, *inputs: str, extra: str = "") -> Path:
    jobs = "".join(f'[[job]]\ninput = "{name}"\n' for name in inputs)
    path = folder / "queue.toml"
    path.write_text(f"[defaults]\npreset = 12\n{SEGMENTS}{extra}{jobs}")
    return path


def finished_segments(out: Lines) -> set[tuple[str, int]]:
    return {(e["job"], e["index"]) for e in out.seen if e.get("type") == "segment_done"}


def encodes(user: User) -> dict[tuple[str, int], int]:
    """How many times each segment was encoded, from the engine's own state."""
    with sqlite3.connect(user.state / "drapto.db") as db:
        rows = db.execute("SELECT job_id, idx, encodes FROM segments").fetchall()
    return {(job, index): count for job, index, count in rows}


def assert_resumed(user: User, finished: set[tuple[str, int]]) -> None:
    """The rerun encoded again none of the segments finished before the stop."""
    assert finished
    counts = encodes(user)
    assert all(counts[key] == 1 for key in finished), counts


# -- the engine dies under its clients --


def test_a_batch_client_whose_engine_is_killed_exits_3_and_a_rerun_resumes(
    user: User, make_media: Callable[..., Path], tmp_path: Path
) -> None:
    make_media("a.mkv", size=(320, 240), duration=8, gop=25)
    make_media("b.mkv", size=(128, 72), duration=2, gop=25)
    batch = queue_file(tmp_path, "a.mkv", "b.mkv")
    engine = user.serve("--workers", "1")
    client, out = user.client("--batch", str(batch), "--progress", "json")
    out.wait(lambda e: e.get("type") == "segment_done", "a finished segment", 120)
    user.orphans += encoders_of(engine.pid)
    finished = finished_segments(out)

    engine.kill()
    killed = time.monotonic()
    engine.wait()  # reaped, as a shell or systemd would: a zombie still holds its locks
    code = client.wait(timeout=30)
    assert time.monotonic() - killed < 5  # noticed at once, not at some timeout
    assert client.stderr is not None
    line = one_line(client.stderr.read())
    assert code == 3, line
    assert str(batch) in line and "lost the engine" in line and "interrupted" in line
    rows = user.summary()
    assert [(Path(r["input"]).name, r["status"]) for r in rows] == [
        ("a.mkv", "interrupted"),
        ("b.mkv", "interrupted"),
    ]

    user.serve("--workers", "1")
    again = user.run("--batch", str(batch), "--progress", "json")
    assert again.returncode == 0, again.stderr + again.stdout[-3000:]
    assert_resumed(user, finished)
    # the restarted engine resumes its queue at once: b may be finished before we ask
    assert {r["status"] for r in user.summary()} <= {"done", "skipped"}
    assert inspect(tmp_path / "a.av1.mkv", decode=False).of("video")[0].packets == 200
    assert (tmp_path / "b.av1.mkv").is_file()


def test_an_encode_through_an_engine_that_is_killed_exits_3(
    user: User, make_media: Callable[..., Path], tmp_path: Path
) -> None:
    make_media("a.mkv", size=(320, 240), duration=8, gop=25)
    engine = user.serve("--workers", "1")
    client, out = user.client(
        "encode", "a.mkv", "--preset", "12", "--progress", "json", "--min-segment", "1",
        "--max-segment", "1.5",
    )  # fmt: skip
    out.wait(lambda e: e.get("type") == "segment_started", "an encoder to start", 120)
    user.orphans += encoders_of(engine.pid)
    engine.kill()
    engine.wait()
    code = client.wait(timeout=30)
    assert client.stderr is not None
    line = one_line(client.stderr.read())
    assert code == 3, line
    assert "a.mkv" in line and "lost the engine" in line
    assert not (tmp_path / "a.av1.mkv").exists()


# -- a client stopped by its user stops its jobs in the engine --


def test_ctrl_c_on_a_batch_client_stops_its_encoders_in_the_engine_and_a_rerun_resumes(
    user: User, make_media: Callable[..., Path], tmp_path: Path
) -> None:
    make_media("a.mkv", size=(320, 240), duration=8, gop=25)
    make_media("b.mkv", size=(128, 72), duration=2, gop=25)
    batch = queue_file(tmp_path, "a.mkv", "b.mkv")
    engine = user.serve("--workers", "1")
    client, out = user.client("--batch", str(batch), "--progress", "json")
    out.wait(lambda e: e.get("type") == "segment_done", "a finished segment", 120)
    until(lambda: bool(encoders_of(engine.pid)), "an encoder in the engine", 60)
    encoders = encoders_of(engine.pid)
    assert not encoders_of(client.pid)  # the engine encodes, not the client
    finished = finished_segments(out)

    client.send_signal(signal.SIGINT)
    assert client.wait(timeout=30) == 128 + signal.SIGINT
    assert client.stderr is not None
    line = one_line(client.stderr.read())
    assert "stopped by SIGINT" in line and "the engine stopped its encoders" in line
    psutil.wait_procs(encoders, timeout=5)
    assert not [p for p in encoders if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not encoders_of(engine.pid)
    assert engine.poll() is None  # the engine itself goes on serving
    entries = user.snapshot()["entries"]
    assert [(e["status"], e["note"]) for e in entries] == [
        ("cancelled", "interrupted: the next run resumes")
    ] * 2
    assert [r["status"] for r in user.summary()] == ["interrupted", "interrupted"]
    deadline = time.monotonic() + 1.5  # nothing of the batch starts again on its own
    while time.monotonic() < deadline:
        assert not encoders_of(engine.pid)
        time.sleep(0.05)

    again = user.run("--batch", str(batch), "--progress", "json")
    assert again.returncode == 0, again.stderr
    assert_resumed(user, finished)
    assert [r["status"] for r in user.summary()] == ["done", "done"]
    assert inspect(tmp_path / "a.av1.mkv", decode=False).of("video")[0].packets == 200


def test_encode_goes_through_a_running_engine_and_sigterm_stops_its_encoders(
    user: User, make_media: Callable[..., Path], tmp_path: Path
) -> None:
    make_media("a.mkv", size=(320, 240), duration=8, gop=25)
    engine = user.serve("--workers", "1")
    argv = (
        "encode", "a.mkv", "-o", "out/a.mkv", "--preset", "12", "--progress", "json",
        "--min-segment", "1", "--max-segment", "1.5",
    )  # fmt: skip
    (tmp_path / "out").mkdir()
    client, out = user.client(*argv)
    out.wait(lambda e: e.get("type") == "segment_done", "a finished segment", 120)
    until(lambda: bool(encoders_of(engine.pid)), "an encoder in the engine", 60)
    assert not encoders_of(client.pid)
    encoders = encoders_of(engine.pid)
    finished = finished_segments(out)

    client.send_signal(signal.SIGTERM)
    assert client.wait(timeout=30) == 128 + signal.SIGTERM
    assert client.stderr is not None
    assert "stopped by SIGTERM" in one_line(client.stderr.read())
    psutil.wait_procs(encoders, timeout=5)
    assert not encoders_of(engine.pid)
    [entry] = user.snapshot()["entries"]
    assert entry["status"] == "cancelled" and entry["input"] == str(tmp_path / "a.mkv")
    assert entry["output"] == str(tmp_path / "out" / "a.mkv")
    assert not (tmp_path / "out" / "a.mkv").exists()

    again = user.run(*argv)
    assert again.returncode == 0, again.stderr
    assert_resumed(user, finished)
    assert inspect(tmp_path / "out" / "a.mkv", decode=False).of("video")[0].packets == 200
    entries = user.snapshot()["entries"]
    assert [e["status"] for e in entries] == ["cancelled", "done"]  # both through the engine

    small = make_media("small.mkv", size=(64, 64), duration=1)
    local = user.run("encode", str(small), "--preset", "12", "--no-daemon", "--progress", "json")
    assert local.returncode == 0, local.stderr
    assert (tmp_path / "small.av1.mkv").is_file()
    assert len(user.snapshot()["entries"]) == 2  # --no-daemon did not use the engine


# -- detached batches --


def test_a_detached_batch_returns_at_once_and_status_follows_it(
    user: User, make_media: Callable[..., Path], tmp_path: Path
) -> None:
    make_media("a.mkv", size=(128, 72), duration=3, gop=25)
    make_media("b.mkv", size=(128, 72), duration=2, gop=25)
    batch = queue_file(tmp_path, "a.mkv", "b.mkv")
    user.serve("--workers", "1")
    asyncio.run(engine_call(user.socket, "pause"))  # so that status sees the batch waiting
    detached = user.run("--batch", str(batch), "--detach", timeout=60)
    assert detached.returncode == 0, detached.stderr
    label = detached.stdout.splitlines()[0].removeprefix("batch: ")
    assert label.startswith("queue.toml@") and "2 jobs handed to the engine" in detached.stdout
    assert "the engine is paused" in detached.stdout

    status = user.run("status", timeout=30)
    assert status.returncode == 0
    assert f"  {label}: 2 jobs, 2 queued" in status.stdout.splitlines()
    asyncio.run(engine_call(user.socket, "resume"))

    def finished() -> bool:
        return [e["status"] for e in user.snapshot()["entries"]] == ["done", "done"]

    until(finished, "the detached batch to finish in the engine", 180)
    assert (tmp_path / "a.av1.mkv").is_file() and (tmp_path / "b.av1.mkv").is_file()
    assert label not in user.run("status", timeout=30).stdout  # finished batches drop out


def test_a_detached_encode_starts_an_engine_when_none_runs(
    user: User, make_media: Callable[..., Path], tmp_path: Path
) -> None:
    make_media("small.mkv", size=(64, 64), duration=1)
    assert not answers(user.socket)
    detached = user.run("encode", "small.mkv", "--preset", "12", "--detach", timeout=60)
    assert detached.returncode == 0, detached.stderr
    pid = int(detached.stdout.split("(pid ")[1].split(")")[0])
    try:
        assert answers(user.socket) and str(tmp_path / "small.av1.mkv") in detached.stdout

        def finished() -> bool:
            return [e["status"] for e in user.snapshot()["entries"]] == ["done"]

        until(finished, "the detached encode to finish in the engine", 120)
        assert inspect(tmp_path / "small.av1.mkv", decode=False).of("video")[0].packets == 25
    finally:
        asyncio.run(engine_call(user.socket, "shutdown"))
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.wait_procs([psutil.Process(pid)], timeout=10)
        assert not psutil.pid_exists(pid), "the auto-started engine did not stop"


async def engine_call(socket: Path, method: str) -> None:
    client = await EngineClient.connect(socket, client_name="test")
    try:
        await getattr(client, method)()
    finally:
        await client.close()


# -- unreadable files in a queued folder --


@pytest.mark.parametrize("where", ["in-process", "engine"])
def test_unreadable_videos_in_a_folder_fail_the_batch_and_other_files_are_ignored(
    user: User, make_media: Callable[..., Path], tmp_path: Path, where: str
) -> None:
    inbox = Inbox()
    try:
        lib = tmp_path / "lib"
        make_media("lib/good.mkv", size=(64, 64), duration=1)
        (lib / "junk.mkv").write_bytes(random.Random(7).randbytes(4096))  # fixed: random
        # bytes now and then parse as some container with no video stream, a different refusal
        (lib / "gone.mp4").symlink_to(lib / "deleted.mp4")
        os.mkfifo(lib / "pipe.mkv")  # reading it would block forever
        for name in ("movie.nfo", "cover.jpg", "good.srt"):
            (lib / name).write_text("not a video, not our business")
        config = tmp_path / "config.toml"
        config.write_text(f'notify_url = "{inbox.url}"\n')
        batch = queue_file(tmp_path, "lib")
        extra = ["--no-daemon"] if where == "in-process" else []
        if where == "engine":
            user.serve(config=config)
        run = user.run("--config", str(config), "--batch", str(batch), *extra)
        assert run.returncode == 1, run.stderr + run.stdout
        assert "Traceback" not in run.stderr
        rows = {Path(r["input"]).name: r for r in user.summary()}
        assert {name: r["status"] for name, r in rows.items()} == {
            "good.mkv": "done",
            "gone.mp4": "failed",
            "junk.mkv": "failed",
            "pipe.mkv": "failed",
        }
        assert "broken link" in rows["gone.mp4"]["note"]
        assert "not a readable media file" in rows["junk.mkv"]["note"]
        assert "not a regular file" in rows["pipe.mkv"]["note"]
        table = run.stdout[run.stdout.index("status ") :]
        assert table.count("\nfailed ") == 3 and "broken link" in table
        for name in ("movie.nfo", "cover.jpg", "good.srt"):
            assert name not in run.stdout + run.stderr
        until(lambda: any("batch finished" in t for t, _ in inbox.received), "the notice", 10)
        finished = next(body for title, body in inbox.received if "batch finished" in title)
        assert "1 of 4 jobs done or skipped, 3 failed" in finished
    finally:
        inbox.server.shutdown()
