"""`drapto serve --cluster`: the engine process hosting the scheduler beside its socket,
a real `drapto worker` joining it, `drapto status` listing that worker, a clean stop;
and the one-line refusals of cluster options that cannot work."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from forked import run_forked, warm_imports

pytest.importorskip("distributed", reason="the cluster extra (distributed) is not installed")
pytest.importorskip("cryptography", reason="the cluster extra (cryptography) is not installed")

DRAPTO = [sys.executable, "-m", "drapto_engine.cli"]


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    short = Path(tempfile.mkdtemp(prefix="drc-", dir="/tmp"))  # socket paths must be short
    environment = {
        **os.environ,
        "XDG_RUNTIME_DIR": str(short),
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }
    environment.pop("DRAPTO_STATE_DIR", None)
    yield environment
    shutil.rmtree(short, ignore_errors=True)


def drapto(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*DRAPTO, *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


def refused(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`drapto ARGS` that must stop before it serves, forked from the test process
    (forked.py: a real process without a fresh interpreter's imports)."""
    warm_imports()
    return run_forked(args, Path.cwd(), env, timeout=120)


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def test_cluster_options_that_cannot_work_are_refused_in_one_line(
    env: dict[str, str],
) -> None:
    for args, words in (
        (["--workers", "0"], ("--workers 0", "only goes with --cluster")),
        (["--insecure"], ("--insecure", "only goes with --cluster")),
        (["--cluster", "tcp://0.0.0.0:8786"], ("--insecure",)),
        (["--cluster", "tls://127.0.0.1:0"], ("drapto cluster init",)),
    ):
        done = refused(env, "serve", *args)
        assert done.returncode == 2, (args, done.stderr)
        line = one_line(done.stderr)
        assert all(word in line for word in words), line


def test_the_config_files_cluster_section_is_read_and_checked(env: dict[str, str]) -> None:
    config = Path(env["XDG_CONFIG_HOME"]) / "drapto" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text('[cluster]\nlisten = "tcp://0.0.0.0:8786"\n')
    done = refused(env, "serve")
    assert done.returncode == 2
    assert "--insecure" in one_line(done.stderr)  # the configured address is checked
    config.write_text('[cluster]\nlisen = "tls://0.0.0.0:8786"\n')
    done = refused(env, "serve")
    assert done.returncode == 2
    assert "listen" in done.stderr and "Traceback" not in done.stderr


class Lines:
    """A process's stderr, read by a thread so that the test can wait on a line."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        assert process.stderr is not None
        stream = process.stderr
        self.thread = threading.Thread(target=lambda: self.lines.extend(stream), daemon=True)
        self.thread.start()

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                found = re.search(pattern, line)
                if found:
                    return found
            time.sleep(0.1)
        raise AssertionError(f"no line matching {pattern!r} in {self.lines}")


def test_serve_hosts_the_scheduler_and_status_lists_its_workers(env: dict[str, str]) -> None:
    assert drapto(env, "cluster", "init").returncode == 0
    serve = subprocess.Popen(
        [*DRAPTO, "serve", "--cluster", "tls://127.0.0.1:0", "--workers", "0"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    worker: subprocess.Popen[str] | None = None
    try:
        lines = Lines(serve)
        address = lines.wait_for(r"cluster scheduler on (tls://127\.0\.0\.1:\d+)", 120).group(1)
        worker = subprocess.Popen(
            [*DRAPTO, "worker", address, "--slots", "1", "--name", "w-one"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 120
        status = ""
        while "w-one on" not in status:
            assert time.monotonic() < deadline, status
            time.sleep(0.5)
            status = drapto(env, "status").stdout
        assert f"cluster    {address}, 1 worker\n" in status
        assert re.search(r"w-one on \S+: 1 slot, 0 running, CPU \d+%, RAM [\d.]+ of", status)
        # --workers 0: no encoder here while a worker is there, however many cores
        assert re.search(
            r"\nworkers    0 here while a cluster worker is connected \(\d+ when none is\)\n",
            status,
        ), status
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(60) == 0
        lines.thread.join(10)
        # its own lines only: Dask's logging goes to the engine's log file
        assert all(line.startswith("drapto: ") for line in lines.lines), lines.lines
        # a worker does not outlive its engine: exit 3, one line
        assert worker.wait(60) == 3
        assert worker.stderr is not None
        assert "lost the engine" in one_line(worker.stderr.read())
        assert worker.stdout is not None
        assert f"joined {address} with 1 encoder slot\n" in worker.stdout.read()
    finally:
        for process in (serve, worker):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
