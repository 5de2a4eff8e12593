"""A widget's messages are its own (`FlagRow.Toggled`, as `QueueTable.Selected`), and the
app redraws every screen that declares `RefreshesFromEngine` on each tick."""

from __future__ import annotations

from pathlib import Path

from pilot import until
from test_keys import recorded_app, started
from textual.app import App, ComposeResult
from textual.screen import Screen
from textual.widgets import Static, Switch

from drapto_engine.core.flags import FlagSource, FlagState, FlagView, Scope
from drapto_tui.screens import RefreshesFromEngine
from drapto_tui.screens.job import JobScreen
from drapto_tui.screens.main import MainScreen
from drapto_tui.widgets.flag_row import FlagRow

VIEW = FlagView(
    name="crop_detection",
    description="find black bars",
    scope=Scope.NEXT_JOB,
    default=FlagState.ON,
    state=FlagState.OFF,
    source=FlagSource.LIVE,
    shadow_capable=False,
)


class OneFlag(App[None]):
    def __init__(self) -> None:
        super().__init__()
        self.asked: list[tuple[str, str]] = []

    def compose(self) -> ComposeResult:
        yield FlagRow(VIEW)

    def on_flag_row_toggled(self, message: FlagRow.Toggled) -> None:
        self.asked.append((message.name, message.state))


async def test_a_flag_row_asks_with_its_own_message_and_waits_for_the_engine() -> None:
    app = OneFlag()
    async with app.run_test(size=(80, 6)) as pilot:
        await pilot.click(Switch)
        await until(pilot, lambda: bool(app.asked))
        assert app.asked == [("crop_detection", "on")]
        assert app.query_one(Switch).value is False  # until the engine's flag event


class Counting(Screen[None]):
    def __init__(self) -> None:
        super().__init__()
        self.redraws = 0

    def compose(self) -> ComposeResult:
        yield Static("counting")

    def refresh_from_engine(self) -> None:
        self.redraws += 1


async def test_the_tick_redraws_a_screen_that_refreshes_from_the_engine(tmp_path: Path) -> None:
    app, _ = recorded_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot)
        screen = Counting()
        assert isinstance(screen, RefreshesFromEngine)
        assert isinstance(app.screen, MainScreen) and isinstance(app.screen, RefreshesFromEngine)
        assert issubclass(JobScreen, RefreshesFromEngine)
        await app.push_screen(screen)
        ticks = app.ticks
        await until(pilot, lambda: app.ticks >= ticks + 3)
        assert screen.redraws >= 3
        await app.leave(stop_engine=False)
