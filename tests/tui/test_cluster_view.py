"""What the TUI shows of the engine's cluster: the Resources tab's worker table and the
segment grid's marks for segments a remote worker encodes, both from events applied to
the engine's view as a client applies them."""

from __future__ import annotations

from textual.app import App, ComposeResult
from textual.coordinate import Coordinate
from textual.widgets import DataTable, Static

from drapto_engine.cli.service import status_lines
from drapto_engine.core.api import EngineView
from drapto_engine.core.events import (
    ClusterSampled,
    SegmentDone,
    SegmentPlanned,
    SegmentStarted,
)
from drapto_engine.core.metrics import ClusterWorker
from drapto_engine.server.protocol import Hello
from drapto_tui.widgets.resources_panel import ResourcesPanel
from drapto_tui.widgets.segment_grid import CELL, REMOTE_DONE, REMOTE_RUNNING, cell, summary

GIB = 1 << 30
WORKERS = (
    ClusterWorker(
        name="w-den",
        address="tls://10.0.0.5:40001",
        host="den",
        slots=4,
        running=2,
        cpu_percent=87.0,
        memory_total=16 * GIB,
        memory_available=12 * GIB,
    ),
    ClusterWorker(
        name="w-attic",
        address="tls://10.0.0.6:40001",
        host="attic",
        slots=2,
        running=0,
        cpu_percent=3.0,
        memory_total=8 * GIB,
        memory_available=7 * GIB,
    ),
)


def _view() -> EngineView:
    view = EngineView()
    view.apply(ClusterSampled(address="tls://0.0.0.0:8786", workers=WORKERS))
    for index in range(3):
        view.apply(SegmentPlanned(job="j", index=index, start_frame=index * 10, frames=10))
    view.apply(SegmentStarted(job="j", index=0, threads=2, host="w-den", remote=True))
    view.apply(SegmentStarted(job="j", index=1, threads=2, host="tower"))
    view.apply(SegmentStarted(job="j", index=2, threads=2, host="w-den", remote=True))
    view.apply(
        SegmentDone(
            job="j", index=2, frames=10, size_bytes=50_000, fps=30, wall_s=1, host="w-den",
            remote=True,
        )
    )  # fmt: skip
    return view


def test_the_grid_marks_segments_of_remote_workers() -> None:
    job = _view().snapshot().jobs["j"]
    cells = [cell(job.segments[i]) for i in range(3)]
    assert [len(c) for c in cells] == [CELL - 1] * 3
    assert REMOTE_RUNNING in cells[0] and "▶" in cells[1] and REMOTE_DONE in cells[2]
    assert summary(job) == f"3 segments: 2 running, 1 done; {REMOTE_DONE} remote: w-den 2"


def test_status_lists_the_cluster_workers() -> None:
    from pathlib import Path

    lines = status_lines(_view().snapshot(), Hello(name="drapto", pid=7), Path("/run/e.sock"))
    at = lines.index("cluster    tls://0.0.0.0:8786, 2 workers")
    assert lines[at + 1 : at + 3] == [
        "  w-den on den: 4 slots, 2 running, CPU 87%, RAM 4.0 of 16.0 GiB used",
        "  w-attic on attic: 2 slots, 0 running, CPU 3%, RAM 1.0 of 8.0 GiB used",
    ]
    plain = status_lines(EngineView().snapshot(), Hello(name="drapto", pid=7), Path("/e"))
    assert not any(line.startswith("cluster") for line in plain)


class PanelApp(App[None]):
    def compose(self) -> ComposeResult:
        yield ResourcesPanel()


async def test_the_resources_tab_shows_the_workers_only_with_a_cluster() -> None:
    app = PanelApp()
    async with app.run_test(size=(100, 30)) as pilot:
        panel = app.query_one(ResourcesPanel)
        table = app.query_one("#cluster-workers", DataTable)
        panel.show(EngineView().snapshot())
        await pilot.pause()
        assert not table.display and not app.query_one("#cluster", Static).display
        panel.show(_view().snapshot())
        await pilot.pause()
        assert table.display and table.row_count == 2
        row = [str(table.get_cell_at(Coordinate(0, c))) for c in range(6)]
        assert row == ["w-den", "den", "4", "2", "87", "4.0 of 16.0 GiB"]
