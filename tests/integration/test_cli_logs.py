"""Where `drapto` logs, on real runs: short commands nowhere, runs one file each (the
newest 20 kept), the engine service one file rotated at 10 MiB.

The short commands run in children forked from the test process (forked.py: real processes
with their own logging set-up, without a fresh interpreter's imports)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from forked import run_forked, warm_imports

from drapto_engine.logging_setup import KEEP_RUN_LOGS, SERVICE_LOG_BYTES
from drapto_engine.server.location import answers

DRAPTO = [sys.executable, "-m", "drapto_engine.cli"]


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DRAPTO_FFMPEG", "DRAPTO_STATE_DIR")}
    env.update(XDG_STATE_HOME=str(home / "state"), XDG_CONFIG_HOME=str(home / "config"))
    env["XDG_RUNTIME_DIR"] = str(home / "run")
    return env


def drapto(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_forked(args, Path.cwd(), _env(home), timeout=120)


@pytest.fixture(scope="module", autouse=True)
def _imports_before_forking() -> None:
    warm_imports()


def logs(home: Path) -> Path:
    return home / "state" / "drapto" / "logs"


def test_short_commands_log_nowhere(tmp_path: Path, shared_media: Path) -> None:
    (tmp_path / "run").mkdir()
    for args, status in [
        (["--version"], 0),
        (["--help"], 0),
        (["encode", "--help"], 0),
        (["flags"], 0),
        (["config"], 0),
        (["status"], 1),  # no engine runs
        (["probe", str(shared_media / "counter.mp4")], 0),
        (["probe", str(tmp_path / "missing.mkv")], 1),
        (["encode", "x.mkv", "--preset", "99"], 2),  # refused while parsing
    ]:
        done = drapto(tmp_path, *args)
        assert done.returncode == status, (args, done.stderr)
        assert not logs(tmp_path).exists(), args
    debug = drapto(tmp_path, "--debug", "flags")  # --debug: stderr, still no file
    assert debug.returncode == 0 and "drapto_engine" in debug.stderr
    assert not logs(tmp_path).exists()


def test_runs_keep_the_newest_20_logs(tmp_path: Path) -> None:
    folder = logs(tmp_path)
    folder.mkdir(parents=True)
    old = [folder / f"drapto-20200101-0000{i:02d}-{100 + i}.log" for i in range(25)]
    for path in old:
        path.write_text(f"an old run {path.name}\n")
    (folder / "engine.log").write_text("the service's, not a run's\n")
    done = drapto(tmp_path, "encode", str(tmp_path / "missing.mkv"))  # a run: it logs
    assert done.returncode == 1, done.stderr
    kept = sorted(folder.glob("drapto-*.log"))
    assert len(kept) == KEEP_RUN_LOGS
    [mine] = [p for p in kept if p not in old]
    assert mine.name.startswith(time.strftime("drapto-%Y"))
    assert kept[:-1] == old[-(KEEP_RUN_LOGS - 1) :]  # the oldest six went
    assert not any(p.exists() for p in old[: 25 - (KEEP_RUN_LOGS - 1)])
    text = mine.read_text()
    assert "encode" in text and "no such file" in text  # the run and how it ended
    assert (folder / "engine.log").read_text() == "the service's, not a run's\n"


def test_the_service_log_rotates_at_10_mib(tmp_path: Path) -> None:
    short = Path(tempfile.mkdtemp(prefix="drl-", dir="/tmp"))  # socket paths: 107 bytes
    socket_path = short / "engine.sock"
    folder = logs(tmp_path)
    folder.mkdir(parents=True)
    full = b"x" * 99 + b"\n"
    with (folder / "engine.log").open("wb") as log:
        for _ in range(SERVICE_LOG_BYTES // len(full)):
            log.write(full)
    before = (folder / "engine.log").stat().st_size
    assert before >= SERVICE_LOG_BYTES - len(full)
    engine = subprocess.Popen(
        [*DRAPTO, "serve", "--socket", str(socket_path)],
        env=_env(tmp_path),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not answers(socket_path):
            if engine.poll() is not None or time.monotonic() > deadline:
                engine.kill()
                pytest.fail(f"drapto serve did not start: {engine.communicate()[1]!r}")
            time.sleep(0.05)
    finally:
        engine.send_signal(signal.SIGTERM)
        engine.communicate(timeout=30)
        shutil.rmtree(short, ignore_errors=True)
    assert engine.returncode == 0
    rotated = folder / "engine.log.1"
    assert rotated.stat().st_size == before  # the full file moved aside whole
    current = (folder / "engine.log").read_text()
    assert 0 < len(current) < SERVICE_LOG_BYTES and "serve" in current
    assert list(folder.glob("drapto-*.log")) == []  # the service writes no run log
