"""Every key of the queue acts on the highlighted row, after every dialog and tab switch.

The app runs against the recorded engine state (replay.py); the requests it sends are
recorded, so each test checks which request a key sent, for which entry. What the
engine does with them is tested against a real engine in test_tui_live.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pilot import replay_app, until
from replay import ReplayClient
from textual.command import CommandList, CommandPalette
from textual.coordinate import Coordinate
from textual.pilot import Pilot
from textual.widgets import DataTable, Label, Switch, TabbedContent, TabPane

from drapto_tui.app import DraptoApp
from drapto_tui.screens.confirm import ConfirmScreen
from drapto_tui.screens.job import JobScreen
from drapto_tui.screens.main import MainScreen
from drapto_tui.widgets.queue_table import QueueTable

# the recording: 1 Big Night (running), 2 Quiet Harbour (running), 3 Stadium HLG
# (queued), 4 Sunset HDR10 (queued)
BIG_NIGHT, QUIET_HARBOUR, STADIUM, SUNSET = 1, 2, 3, 4


class Recorder(ReplayClient):
    """The recording, with every request it is sent written down (and then refused)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[Any, ...]] = []

    async def remove(self, entry_id: int) -> None:
        self.calls.append(("remove", entry_id))

    async def cancel(self, entry_id: int) -> None:
        self.calls.append(("cancel", entry_id))

    async def retry(self, entry_id: int) -> Any:
        self.calls.append(("retry", entry_id))
        raise self._refuse()

    async def move(self, entry_id: int, index: int) -> None:
        self.calls.append(("move", entry_id, index))

    async def pause(self) -> None:
        self.calls.append(("pause",))

    async def clear_finished(self) -> int:
        self.calls.append(("clear_finished",))
        return 0

    async def set_workers(self, workers: int) -> None:
        self.calls.append(("set_workers", workers))

    async def set_flag(self, name: str, state: str) -> Any:
        self.calls.append(("set_flag", name, state))
        raise self._refuse()


def recorded_app(tmp_path: Path) -> tuple[DraptoApp, Recorder]:
    client = Recorder()
    return replay_app(tmp_path, client, browse_root=tmp_path), client


async def started(pilot: Pilot[Any]) -> QueueTable:
    app = pilot.app
    await until(pilot, lambda: isinstance(app.screen, MainScreen))
    table = app.screen.query_one(QueueTable)
    await until(pilot, lambda: table.row_count == 4)
    return table


def question(app: Any) -> str:
    assert isinstance(app.screen, ConfirmScreen)
    return str(app.screen.query_one("#confirm-question", Label).render())


BEFORE = {
    "add dialog closed": ("a", "escape"),
    "quit dialog backed out": ("q", "escape"),
    "resources tab and back": ("2", "1"),
    "flags tab and back": ("3", "1"),
    "log tab and back": ("4", "1"),
    "job screen and back": ("enter", "escape"),
    "confirmation backed out": ("x", "escape"),
    "palette closed": ("ctrl+p", "escape"),
}


@pytest.mark.parametrize("before", BEFORE.values(), ids=BEFORE.keys())
async def test_every_queue_key_acts_on_the_highlighted_row(
    tmp_path: Path, before: tuple[str, ...]
) -> None:
    app, client = recorded_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        table = await started(pilot)
        for key in before:
            await pilot.press(key)
            await pilot.pause()
        await until(pilot, lambda: isinstance(app.focused, QueueTable))
        assert client.calls == []  # backing out of anything sent nothing
        await pilot.press("end")
        assert table.selected_entry == SUNSET
        await pilot.press("home")
        assert table.selected_entry == BIG_NIGHT
        await pilot.press("down")
        assert table.selected_entry == QUIET_HARBOUR
        await pilot.press("up", "down")
        await pilot.press("x")  # remove asks first, naming the row
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert "Quiet Harbour (2019).mkv" in question(app)
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.focused, QueueTable))
        assert client.calls == []
        await pilot.press("x", "y")
        await until(pilot, lambda: client.calls == [("remove", QUIET_HARBOUR)])
        await until(pilot, lambda: isinstance(app.focused, QueueTable))
        await pilot.press("end", "c")  # a queued entry is cancelled without asking
        await until(pilot, lambda: client.calls[-1:] == [("cancel", SUNSET)])
        await pilot.press("home", "c")  # a running one only once the person says so
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert "Stop encoding Big Night (2021).mkv" in question(app)
        await pilot.press("enter")
        await until(pilot, lambda: client.calls[-1:] == [("cancel", BIG_NIGHT)])
        await until(pilot, lambda: isinstance(app.focused, QueueTable))
        await pilot.press("down", "J")
        await until(pilot, lambda: client.calls[-1:] == [("move", QUIET_HARBOUR, 2)])
        await pilot.press("K")
        await until(pilot, lambda: client.calls[-1:] == [("move", QUIET_HARBOUR, 0)])
        await pilot.press("r")
        await until(pilot, lambda: client.calls[-1:] == [("retry", QUIET_HARBOUR)])
        await pilot.press("C")
        await until(pilot, lambda: client.calls[-1:] == [("clear_finished",)])
        await pilot.press("p")
        await until(pilot, lambda: client.calls[-1:] == [("pause",)])
        await pilot.press("plus")  # the recording has 2 workers
        await until(pilot, lambda: client.calls[-1:] == [("set_workers", 3)])
        await pilot.press("minus")
        await until(pilot, lambda: client.calls[-1:] == [("set_workers", 1)])
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, JobScreen))
        assert app.screen.entry_id == QUIET_HARBOUR  # type: ignore[attr-defined]
        await app.leave(stop_engine=False)


async def test_the_job_screen_asks_before_stopping_its_encode(tmp_path: Path) -> None:
    app, client = recorded_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, JobScreen))
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert "Big Night (2021).mkv" in question(app)
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, JobScreen))
        await pilot.press("c", "y")
        await until(pilot, lambda: client.calls == [("cancel", BIG_NIGHT)])
        await until(pilot, lambda: isinstance(app.screen, JobScreen))
        await pilot.press("r")
        await until(pilot, lambda: client.calls[-1:] == [("retry", BIG_NIGHT)])
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.focused, QueueTable))
        await app.leave(stop_engine=False)


async def test_a_late_focus_in_the_flags_tab_does_not_undo_a_quick_tab_key(
    tmp_path: Path,
) -> None:
    """`3` then `2` at once: the flags tab's switch is focused after it is drawn, and
    that focus's message reaches the tabs after the `2` (seen over tmux on a busy
    machine). It must not switch back to the flags tab."""
    app, _ = recorded_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot)
        await pilot.press("3")
        await until(pilot, lambda: isinstance(app.focused, Switch))
        tabs = app.screen.query_one(TabbedContent)
        late = TabPane.Focused(tabs.get_pane("flags"))
        await pilot.press("2")
        await until(pilot, lambda: tabs.active == "resources")
        tabs.post_message(late)
        await pilot.pause(0.2)
        assert tabs.active == "resources"
        await pilot.press("3", "2")  # and quick keys with a real focus between them
        await pilot.pause(0.2)
        assert tabs.active == "resources"
        await app.leave(stop_engine=False)


async def test_space_toggles_the_highlighted_flag_without_tabbing_to_it(tmp_path: Path) -> None:
    app, client = recorded_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot)
        await pilot.press("3")
        await until(pilot, lambda: isinstance(app.focused, Switch))
        first = app.focused
        assert first is not None and first.id is not None
        await pilot.press("space")
        await until(pilot, lambda: len(client.calls) == 1)
        assert client.calls[0][:2] == ("set_flag", first.id.removeprefix("switch-"))
        await pilot.press("down", "space")  # the next flag
        await until(pilot, lambda: len(client.calls) == 2)
        assert client.calls[1][1] != client.calls[0][1]
        await pilot.press("1")
        await until(pilot, lambda: isinstance(app.focused, QueueTable))
        await app.leave(stop_engine=False)


async def test_warnings_go_to_the_log_and_a_count_in_the_header(tmp_path: Path) -> None:
    app, _ = recorded_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot)
        await pilot.press("r", "r")  # refused twice: the recording cannot change
        await until(pilot, lambda: app.title == "drapto · 2 new in the log (4)")
        assert not app._notifications  # nothing pops up over the queue
        await pilot.press("4")
        await until(pilot, lambda: app.title == "drapto")
        await app.leave(stop_engine=False)


async def test_adding_what_is_queued_already_says_so(tmp_path: Path) -> None:
    app, client = recorded_app(tmp_path)
    queued = client.snapshot.entries[2]

    async def add_paths(paths: Any, *args: Any, **kwargs: Any) -> Any:
        return [queued]  # what the engine answers for an input already waiting

    client.add_paths = add_paths  # type: ignore[method-assign]
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot)
        await app.add_paths([queued.input])
        texts = [n.text for n in app.history]
        assert "Stadium HLG.mkv is already queued" in texts[-1]
        assert texts[-2].startswith("queued 0 file(s)")
        await app.leave(stop_engine=False)


async def test_clear_finished_is_in_the_palette(tmp_path: Path) -> None:
    app, client = recorded_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot)
        await pilot.press("ctrl+p")
        await until(pilot, lambda: isinstance(app.screen, CommandPalette))
        await pilot.press(*"clear finished")
        hits = app.screen.query_one(CommandList)
        await until(
            pilot,
            lambda: (
                hits.option_count > 0
                and str(hits.get_option_at_index(0).prompt).startswith("Clear finished")
            ),
        )
        await pilot.press("enter")
        await until(pilot, lambda: client.calls == [("clear_finished",)])
        await until(pilot, lambda: isinstance(app.focused, QueueTable))
        await app.leave(stop_engine=False)


async def test_the_resources_tab_names_each_encoders_file(tmp_path: Path) -> None:
    app, _ = recorded_app(tmp_path)
    async with app.run_test(size=(110, 34)) as pilot:
        await started(pilot)
        await pilot.press("2")
        table = app.screen.query_one("#encoders", DataTable)
        await until(pilot, lambda: table.row_count == 2)
        files = {str(table.get_cell_at(Coordinate(row, 1))) for row in range(2)}
        assert files == {"Big Night (2021).mkv", "Quiet Harbour (2019).mkv"}
        await pilot.press("1")
        await until(pilot, lambda: isinstance(app.focused, QueueTable))
        await app.leave(stop_engine=False)
