"""The library screen (w): the watched folders and the schedule as the engine says them,
and the requests its keys send. The app runs against the recorded engine state with
watched folders and a held schedule added; the requests are recorded. What the engine
does with them is tested against a real service in tests/integration/test_watch_service.py."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from pilot import on_main, replay_app, until
from replay import ReplayClient
from textual.widgets import DataTable, Input, Static

from drapto_engine.core.events import ScheduleChanged, WatchChanged, WatchRemoved
from drapto_engine.core.schedule import ScheduleView
from drapto_engine.core.watching import FolderState, WatchedFolder, WatchView
from drapto_tui import notices
from drapto_tui.screens import library
from drapto_tui.screens.add import AddScreen
from drapto_tui.screens.confirm import ConfirmScreen
from drapto_tui.screens.library import LibraryScreen

FILMS = WatchView(
    folder=WatchedFolder(path="/srv/films", output="replace", settle_s=60, from_config=True),
    state=FolderState.WATCHING,
    pending=2,
    queued=7,
    last_scan=time.time() - 120,
)
USB = WatchView(
    folder=WatchedFolder(path="/media/usb", output="beside"),
    state=FolderState.MISSING,
    problem="missing: not there or not mounted",
)
HELD = ScheduleView(
    windows=["Mon-Fri 22:00-06:00"],
    open=False,
    until=time.time() + 3600,
    paused="outside the encode windows until 22:00",
    waiting=2,
)


class Recorder(ReplayClient):
    def __init__(self) -> None:
        super().__init__()
        # times from now, not from when the module was imported (a worker of the
        # parallel run may reach this test minutes later)
        self.snapshot.watches = [USB, FILMS.model_copy(update={"last_scan": time.time() - 120})]
        self.snapshot.schedule = HELD.model_copy(update={"until": time.time() + 3600})
        self.calls: list[tuple[Any, ...]] = []

    async def watch_add(
        self, path: str, output: str = "beside", settle_s: float | None = None
    ) -> WatchView:
        self.calls.append(("watch_add", path, output))
        return WatchView(folder=WatchedFolder(path=path, output=output))

    async def watch_remove(self, path: str) -> bool:
        self.calls.append(("watch_remove", path))
        return True

    async def watch_rescan(self, path: str | None = None) -> list[WatchView]:
        self.calls.append(("watch_rescan", path))
        return [USB]

    async def override_schedule(self, on: bool) -> ScheduleView:
        self.calls.append(("override_schedule", on))
        return HELD


def cells(screen: LibraryScreen) -> list[list[str]]:
    table: DataTable[str] = screen.query_one(DataTable)
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


async def opened(pilot: Any) -> LibraryScreen:
    app = pilot.app
    await until(pilot, lambda: on_main(app))
    await pilot.press("w")
    await until(pilot, lambda: isinstance(app.screen, LibraryScreen))
    screen = app.screen
    await until(pilot, lambda: len(cells(screen)) == 2)
    return screen


async def test_the_library_shows_folders_and_the_schedule_and_the_header_what_waits(
    tmp_path: Path,
) -> None:
    client = Recorder()
    app = replay_app(tmp_path, client)
    async with app.run_test(size=(120, 30)) as pilot:
        screen = await opened(pilot)
        rows = cells(screen)
        assert rows[0][:5] == [
            "/media/usb",
            "beside",
            "missing: not there or not mounted",
            "0",
            "0",
        ]
        assert rows[1] == ["/srv/films", "replace", "watching", "2", "7", "2 min ago"]
        text = str(screen.query_one("#schedule", Static).render())
        assert "Schedule: Mon-Fri 22:00-06:00; closed, opens" in text
        assert "Paused: outside the encode windows until 22:00; 2 waiting" in text
        await until(pilot, lambda: "2 waiting: outside the encode windows" in app.title)
        # The engine's events redraw it: a folder back, one removed, the window open.
        client.play(
            WatchChanged(
                view=USB.model_copy(update={"state": FolderState.WATCHING, "problem": None})
            ),
            WatchRemoved(path="/srv/films"),
            ScheduleChanged(view=HELD.model_copy(update={"open": True, "paused": None})),
        )
        await until(pilot, lambda: cells(screen) and cells(screen)[0][2] == "watching")
        assert len(cells(screen)) == 1
        await until(pilot, lambda: "waiting" not in app.title)
        assert "Paused" not in str(screen.query_one("#schedule", Static).render())


async def test_the_library_keys_send_their_requests(tmp_path: Path) -> None:
    client = Recorder()
    app = replay_app(tmp_path, client, browse_root=tmp_path)
    async with app.run_test(size=(120, 30)) as pilot:
        await opened(pilot)
        await pilot.press("down", "r")  # the highlighted folder
        await until(pilot, lambda: client.calls == [("watch_rescan", "/srv/films")])
        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, LibraryScreen))
        assert len(client.calls) == 1  # backing out sent nothing
        await pilot.press("x", "y")
        await until(pilot, lambda: client.calls[-1] == ("watch_remove", "/srv/films"))
        await until(pilot, lambda: isinstance(app.screen, LibraryScreen))
        await pilot.press("o")
        await until(pilot, lambda: client.calls[-1] == ("override_schedule", True))
        (tmp_path / "new").mkdir()
        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, AddScreen))
        app.screen.query_one("#path", Input).value = str(tmp_path / "new")
        await pilot.press("enter")
        await until(
            pilot, lambda: client.calls[-1] == ("watch_add", str(tmp_path / "new"), "beside")
        )
        await until(pilot, lambda: isinstance(app.screen, LibraryScreen))
        await pilot.press("escape")
        await until(pilot, lambda: on_main(app))


NOW = 1_795_000_000.0


def test_the_library_screen(
    snap_compare: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pinned as a picture: the schedule held until the window opens, a folder watched
    and one missing, with fixed times (UTC)."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    monkeypatch.setattr(library, "now", lambda: NOW)
    monkeypatch.setattr(notices, "now", lambda: NOW)
    client = Recorder()
    client.snapshot.watches = [
        USB,
        FILMS.model_copy(update={"last_scan": NOW - 120, "last_scan_s": 0.4}),
    ]
    client.snapshot.schedule = HELD.model_copy(
        update={
            "windows": ["Mon-Fri 12:06-18:00"],
            "until": NOW + 3600,
            "paused": "outside the encode windows until 12:06",
        }
    )

    async def run_before(pilot: Any) -> None:
        await opened(pilot)
        app = pilot.app
        ticks = app.ticks
        await until(pilot, lambda: app.ticks >= ticks + 2)

    try:
        assert snap_compare(
            replay_app(tmp_path, client), terminal_size=(110, 24), run_before=run_before
        )
    finally:
        monkeypatch.undo()
        time.tzset()
