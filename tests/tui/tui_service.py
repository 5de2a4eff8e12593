"""A real engine service in its own runtime and state folders."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from drapto_engine.server.client import EngineClient


@dataclass
class Service:
    socket: Path
    state: Path
    process: subprocess.Popen[bytes]

    async def client(self, name: str = "test") -> EngineClient:
        return await EngineClient.connect(self.socket, client_name=name)

    def alive(self) -> bool:
        return self.process.poll() is None


def start_service(root: Path, config_text: str = "") -> Service:
    """`drapto serve` with 2 workers and preset 12; `config_text` goes first in its
    config file (top-level settings)."""
    runtime = root / "run"
    runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
    socket, state = runtime / "engine.sock", root / "state"
    config = root / "engine.toml"
    config.write_text(f"{config_text}\n[defaults]\npreset = 12\n")  # fast, added by the TUI too
    process = subprocess.Popen(
        [sys.executable, "-m", "drapto_engine.cli", "--config", str(config), "serve",
         "--socket", str(socket),
         "--state-dir", str(state), "--workers", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while not socket.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the engine service did not start")
        time.sleep(0.05)
    return Service(socket, state, process)
