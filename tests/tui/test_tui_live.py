"""The TUI against a real engine service with real (tiny, fast-preset) encodes."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from mediagen import one_keyframe_ts
from pilot import until as wait_until
from textual.command import CommandList, CommandPalette
from textual.pilot import Pilot
from textual.widgets import Input, Static, Switch
from tui_service import Service, start_service

from drapto_engine.core.flags import FlagSource, FlagState
from drapto_engine.core.jobs import EntryStatus, JobOptions
from drapto_engine.server.client import EngineClient
from drapto_tui.app import DraptoApp
from drapto_tui.screens.add import AddScreen
from drapto_tui.screens.confirm import ConfirmScreen
from drapto_tui.screens.main import MainScreen
from drapto_tui.screens.quit import QuitScreen
from drapto_tui.settings import load_theme
from drapto_tui.widgets.event_log import EventLog
from drapto_tui.widgets.flag_row import FlagRow
from drapto_tui.widgets.queue_table import COMPACT, QueueTable
from drapto_tui.widgets.segment_grid import SegmentGrid

pytestmark = pytest.mark.slow


def app_for(service: Service, settings: Path, paths: list[str] | None = None) -> DraptoApp:
    async def connect() -> EngineClient:
        return await service.client("tui-test")

    return DraptoApp(connect, paths=paths or [], settings=settings)


async def until(pilot: Pilot[None], condition: Callable[[], bool], timeout: float = 60) -> None:
    """A live engine's changes take longer than a recording's: a minute by default."""
    await wait_until(pilot, condition, timeout, step=0.05)


async def pick(pilot: Pilot[None], query: str, wanted: str) -> None:
    """Type into the open command palette and run its first hit once it is `wanted`."""
    app = pilot.app
    await until(pilot, lambda: isinstance(app.screen, CommandPalette), timeout=10)
    palette = app.screen
    await pilot.press(*query)
    hits = palette.query_one(CommandList)

    def first_is_wanted() -> bool:
        return hits.option_count > 0 and str(hits.get_option_at_index(0).prompt).startswith(wanted)

    await until(pilot, first_is_wanted, timeout=10)
    await pilot.press("enter")
    await until(pilot, lambda: app.screen is not palette, timeout=10)


async def test_add_a_folder_and_watch_its_segments_reach_done(
    tmp_path: Path, service: Service, make_media: object
) -> None:
    library = tmp_path / "library"
    make_media("library/one.mkv", size=(160, 90), duration=4, gop=25)  # type: ignore[operator]
    make_media("library/sub/two.mkv", size=(128, 72), duration=2, gop=25)  # type: ignore[operator]
    app = app_for(service, tmp_path / "tui.toml")
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, MainScreen))
        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, AddScreen))
        field = app.screen.query_one("#path", Input)
        field.value = str(library)
        await pilot.press("enter")
        mirror = app.mirror
        assert mirror is not None
        await until(pilot, lambda: len(mirror.state.entries) == 2)
        await until(
            pilot,
            lambda: all(e.status is EntryStatus.DONE for e in mirror.state.entries),
            timeout=90,
        )
        table = app.screen.query_one(QueueTable)
        await until(pilot, lambda: "done" in table.row_text(0) and "done" in table.row_text(1))
        assert table.row_count == 2
        jobs = [mirror.state.jobs[e.job or ""] for e in mirror.state.entries]
        assert all(s.state == "done" for j in jobs for s in j.segments.values())
        assert sum(len(j.segments) for j in jobs) >= 2
        await pilot.press("enter")  # the job screen shows the finished grid
        grid = app.screen.query_one(SegmentGrid)
        await until(
            pilot,
            lambda: grid.job is not None and re.search(r"\d+ segments?: ", grid.text()) is not None,
        )
        assert " done" in grid.text() and "pending" not in grid.text() and "✓" in grid.text()
        await app.leave(stop_engine=False)
    assert (library / "one.av1.mkv").is_file() and (library / "sub" / "two.av1.mkv").is_file()
    assert service.alive()


async def test_a_flag_switch_follows_the_engine_and_another_client_sees_it(
    tmp_path: Path, service: Service
) -> None:
    app = app_for(service, tmp_path / "tui.toml")
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, MainScreen))
        await pilot.press("3")
        switch = app.screen.query_one("#switch-crop_detection", Switch)
        await until(pilot, lambda: switch.value)
        switch.focus()
        await pilot.press("space")
        mirror = app.mirror
        assert mirror is not None
        await until(
            pilot,
            lambda: any(
                f.name == "crop_detection" and f.state is FlagState.OFF for f in mirror.state.flags
            ),
        )
        await until(pilot, lambda: not switch.value)
        other = await service.client("observer")
        flags = {f.name: f.state for f in await other.get_flags()}
        assert flags["crop_detection"] is FlagState.OFF  # the engine, not the switch, changed
        await other.set_flag("crop_detection", "on")  # a change from elsewhere shows here
        await other.close()
        await until(pilot, lambda: switch.value)
        await app.leave(stop_engine=False)


async def test_theme_switch_is_remembered_and_80x24_keeps_the_essentials(
    tmp_path: Path, service: Service
) -> None:
    settings = tmp_path / "tui.toml"
    client = await service.client("setup")
    await client.pause()
    source = tmp_path / "a very long file name of a film (2019) remastered.mkv"
    source.write_bytes(b"")  # queued only: the queue is paused
    await client.add_paths([str(source)], options=JobOptions(preset=12))
    await client.close()
    app = app_for(service, settings)
    async with app.run_test(size=(120, 30)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, MainScreen))
        await pilot.press("ctrl+p")  # the command palette: its Theme command ...
        await pick(pilot, "theme", "Theme")
        await pick(pilot, "drapto-light", "drapto-light")  # ... opens the theme picker
        await until(pilot, lambda: app.theme == "drapto-light", timeout=10)
        assert load_theme(settings) == "drapto-light"
        await pilot.resize_terminal(80, 24)
        table = app.screen.query_one(QueueTable)
        await until(pilot, lambda: table.size.width <= 80)
        assert table.columns == COMPACT  # sizes dropped, progress, fps and ETA kept
        shown = table.row_text(0)
        assert len(shown.rstrip()) <= 80 and "0%" in shown and "a very long file" in shown
        await pilot.press("q")
        await until(pilot, lambda: isinstance(app.screen, QuitScreen))
        await pilot.press("enter")  # the default: leave the engine running
        await until(pilot, lambda: not app.is_running, timeout=10)
    assert service.alive()
    again = app_for(service, settings)
    async with again.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: isinstance(again.screen, MainScreen))
        assert again.theme == "drapto-light"
        await again.leave(stop_engine=False)
    await asyncio.sleep(0)


async def test_queue_commands_from_keys_and_mouse_reach_the_engine(
    tmp_path: Path, service: Service, make_media: object
) -> None:
    from drapto_tui.screens.job import JobScreen

    files = [make_media(f"{n}.mkv", size=(64, 64), duration=1) for n in "abc"]  # type: ignore[operator]
    setup = await service.client("setup")
    await setup.pause()
    await setup.add_paths([str(f) for f in files], options=JobOptions(preset=12))
    await setup.close()
    app = app_for(service, tmp_path / "tui.toml")
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, MainScreen))
        mirror = app.mirror
        assert mirror is not None
        table = app.screen.query_one(QueueTable)
        names = lambda: [Path(e.input).name for e in mirror.state.entries]  # noqa: E731
        await until(pilot, lambda: table.row_count == 3)
        await pilot.press("end", "K")  # move c up one
        await until(pilot, lambda: names() == ["a.mkv", "c.mkv", "b.mkv"])
        await pilot.press("home", "J")  # move a down one
        await until(pilot, lambda: names() == ["c.mkv", "a.mkv", "b.mkv"])
        await pilot.press("end", "c")  # cancel b (queued)
        await until(pilot, lambda: mirror.state.entries[2].status is EntryStatus.CANCELLED)
        await pilot.press("r")  # and retry it
        await until(pilot, lambda: mirror.state.entries[2].status is EntryStatus.QUEUED)
        await pilot.press("x")  # remove it, once confirmed
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await until(pilot, lambda: names() == ["c.mkv", "a.mkv"])
        await until(pilot, lambda: table.row_count == 2 and table.selected_entry is not None)
        await pilot.click(QueueTable, offset=(3, 1))  # the first row (line 0 is the header)
        assert table.selected_entry == mirror.state.entries[0].id
        await pilot.click(QueueTable, offset=(3, 2))  # a click selects ...
        assert table.selected_entry == mirror.state.entries[1].id
        assert isinstance(app.screen, MainScreen)
        await pilot.click(QueueTable, offset=(3, 2))  # ... and a click on the selected row opens it
        await until(pilot, lambda: isinstance(app.screen, JobScreen))
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, MainScreen))
        await pilot.press("p")  # resume the queue: both encode
        await until(pilot, lambda: not mirror.state.paused)
        await until(
            pilot,
            lambda: all(e.status is EntryStatus.DONE for e in mirror.state.entries),
            timeout=60,
        )
        await pilot.press("ctrl+p")  # every command is in the palette too, for the mouse
        await pick(pilot, "pause", "Pause or resume the queue")
        await until(pilot, lambda: mirror.state.paused)
        await app.leave(stop_engine=False)


async def test_the_path_input_completes_from_disk(tmp_path: Path) -> None:
    from drapto_tui.screens.add import PathSuggester

    (tmp_path / "Films").mkdir()
    (tmp_path / "Films" / "Big Night.mkv").write_bytes(b"")
    (tmp_path / ".hidden").mkdir()
    suggest = PathSuggester()
    assert await suggest.get_suggestion(f"{tmp_path}/fi") == f"{tmp_path}/Films/"
    assert await suggest.get_suggestion(f"{tmp_path}/Films/b") == f"{tmp_path}/Films/Big Night.mkv"
    assert await suggest.get_suggestion(f"{tmp_path}/.h") is None
    assert await suggest.get_suggestion(f"{tmp_path}/nothing/x") is None


def test_the_folder_browser_shows_folders_and_what_would_be_queued(tmp_path: Path) -> None:
    from drapto_tui.widgets.video_tree import browsable

    names = ["Films", ".cache", "a.mkv", "a.av1.mkv", "notes.txt", "B.MP4", ".hidden.mkv"]
    for name in names:
        path = tmp_path / name
        path.mkdir() if "." not in name[1:] else path.write_bytes(b"")
    shown = [n for n in names if browsable(tmp_path / n)]
    assert sorted(shown) == ["B.MP4", "Films", "a.mkv"]


async def test_a_rollback_is_shown_and_undone_from_the_flags_panel(
    tmp_path: Path, start_engine: Callable[[str], Service], ffmpeg: str
) -> None:
    service = start_engine("rollback_limit = 1")
    source = one_keyframe_ts(ffmpeg, tmp_path / "onekey.ts")
    app = app_for(service, tmp_path / "tui.toml")
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, MainScreen))
        mirror = app.mirror
        assert mirror is not None
        await mirror.client.add_paths(
            [str(source)], options=JobOptions(min_segment_s=1, max_segment_s=2)
        )
        await until(pilot, lambda: bool(mirror.state.entries))
        await until(pilot, lambda: mirror.state.entries[0].status is EntryStatus.DONE)
        flag = lambda: next(f for f in mirror.state.flags if f.name == "segmented_encoding")  # noqa: E731
        assert (flag().state, flag().source) == (FlagState.OFF, FlagSource.ROLLBACK)
        assert mirror.state.entries[0].rollbacks == ["segmented_encoding"]
        log = app.screen.query_one(EventLog)
        await until(
            pilot,
            lambda: any("retrying with segmented_encoding off" in n.text for n in log.notices),
        )
        await pilot.press("3")
        row = app.screen.query_one("#flag-segmented_encoding", FlagRow)
        switch = row.query_one(Switch)
        await until(
            pilot, lambda: "rolled back" in str(row.query_one(".flag-text", Static).render())
        )
        assert not switch.value
        await pilot.click("#switch-segmented_encoding")  # undo the rollback with the mouse
        await until(pilot, lambda: flag().state is FlagState.ON)
        assert flag().source is FlagSource.LIVE
        await until(pilot, lambda: switch.value)
        await app.leave(stop_engine=False)


async def test_a_lost_engine_is_said_and_ctrl_r_attaches_to_a_new_one(
    tmp_path: Path, start_engine: Callable[[str], Service]
) -> None:
    engines = [start_engine("")]

    async def connect() -> EngineClient:
        return await engines[-1].client("tui-test")

    app = DraptoApp(connect, settings=tmp_path / "tui.toml")
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, MainScreen))
        mirror = app.mirror
        assert mirror is not None and mirror.connected
        first = engines[0]
        os.kill(first.process.pid, signal.SIGTERM)  # the engine stops under the TUI
        first.process.wait(timeout=20)
        await until(pilot, lambda: not mirror.connected and app.sub_title == "disconnected")
        log = app.screen.query_one(EventLog)
        assert any("ctrl+r" in n.text for n in log.notices)
        await pilot.press("p")  # a request now is refused in words, not a crash
        await until(pilot, lambda: any("connection" in n.text for n in list(log.notices)[-1:]))
        engines.append(start_engine(""))
        await pilot.press("ctrl+r")
        await until(pilot, lambda: mirror.connected and app.sub_title == "attached to the engine")
        await pilot.press("p")  # the new engine answers
        await until(pilot, lambda: mirror.state.paused)
        await app.leave(stop_engine=False)


async def test_paths_given_on_the_command_line_are_queued(
    tmp_path: Path, service: Service, make_media: object
) -> None:
    film = make_media("film.mkv", size=(64, 64), duration=1)  # type: ignore[operator]
    setup = await service.client("setup")
    await setup.pause()  # queued only
    await setup.close()
    app = app_for(service, tmp_path / "tui.toml", paths=[str(film)])
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, MainScreen))
        table = app.screen.query_one(QueueTable)
        await until(pilot, lambda: table.row_count == 1 and "film.mkv" in table.row_text(0))
        await app.leave(stop_engine=False)


async def test_finished_entries_keep_their_badge_across_a_restart_and_clear_away(
    tmp_path: Path, make_media: object
) -> None:
    """An engine restart keeps each entry's dynamic range; C clears done entries and
    keeps failed ones; adding a queued file again says so."""
    films = [make_media(f"{n}.mkv", size=(64, 64), duration=1) for n in "ac"]  # type: ignore[operator]
    bad = tmp_path / "bad.mkv"
    bad.write_bytes(b"\x1a\x45\xdf\xa3" * 64)  # an interrupted download
    root = tmp_path / "engine"
    first = start_service(root)
    try:
        setup = await first.client("setup")
        await setup.add_paths([str(films[0]), str(bad)], options=JobOptions(preset=12))
        deadline = time.monotonic() + 60
        while {e.status for e in (await setup.get_snapshot()).entries} != {
            EntryStatus.DONE,
            EntryStatus.FAILED,
        }:
            assert time.monotonic() < deadline, "the encodes did not end"
            await asyncio.sleep(0.2)
        await setup.close()
    finally:
        os.kill(first.process.pid, signal.SIGTERM)
        first.process.wait(timeout=20)
    again = start_service(root)  # the same state: a restarted engine
    try:
        app = app_for(again, tmp_path / "tui.toml")
        async with app.run_test(size=(100, 30)) as pilot:
            await until(pilot, lambda: isinstance(app.screen, MainScreen))
            mirror = app.mirror
            assert mirror is not None
            assert not mirror.state.jobs  # nothing of the jobs survived but the entries
            table = app.screen.query_one(QueueTable)
            await until(pilot, lambda: table.row_count == 2)
            assert " SDR " in table.row_text(0) and "done" in table.row_text(0)
            await mirror.client.pause()
            await app.add_paths([str(films[1])])
            await app.add_paths([str(films[1])])
            texts = [n.text for n in app.history]
            assert texts[-1].startswith("c.mkv is already queued")
            await until(pilot, lambda: table.row_count == 3)
            await pilot.press("C")  # a (done) goes; bad (failed) and c (queued) stay
            names = lambda: [Path(e.input).name for e in mirror.state.entries]  # noqa: E731
            await until(pilot, lambda: names() == ["bad.mkv", "c.mkv"])
            await until(pilot, lambda: table.row_count == 2)
            await app.leave(stop_engine=False)
    finally:
        os.kill(again.process.pid, signal.SIGTERM)
        again.process.wait(timeout=20)
