"""Connect to the running engine, or start one in the background and connect to it.

A started engine is `drapto serve` in a new session (setsid): no controlling terminal
and its own process group, so closing the terminal or a SIGHUP to the caller's group
does not reach it. Its stdout and stderr go to `<state dir>/logs/engine-output.log`.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from drapto_engine.core.errors import DraptoError
from drapto_engine.infrastructure import paths
from drapto_engine.server.client import EngineClient, EngineUnavailable
from drapto_engine.server.location import default_socket

__all__ = ["connect_or_start", "default_socket", "start_engine"]

START_TIMEOUT_S = 10.0
POLL_S = 0.05
OUTPUT_LOG = "engine-output.log"

_started: list[subprocess.Popen[bytes]] = []
"""Engines started by this process, kept so Python does not warn that a child it
never waited for is still running: outliving us is what they are for."""


async def connect_or_start(
    socket_path: Path | None,
    *,
    state_dir: Path | None,
    config_path: Path | None,
    start: bool,
    client_name: str = "drapto",
) -> EngineClient | None:
    """A client of the engine on `socket_path` (default: default_socket()). When none
    runs: None, or with `start`, a new engine's client once it accepts (at most 10 s)."""
    path = socket_path or default_socket()
    try:
        return await EngineClient.connect(path, client_name=client_name)
    except EngineUnavailable:
        if not start:
            return None
    process, output = start_engine(path, state_dir=state_dir, config_path=config_path)
    return await _wait_for(path, process, output, client_name)


def start_engine(
    socket_path: Path, *, state_dir: Path | None, config_path: Path | None
) -> tuple[subprocess.Popen[bytes], Path]:
    """Start `drapto serve` detached; returns it and the file its output goes to."""
    state = (state_dir or paths.state_dir()).absolute()
    logs = state / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    output = logs / OUTPUT_LOG
    argv = [sys.executable, "-m", "drapto_engine.cli"]
    if config_path is not None:
        argv += ["--config", str(config_path.absolute())]
    argv += ["serve", "--socket", str(socket_path.absolute()), "--state-dir", str(state)]
    with output.open("ab") as sink:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            cwd="/",  # a long-lived process must not hold the caller's folder (or mount)
        )
    _started.append(process)
    return process, output


async def _wait_for(
    path: Path, process: subprocess.Popen[bytes], output: Path, client_name: str
) -> EngineClient:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_TIMEOUT_S
    while True:
        try:
            return await EngineClient.connect(path, client_name=client_name)
        except EngineUnavailable:
            pass
        if process.poll() is not None:
            # It exited; if another caller's engine won the race for the socket, use that.
            try:
                return await EngineClient.connect(path, client_name=client_name)
            except EngineUnavailable:
                raise DraptoError(
                    f"the engine did not start: {last_line(output)}", output
                ) from None
        if loop.time() > deadline:
            raise DraptoError(
                f"the engine did not accept connections within {START_TIMEOUT_S:g} s",
                path,
                hint=f"see {output}",
            )
        await asyncio.sleep(POLL_S)


def last_line(path: Path) -> str:
    """The last thing a failed engine said (its one-line error)."""
    try:
        with path.open("rb") as f:
            f.seek(max(0, f.seek(0, 2) - 4096))
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return "no output"
    text = next((line for line in reversed(lines) if line.strip()), "no output")
    return text.removeprefix("drapto: ")
