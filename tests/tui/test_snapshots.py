"""Each screen pinned as an SVG snapshot (pytest-textual-snapshot), from a recorded
mid-encode state. Update with `pytest tests/tui/test_snapshots.py --snapshot-update`
after checking the new pictures."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from replay import ReplayClient
from textual.pilot import Pilot
from textual.widgets import DirectoryTree

from drapto_tui.app import DraptoApp

LIBRARY = Path(__file__).with_name("fixtures") / "library"
SIZE = (110, 34)
Compare = Callable[..., bool]


@pytest.fixture(autouse=True)
def fixed_clock_and_folder(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Stage times print in local time, and the add dialog browses the current folder."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    monkeypatch.chdir(LIBRARY)
    yield
    time.tzset()


def replay_app(tmp_path: Path, theme: str | None = None) -> DraptoApp:
    async def connect() -> ReplayClient:
        return ReplayClient()

    settings = tmp_path / "tui.toml"
    if theme:
        settings.write_text(f'theme = "{theme}"\n')
    return DraptoApp(connect, settings=settings, browse_root=Path("."))  # type: ignore[arg-type]


async def settle(pilot: Pilot[Any]) -> None:
    await pilot.pause(0.6)  # two redraw ticks


def keys(*pressed: str) -> Callable[[Pilot[Any]], Any]:
    async def run(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        for key in pressed:
            await pilot.press(key)
            await settle(pilot)

    return run


class TestScreens:
    def test_queue(self, snap_compare: Compare, tmp_path: Path) -> None:
        assert snap_compare(replay_app(tmp_path), terminal_size=SIZE, run_before=keys())

    def test_job_detail(self, snap_compare: Compare, tmp_path: Path) -> None:
        assert snap_compare(replay_app(tmp_path), terminal_size=SIZE, run_before=keys("enter"))

    def test_resources(self, snap_compare: Compare, tmp_path: Path) -> None:
        assert snap_compare(replay_app(tmp_path), terminal_size=SIZE, run_before=keys("2"))

    def test_flags(self, snap_compare: Compare, tmp_path: Path) -> None:
        assert snap_compare(replay_app(tmp_path), terminal_size=SIZE, run_before=keys("3"))

    def test_add_dialog(self, snap_compare: Compare, tmp_path: Path) -> None:
        async def open_dialog(pilot: Pilot[Any]) -> None:
            await keys("a")(pilot)
            tree = pilot.app.screen.query_one(DirectoryTree)
            deadline = time.monotonic() + 10
            while len(tree.root.children) < 2:  # the browser loads in a worker
                assert time.monotonic() < deadline
                await pilot.pause(0.05)
            await settle(pilot)

        assert snap_compare(replay_app(tmp_path), terminal_size=SIZE, run_before=open_dialog)

    def test_quit_dialog(self, snap_compare: Compare, tmp_path: Path) -> None:
        assert snap_compare(replay_app(tmp_path), terminal_size=SIZE, run_before=keys("q"))


class TestCompact:
    def test_queue_80x24(self, snap_compare: Compare, tmp_path: Path) -> None:
        assert snap_compare(replay_app(tmp_path), terminal_size=(80, 24), run_before=keys())

    def test_job_detail_80x24(self, snap_compare: Compare, tmp_path: Path) -> None:
        app = replay_app(tmp_path)
        assert snap_compare(app, terminal_size=(80, 24), run_before=keys("enter"))


class TestThemes:
    @pytest.mark.parametrize("theme", ["drapto-light", "drapto-contrast"])
    def test_queue_in_theme(self, snap_compare: Compare, tmp_path: Path, theme: str) -> None:
        assert snap_compare(replay_app(tmp_path, theme), terminal_size=SIZE, run_before=keys())


def test_replay_state_is_what_a_real_session_recorded() -> None:
    """The fixture must stay a real engine state: jobs with segments in every stage."""
    state = ReplayClient().snapshot
    states = {s.state for j in state.jobs.values() for s in j.segments.values()}
    assert {"done", "running", "pending"} <= states
    assert len(state.entries) >= 4 and state.resources
    _ = os
