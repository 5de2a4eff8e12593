"""The TUI's screens, one a module, and what a screen that shows the engine declares."""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class RefreshesFromEngine(Protocol):
    """A screen drawn from the app's mirror of the engine: the app calls
    `refresh_from_engine` on the screen on top at every tick (never once per event), and
    the screen redraws what the events since the last tick changed."""

    def refresh_from_engine(self) -> None: ...
