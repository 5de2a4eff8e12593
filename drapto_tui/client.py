"""The TUI's only way to the engine: the engine service's client, seen through the
interface the app uses (EngineAPI plus the service's subscription and lifetime).

Every other module of drapto_tui imports nothing of drapto_engine but `core` (models,
events, the API) and what this module passes on: the config file (where it is, what it
says) and the ffmpeg that drapto uses (screenshots.py makes its sample video with it).
import-linter holds the TUI to this (the contracts in pyproject.toml)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Protocol

from drapto_engine.config import Config, load_config
from drapto_engine.core.api import EngineAPI, EngineSnapshot
from drapto_engine.core.errors import DraptoError
from drapto_engine.core.events import Event
from drapto_engine.infrastructure.ffmpeg.toolchain import find_toolchain
from drapto_engine.infrastructure.paths import config_file
from drapto_engine.server.autostart import connect_or_start

__all__ = [
    "CLIENT_NAME",
    "Config",
    "Connect",
    "EngineConnection",
    "config_file",
    "find_toolchain",
    "load_config",
    "service_connector",
]

CLIENT_NAME = "drapto-tui"


class EngineConnection(EngineAPI, Protocol):
    """What the TUI needs of drapto_engine.server.client.EngineClient."""

    async def subscribe(self) -> EngineSnapshot:
        """The engine's state now; every event after it comes through events()."""
        ...

    def events(self) -> AsyncIterator[Event]:
        """Events after subscribe(), in order; ends when the connection does."""
        ...

    async def shutdown(self) -> None:
        """Stop the engine (running jobs go back to the queue); returns once it has."""
        ...

    async def close(self) -> None:
        """Close this connection only: the engine runs on."""
        ...


Connect = Callable[[], Awaitable[EngineConnection]]
"""Opens a new connection (the app calls it at start and to reconnect)."""


def service_connector(config: Config, config_path: Path | None, *, start: bool = True) -> Connect:
    """Connects to the engine service named by the config, starting one in the
    background (detached: it outlives the TUI) when none runs and `start` is set."""

    async def connect() -> EngineConnection:
        client = await connect_or_start(
            config.socket_path,
            state_dir=None,
            config_path=config_path,
            start=start,
            client_name=CLIENT_NAME,
        )
        if client is None:
            raise DraptoError("no engine is running", config.socket_path)
        return client

    return connect
