"""Each screen pinned as an SVG snapshot (pytest-textual-snapshot), from a recorded
mid-encode state. Update with `pytest tests/tui/test_snapshots.py --snapshot-update`
after checking the new pictures.

Nothing here depends on the clock: stage times print in UTC, notices carry a fixed
time, the input cursor does not blink, and each picture is taken once the app has
redrawn twice from the recording (no sleeping)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pilot import replay_app, until
from replay import ReplayClient
from textual.pilot import Pilot
from textual.widgets import DirectoryTree, Input

from drapto_tui import notices
from drapto_tui.app import DraptoApp

LIBRARY = Path(__file__).with_name("fixtures") / "library"
SIZE = (110, 34)
Compare = Callable[..., bool]


@pytest.fixture(autouse=True)
def fixed_clock_and_folder(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Stage times print in local time, and the add dialog browses the current folder."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    monkeypatch.setattr(notices, "now", lambda: 1_795_000_000.0)
    monkeypatch.chdir(LIBRARY)
    yield
    time.tzset()


def library_app(tmp_path: Path, theme: str = "drapto-dark") -> DraptoApp:
    """The recording, the add dialog browsing the current folder (LIBRARY)."""
    return replay_app(tmp_path, theme=theme, browse_root=Path("."))


async def settle(pilot: Pilot[Any]) -> None:
    """Two redraws from the recording after whatever the last key did."""
    app = pilot.app
    assert isinstance(app, DraptoApp)
    await until(pilot, lambda: app.mirror is not None)
    ticks = app.ticks
    await until(pilot, lambda: app.ticks >= ticks + 2)
    for field in app.screen.query(Input):
        field.cursor_blink = False
    await pilot.pause()


def keys(*pressed: str) -> Callable[[Pilot[Any]], Any]:
    async def run(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        for key in pressed:
            await pilot.press(key)
            await settle(pilot)

    return run


class TestScreens:
    def test_queue(self, snap_compare: Compare, tmp_path: Path) -> None:
        assert snap_compare(library_app(tmp_path), terminal_size=SIZE, run_before=keys())

    def test_job_detail(self, snap_compare: Compare, tmp_path: Path) -> None:
        assert snap_compare(library_app(tmp_path), terminal_size=SIZE, run_before=keys("enter"))

    def test_resources(self, snap_compare: Compare, tmp_path: Path) -> None:
        assert snap_compare(library_app(tmp_path), terminal_size=SIZE, run_before=keys("2"))

    def test_flags(self, snap_compare: Compare, tmp_path: Path) -> None:
        assert snap_compare(library_app(tmp_path), terminal_size=SIZE, run_before=keys("3"))

    def test_add_dialog(self, snap_compare: Compare, tmp_path: Path) -> None:
        async def open_dialog(pilot: Pilot[Any]) -> None:
            await keys("a")(pilot)
            tree = pilot.app.screen.query_one(DirectoryTree)
            await until(pilot, lambda: len(tree.root.children) >= 2)  # loaded in a worker
            await settle(pilot)

        assert snap_compare(library_app(tmp_path), terminal_size=SIZE, run_before=open_dialog)

    def test_quit_dialog(self, snap_compare: Compare, tmp_path: Path) -> None:
        assert snap_compare(library_app(tmp_path), terminal_size=SIZE, run_before=keys("q"))

    def test_log_with_a_refused_request(self, snap_compare: Compare, tmp_path: Path) -> None:
        """x asks to remove the running entry, y confirms: the refusal is logged."""
        app = library_app(tmp_path)
        assert snap_compare(app, terminal_size=SIZE, run_before=keys("x", "y", "4"))


class TestCompact:
    def test_queue_80x24(self, snap_compare: Compare, tmp_path: Path) -> None:
        assert snap_compare(library_app(tmp_path), terminal_size=(80, 24), run_before=keys())

    def test_job_detail_80x24(self, snap_compare: Compare, tmp_path: Path) -> None:
        app = library_app(tmp_path)
        assert snap_compare(app, terminal_size=(80, 24), run_before=keys("enter"))


class TestWide:
    """At 160x48 the segment strip is the full grid and the strip has sparklines."""

    def test_queue_160x48(self, snap_compare: Compare, tmp_path: Path) -> None:
        assert snap_compare(library_app(tmp_path), terminal_size=(160, 48), run_before=keys())

    def test_remove_asks_naming_the_row(self, snap_compare: Compare, tmp_path: Path) -> None:
        app = library_app(tmp_path)
        assert snap_compare(app, terminal_size=(80, 24), run_before=keys("end", "x"))


class TestThemes:
    @pytest.mark.parametrize("theme", ["drapto-light", "drapto-contrast"])
    def test_queue_in_theme(self, snap_compare: Compare, tmp_path: Path, theme: str) -> None:
        assert snap_compare(library_app(tmp_path, theme), terminal_size=SIZE, run_before=keys())


def test_replay_state_is_what_a_real_session_recorded() -> None:
    """The fixture must stay a real engine state: jobs with segments in every stage."""
    state = ReplayClient().snapshot
    states = {s.state for j in state.jobs.values() for s in j.segments.values()}
    assert {"done", "running", "pending"} <= states
    assert len(state.entries) >= 4 and state.resources
