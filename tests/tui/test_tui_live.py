"""The TUI against a real engine service with real (tiny, fast-preset) encodes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, Switch
from tui_service import Service

from drapto_engine.core.flags import FlagState
from drapto_engine.core.jobs import EntryStatus, JobOptions
from drapto_engine.server.client import EngineClient
from drapto_tui.app import DraptoApp
from drapto_tui.screens.add import AddScreen
from drapto_tui.screens.main import MainScreen
from drapto_tui.screens.quit import QuitScreen
from drapto_tui.settings import load_theme
from drapto_tui.widgets.queue_table import COMPACT, QueueTable

pytestmark = pytest.mark.slow


def app_for(service: Service, settings: Path, paths: list[str] | None = None) -> DraptoApp:
    async def connect() -> EngineClient:
        return await service.client("tui-test")

    return DraptoApp(connect, paths=paths or [], settings=settings)


async def until(pilot: Pilot[None], condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await pilot.pause(0.05)


async def test_add_a_folder_and_watch_its_segments_reach_done(
    tmp_path: Path, service: Service, make_media: object
) -> None:
    library = tmp_path / "library"
    make_media("library/one.mkv", size=(160, 90), duration=4, gop=25)  # type: ignore[operator]
    make_media("library/sub/two.mkv", size=(128, 72), duration=2, gop=25)  # type: ignore[operator]
    options = await service.client("setup")
    await options.close()
    app = app_for(service, tmp_path / "tui.toml")
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, MainScreen))
        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, AddScreen))
        field = app.screen.query_one("#path", Input)
        field.value = str(library)
        await pilot.press("enter")
        link = app.link
        assert link is not None
        await until(pilot, lambda: len(link.state.entries) == 2)
        await until(
            pilot,
            lambda: all(e.status is EntryStatus.DONE for e in link.state.entries),
            timeout=90,
        )
        table = app.screen.query_one(QueueTable)
        await until(pilot, lambda: "done" in table.row_text(0) and "done" in table.row_text(1))
        assert table.row_count == 2
        jobs = [link.state.jobs[e.job or ""] for e in link.state.entries]
        assert all(s.state == "done" for j in jobs for s in j.segments.values())
        assert sum(len(j.segments) for j in jobs) >= 2
        await pilot.press("enter")  # the job screen shows the finished grid
        await until(pilot, lambda: "segments:" in str(app.screen.query_one("#segments").render()))
        assert "done" in str(app.screen.query_one("#segments").render())
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
        link = app.link
        assert link is not None
        await until(
            pilot,
            lambda: any(
                f.name == "crop_detection" and f.state is FlagState.OFF for f in link.state.flags
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
        await pilot.pause(0.3)
        await pilot.press(*"theme")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await pilot.pause(0.5)
        await pilot.press(*"drapto-light")  # ... opens the theme picker
        await pilot.pause(0.5)
        await pilot.press("enter")
        await until(pilot, lambda: app.theme == "drapto-light", timeout=10)
        assert load_theme(settings) == "drapto-light"
        await pilot.resize_terminal(80, 24)
        await pilot.pause(0.3)
        table = app.screen.query_one(QueueTable)
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
    bad = tmp_path / "bad.mkv"
    bad.write_text("not a video")
    setup = await service.client("setup")
    await setup.pause()
    await setup.add_paths([str(f) for f in files], options=JobOptions(preset=12))
    await setup.close()
    app = app_for(service, tmp_path / "tui.toml")
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, MainScreen))
        link = app.link
        assert link is not None
        table = app.screen.query_one(QueueTable)
        names = lambda: [Path(e.input).name for e in link.state.entries]  # noqa: E731
        await until(pilot, lambda: table.row_count == 3)
        await pilot.press("end", "K")  # move c up one
        await until(pilot, lambda: names() == ["a.mkv", "c.mkv", "b.mkv"])
        await pilot.press("home", "J")  # move a down one
        await until(pilot, lambda: names() == ["c.mkv", "a.mkv", "b.mkv"])
        await pilot.press("end", "c")  # cancel b (queued)
        await until(pilot, lambda: link.state.entries[2].status is EntryStatus.CANCELLED)
        await pilot.press("r")  # and retry it
        await until(pilot, lambda: link.state.entries[2].status is EntryStatus.QUEUED)
        await pilot.press("x")  # remove it
        await until(pilot, lambda: names() == ["c.mkv", "a.mkv"])
        await pilot.click(QueueTable, offset=(3, 2))  # the second row (line 0 is the header)
        assert table.selected_entry == link.state.entries[1].id
        await pilot.click(QueueTable, offset=(3, 2))  # a click on the selected row opens it
        await until(pilot, lambda: isinstance(app.screen, JobScreen))
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, MainScreen))
        await pilot.press("p")  # resume the queue: both encode
        await until(pilot, lambda: not link.state.paused)
        await until(
            pilot,
            lambda: all(e.status is EntryStatus.DONE for e in link.state.entries),
            timeout=60,
        )
        await pilot.press("p")
        await until(pilot, lambda: link.state.paused)
        await app.leave(stop_engine=False)
    _ = bad


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
