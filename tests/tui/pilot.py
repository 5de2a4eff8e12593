"""What the TUI tests share: a DraptoApp served by a recording (replay.py) and a wait
for a condition between Textual's redraws."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from replay import ReplayClient
from textual.pilot import Pilot

from drapto_tui.app import DraptoApp


def replay_app(
    tmp_path: Path,
    client: ReplayClient | None = None,
    *,
    theme: str = "drapto-dark",
    browse_root: Path | None = None,
) -> DraptoApp:
    """The app connected to `client` (the recording when None), its settings file in
    `tmp_path` naming a theme always (the default depends on $TERM)."""
    served = client if client is not None else ReplayClient()

    async def connect() -> ReplayClient:
        return served

    settings = tmp_path / "tui.toml"
    settings.write_text(f'theme = "{theme}"\n')
    return DraptoApp(connect, settings=settings, browse_root=browse_root)  # type: ignore[arg-type]


async def until(
    pilot: Pilot[Any], condition: Callable[[], bool], timeout: float = 10, step: float = 0.02
) -> None:
    """Let the app run until `condition` holds; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await pilot.pause(step)
