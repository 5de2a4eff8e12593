"""The queue tab shares its lines between the queue and the chosen job's segments:
a long queue at 80x24 leaves the segments a strip, a tall wide screen the full grid."""

from __future__ import annotations

from pathlib import Path

from pilot import replay_app, until
from replay import ReplayClient

from drapto_engine.core.api import EngineSnapshot
from drapto_engine.core.jobs import QueueEntry
from drapto_tui.app import DraptoApp
from drapto_tui.screens.main import MainScreen
from drapto_tui.widgets.queue_table import QueueTable
from drapto_tui.widgets.resource_strip import ResourceStrip
from drapto_tui.widgets.segment_grid import SegmentGrid


def long_queue(extra: int) -> EngineSnapshot:
    """The recording with `extra` more files queued behind it."""
    snapshot = ReplayClient().snapshot
    template = snapshot.entries[-1]
    more = [
        QueueEntry(
            id=100 + n, input=f"/library/Film {n}.mkv", output=f"/library/Film {n}.av1.mkv",
            position=100 + n, options=template.options,
        )
        for n in range(extra)
    ]  # fmt: skip
    return snapshot.model_copy(update={"entries": [*snapshot.entries, *more]})


def app_with(snapshot: EngineSnapshot, tmp_path: Path) -> DraptoApp:
    return replay_app(tmp_path, ReplayClient(snapshot))


async def test_a_long_queue_at_80x24_leaves_a_segment_strip(tmp_path: Path) -> None:
    app = app_with(long_queue(40), tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, MainScreen))
        grid = app.screen.query_one(SegmentGrid)
        table = app.screen.query_one(QueueTable)
        await until(pilot, lambda: grid.job is not None and grid.compact)
        assert table.size.height >= 12  # most of the screen is the queue
        title, strip = grid.text().splitlines()[:2]
        assert title == "Big Night (2021).mkv: 10 segments: 1 running, 7 pending, 2 done"
        assert strip.startswith("█████ █████ ▶▶▶▶▶ ·····")
        line = app.screen.query_one(ResourceStrip).text()
        assert line.startswith("CPU ") and "RAM " in line and "2 running, 0 suspended" in line
        await pilot.press("end")  # a queued entry has no segments: the running job shows
        await until(pilot, lambda: grid.text().startswith("Big Night"))
        await app.leave(stop_engine=False)


async def test_a_tall_wide_screen_shows_the_full_grid_and_sparklines(tmp_path: Path) -> None:
    app = app_with(long_queue(40), tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, MainScreen))
        grid = app.screen.query_one(SegmentGrid)
        await until(pilot, lambda: grid.job is not None and not grid.compact)
        cells = grid.text().splitlines()[1]
        assert "#0   ✓  1.4M   21f" in cells and "#2   ▶  25%   16f" in cells
        strip = app.screen.query_one(ResourceStrip)
        await until(pilot, lambda: len(strip.text().splitlines()) == 3)
        assert [line[:3] for line in strip.text().splitlines()] == ["CPU", "CPU", "RAM"]
        await pilot.press("down")  # the strip follows the highlighted row
        await until(pilot, lambda: grid.text().startswith("Quiet Harbour (2019).mkv"))
        await app.leave(stop_engine=False)
