"""The space saved (drapto stats) at the end of the queue's totals line: asked of the
engine when the TUI attaches and again when an entry finishes."""

from __future__ import annotations

from pathlib import Path

from pilot import on_main, replay_app, until
from replay import ReplayClient
from textual.content import Content
from textual.widgets import Static

from drapto_engine.core.events import EntryChanged
from drapto_engine.core.jobs import EntryStatus
from drapto_engine.core.savings import SavingsReport, Totals

SAVED = Totals(files=3, bytes_before=4_100_000_000, bytes_after=1_900_000_000,
               bytes_saved=2_200_000_000)  # fmt: skip


def totals_line(app: object) -> str:
    screen = app.screen  # type: ignore[attr-defined]
    return Content.from_markup(str(screen.query_one("#totals", Static).content)).plain


async def test_the_totals_line_shows_the_space_saved_and_follows_finished_entries(
    tmp_path: Path,
) -> None:
    client = ReplayClient()
    client.savings = SavingsReport(total=SAVED)
    app = replay_app(tmp_path, client)
    async with app.run_test(size=(140, 40)) as pilot:
        await until(pilot, lambda: on_main(app))
        await until(pilot, lambda: "saved" in totals_line(app))
        assert totals_line(app).rstrip().endswith("saved 2.2 GB (54%)")
        client.savings = SavingsReport(total=SAVED.plus(1_000_000_000, 400_000_000))
        running = next(e for e in client.snapshot.entries if e.status is EntryStatus.RUNNING)
        client.play(EntryChanged(entry=running.model_copy(update={"status": EntryStatus.DONE})))
        await until(pilot, lambda: "saved 2.8 GB (55%)" in totals_line(app))
        await app.leave(stop_engine=False)


async def test_nothing_saved_shows_nothing(tmp_path: Path) -> None:
    app = replay_app(tmp_path, ReplayClient())
    async with app.run_test(size=(140, 40)) as pilot:
        await until(pilot, lambda: on_main(app))
        await until(pilot, lambda: "queue" in totals_line(app))
        for _ in range(3):
            await pilot.pause(0.1)
        assert "saved" not in totals_line(app)
        await app.leave(stop_engine=False)
