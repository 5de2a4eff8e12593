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


def start_service(root: Path) -> Service:
    runtime = root / "run"
    runtime.mkdir(mode=0o700, exist_ok=True)
    socket, state = runtime / "engine.sock", root / "state"
    process = subprocess.Popen(
        [sys.executable, "-m", "drapto_engine.cli", "serve", "--socket", str(socket),
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
