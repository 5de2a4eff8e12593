"""Clients trust only an engine of their own user, and say so when one dies on them.

A local stranger who creates the socket's folder first (without XDG_RUNTIME_DIR it is
the predictable `$TMPDIR/drapto-<uid>`, /tmp by default) and listens there must get no
request: every client checks the folder (owned by its user, writable by nobody else)
and the peer's uid (SO_PEERCRED) before it sends anything, and refuses with one line.
As root (CI) the stranger is a real process of uid 65534; as another user, the folder
half uses a folder open to all and the uid half a real peer compared with another uid.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from forked import run_forked, warm_imports

from drapto_engine.core.errors import DraptoError
from drapto_engine.server import location

NOBODY = 65534
ROOT = os.geteuid() == 0
PYTHON = shutil.which("python3", path="/usr/bin:/bin") or sys.executable
"""A Python the stranger may run (this one may live in root's private home)."""

FAKE_ENGINE = r"""
import json, os, signal, socket, sys
path, record, mode = sys.argv[1], sys.argv[2], sys.argv[3]
os.makedirs(os.path.dirname(path), mode=0o777, exist_ok=True)
listener = socket.socket(socket.AF_UNIX)
listener.bind(path)
os.chmod(path, 0o666)
listener.listen()
print("listening", flush=True)
while True:
    conn, _ = listener.accept()
    with conn, conn.makefile("rwb") as stream:
        with open(record, "ab") as log:
            log.write(b"connection\n")
        for line in stream:
            with open(record, "ab") as log:
                log.write(line)
            message = json.loads(line)
            if message.get("type") == "hello":
                answer = {"type": "hello", "protocol": "1.1", "name": "drapto 9", "pid": os.getpid()}
            elif mode == "die":
                os.kill(os.getpid(), signal.SIGKILL)
            else:
                answer = {"type": "reply", "id": message.get("id"), "result": None}
            stream.write(json.dumps(answer).encode() + b"\n")
            stream.flush()
"""
"""Answers like an engine (hello, then "ok" to every request, or dies at the first
request with `die`) and writes down everything it receives."""


@dataclass
class Fake:
    process: subprocess.Popen[str]
    record: Path

    def received(self) -> list[str]:
        if not self.record.exists():
            return []
        return self.record.read_text().splitlines()


def start_fake(path: Path, record: Path, mode: str = "ok", *, stranger: bool) -> Fake:
    """A fake engine on `path`; with `stranger` (root only) it runs as uid 65534."""
    as_user = {"user": NOBODY, "group": NOBODY, "extra_groups": []} if stranger else {}
    process = subprocess.Popen(
        [PYTHON, "-I", "-c", FAKE_ENGINE, str(path), str(record), mode],
        stdout=subprocess.PIPE,
        text=True,
        cwd="/",
        **as_user,  # type: ignore[call-overload]
    )
    assert process.stdout is not None and process.stdout.readline() == "listening\n"
    return Fake(process, record)


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A short folder every user may create in, like /tmp (sticky, 1777)."""
    base = Path(tempfile.mkdtemp(prefix="drt-", dir="/tmp"))
    base.chmod(0o1777)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def victim_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("XDG_RUNTIME_DIR", "DRAPTO_STATE_DIR", "TMPDIR"):
        env.pop(name, None)
    return env | {
        "XDG_STATE_HOME": str(tmp_path / "xdg-state"),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg-config"),
        **extra,
    }


def one_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


def test_a_planted_engine_gets_no_request_from_any_client(
    shared_tmp: Path, tmp_path: Path, make_media: Callable[..., Path]
) -> None:
    make_media("small.mkv", size=(64, 64), duration=1)
    (tmp_path / "queue.toml").write_text('[defaults]\npreset = 12\n[[job]]\ninput = "small.mkv"\n')
    planted = shared_tmp / f"drapto-{os.getuid()}"
    if not ROOT:  # the victim's own folder, but open to everyone: anyone may listen in it
        planted.mkdir(mode=0o777)
        planted.chmod(0o777)
    fake = start_fake(planted / "engine.sock", shared_tmp / "record", stranger=ROOT)
    env = victim_env(tmp_path, TMPDIR=str(shared_tmp))
    owner = f"its folder {planted} is owned by uid {NOBODY}, not you"
    problem = owner if ROOT else f"its folder {planted} is writable by other users"
    warm_imports()
    try:
        for argv in (
            ["encode", "small.mkv", "--preset", "12"],
            ["encode", "small.mkv", "--preset", "12", "--detach"],
            ["--batch", "queue.toml"],
            ["--batch", "queue.toml", "--detach"],
            ["status"],
        ):
            done = run_forked(argv, tmp_path, env, timeout=60)
            assert done.returncode == 1, (argv, done.stdout, done.stderr)
            line = one_line(done.stderr)
            assert line.startswith(f"drapto: refusing the engine socket {planted}/engine.sock: ")
            assert problem in line, line
            assert all(entry == "connection" for entry in fake.received()), fake.received()
        assert fake.received() == []  # the folder is refused before connecting
        assert not (tmp_path / "small.av1.mkv").exists()
        assert not (planted / "engine.sock.lock").exists()  # no engine was started into it
        assert not (tmp_path / "xdg-state" / "drapto" / "logs" / "engine-output.log").exists()
    finally:
        fake.process.kill()
        fake.process.wait()


@pytest.mark.skipif(not ROOT, reason="a peer of another uid in a folder of ours needs root")
def test_an_engine_of_another_uid_is_refused_even_in_a_private_folder_of_ours(
    shared_tmp: Path, tmp_path: Path
) -> None:
    folder = shared_tmp / f"drapto-{os.getuid()}"
    folder.mkdir()
    folder.chmod(0o1777)
    fake = start_fake(folder / "engine.sock", shared_tmp / "record", stranger=True)
    folder.chmod(0o700)  # now a folder the check passes; the listener is still the stranger
    try:
        done = run_forked(["status"], tmp_path, victim_env(tmp_path, TMPDIR=str(shared_tmp)))
        assert done.returncode == 1, done.stderr
        assert one_line(done.stderr) == (
            f"drapto: refusing the engine socket {folder}/engine.sock: the engine on it runs"
            f" as uid {NOBODY}, not you (stop that process or remove the socket)"
        )
        assert fake.received() == ["connection"]  # connected, but not a byte sent
    finally:
        fake.process.kill()
        fake.process.wait()


def test_the_peer_check_reads_the_real_peer_and_compares_its_uid(tmp_path: Path) -> None:
    path = tmp_path / "engine.sock"
    with socket.socket(socket.AF_UNIX) as listener, socket.socket(socket.AF_UNIX) as client:
        listener.bind(str(path))
        listener.listen()
        client.connect(str(path))
        assert location.peer_uid(client) == os.getuid()
        location.check_peer(client, path)  # our own: fine
        with pytest.raises(DraptoError) as refused:
            location.check_peer(client, path, expected_uid=os.getuid() + 1)
    assert refused.value.one_line() == (
        f"refusing the engine socket {path}: the engine on it runs as uid {os.getuid()},"
        " not you (stop that process or remove the socket)"
    )


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o1777])
def test_a_socket_folder_open_to_others_is_refused(tmp_path: Path, mode: int) -> None:
    folder = tmp_path / "open"
    folder.mkdir()
    folder.chmod(mode)
    with pytest.raises(DraptoError, match="writable by other users"):
        location.check_folder(folder / "engine.sock")
    with pytest.raises(DraptoError, match="writable by other users"):
        location.prepare_folder(folder)
    assert stat.S_IMODE(folder.stat().st_mode) == mode  # left as it was


def test_drapto_serve_refuses_a_socket_folder_open_to_others(
    shared_tmp: Path, tmp_path: Path
) -> None:
    folder = shared_tmp / f"drapto-{os.getuid()}"
    folder.mkdir()
    folder.chmod(0o777)
    env = victim_env(tmp_path, TMPDIR=str(shared_tmp))
    serve = subprocess.run(
        [sys.executable, "-m", "drapto_engine.cli", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert serve.returncode == 1, serve.stderr
    assert one_line(serve.stderr) == (
        f"drapto: refusing the engine socket {folder}/engine.sock: its folder {folder} is"
        " writable by other users (remove it, or chmod 700 it)"
    )
    assert stat.S_IMODE(folder.stat().st_mode) == 0o777 and list(folder.iterdir()) == []
    named = tmp_path / "shared"
    named.mkdir()
    named.chmod(0o770)
    option = subprocess.run(
        [sys.executable, "-m", "drapto_engine.cli", "serve", "--socket", str(named / "e.sock")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert option.returncode == 2, option.stderr
    assert "writable by other users" in one_line(option.stderr)
    assert list(named.iterdir()) == []


def test_a_detached_batch_whose_engine_dies_during_the_hand_over_exits_3(
    tmp_path: Path, make_media: Callable[..., Path]
) -> None:
    make_media("a.mkv", size=(64, 64), duration=1)
    (tmp_path / "queue.toml").write_text('[defaults]\npreset = 12\n[[job]]\ninput = "a.mkv"\n')
    runtime = Path(tempfile.mkdtemp(prefix="drd-", dir="/tmp"))
    path = runtime / "drapto" / "engine.sock"
    (runtime / "drapto").mkdir(mode=0o700)
    fake = start_fake(path, runtime / "record", "die", stranger=False)
    env = victim_env(tmp_path, XDG_RUNTIME_DIR=str(runtime))
    warm_imports()
    try:
        done = run_forked(["--batch", "queue.toml", "--detach"], tmp_path, env, timeout=60)
        deadline = time.monotonic() + 10
        while fake.process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert fake.process.returncode == -9, (fake.received(), done)
        requests = [json.loads(line).get("method") for line in fake.received()[2:]]
        assert requests == ["add_paths"], fake.received()
        assert done.returncode == 3, (done.stdout, done.stderr)
        assert done.stdout == ""  # no "handed to" claim
        line = one_line(done.stderr)
        assert line.startswith("drapto: queue.toml: lost the engine (pid "), line
    finally:
        fake.process.kill()
        fake.process.wait()
        shutil.rmtree(runtime, ignore_errors=True)
