"""Nothing the TUI shows outlives the run it belongs to, and what it shows of a failure
is its reason: the recorded engine state with the events an engine sends after it
(a cancel, a retry, a failure), and a real engine for a file that fails before its job."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pilot import on_main, replay_app, until
from replay import ReplayClient
from textual.content import Content
from textual.pilot import Pilot
from textual.widgets import Static
from textual.widgets._footer import FooterKey
from tui_service import Service

from drapto_engine.core.api import EngineSnapshot
from drapto_engine.core.events import EntryChanged, JobFailed
from drapto_engine.core.jobs import EntryStatus, JobOptions, QueueEntry
from drapto_engine.server.client import EngineClient
from drapto_tui.app import DraptoApp
from drapto_tui.screens.confirm import ConfirmScreen
from drapto_tui.screens.job import JobScreen
from drapto_tui.widgets.event_log import EventLog
from drapto_tui.widgets.queue_table import QueueTable
from drapto_tui.widgets.segment_grid import SegmentGrid


async def redrawn(pilot: Pilot[Any]) -> None:
    """Two redraws from the mirror after the last event."""
    app = pilot.app
    assert isinstance(app, DraptoApp)
    ticks = app.ticks
    await until(pilot, lambda: app.ticks >= ticks + 2)


def plain(widget: Static) -> str:
    return Content.from_markup(str(widget.content)).plain


def queue_percent(app: DraptoApp) -> int:
    found = re.search(r"queue [█░]+ +(\d+)%", plain(app.screen.query_one("#totals", Static)))
    assert found is not None
    return int(found.group(1))


def changed(entry: QueueEntry, **fields: Any) -> EntryChanged:
    return EntryChanged(entry=entry.model_copy(update=fields))


async def test_a_cancelled_run_leaves_no_running_segments_and_no_progress(
    tmp_path: Path,
) -> None:
    client = ReplayClient()
    app = replay_app(tmp_path, client)
    async with app.run_test(size=(110, 34)) as pilot:
        await until(pilot, lambda: on_main(app))
        await redrawn(pilot)
        mirror = app.mirror
        assert mirror is not None
        first = mirror.state.entries[0]  # Big Night: encoding, 22%, one segment running
        grid = app.screen.query_one(SegmentGrid)
        assert "1 running" in grid.text()
        before = queue_percent(app)
        client.play(changed(first, status=EntryStatus.CANCELLED, stage=None, finished=1.0))
        await until(pilot, lambda: mirror.state.entries[0].status is EntryStatus.CANCELLED)
        await redrawn(pilot)
        assert "running" not in grid.text() and "▶" not in grid.text()
        assert queue_percent(app) <= before  # a cancel is no progress (it was 7%, then 27%)
        table = app.screen.query_one(QueueTable)
        assert "16.0" not in table.row_text(0)  # no speed for an encode that stopped
        client.play(changed(first, status=EntryStatus.QUEUED, stage=None))  # retried
        await until(pilot, lambda: mirror.state.entries[0].status is EntryStatus.QUEUED)
        await redrawn(pilot)
        row = table.row_text(0)
        assert "queued" in row and " 0%" in row and "22%" not in row
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, JobScreen))
        await redrawn(pilot)
        screen = app.screen
        assert plain(screen.query_one("#timeline", Static)) == "not started"
        assert screen.query_one(SegmentGrid).text() == "no segments yet"
        await app.leave(stop_engine=False)


async def test_a_job_that_failed_says_why_once_in_the_log_and_on_its_screen(
    tmp_path: Path,
) -> None:
    client = ReplayClient()
    app = replay_app(tmp_path, client)
    async with app.run_test(size=(110, 34)) as pilot:
        await until(pilot, lambda: on_main(app))
        await redrawn(pilot)
        mirror = app.mirror
        assert mirror is not None
        second = mirror.state.entries[1]
        why = f"{second.input}: svt-av1 exited with status 1"
        client.play(
            JobFailed(job=second.job or "", stage="encoding", error=why),
            changed(second, status=EntryStatus.FAILED, stage=None, error=why, finished=1.0),
        )
        await until(pilot, lambda: mirror.state.entries[1].status is EntryStatus.FAILED)
        await redrawn(pilot)
        log = app.screen.query_one(EventLog)
        failed = [n.text for n in log.notices if "failed" in n.text]
        assert failed == [
            "Quiet Harbour (2019).mkv: failed while encoding: svt-av1 exited with status 1"
        ]
        await pilot.press("down", "enter")
        await until(pilot, lambda: isinstance(app.screen, JobScreen))
        await redrawn(pilot)
        timeline = plain(app.screen.query_one("#timeline", Static))
        assert "failed: svt-av1 exited with status 1" in timeline and "▶" not in timeline
        assert "running" not in app.screen.query_one(SegmentGrid).text()
        await app.leave(stop_engine=False)


async def test_a_file_that_fails_before_its_job_says_why_in_the_log_and_on_its_screen(
    tmp_path: Path, service: Service
) -> None:
    broken = tmp_path / "broken.mkv"
    broken.write_bytes(b"not a video at all " * 64)
    setup = await service.client("setup")
    await setup.pause()
    await setup.add_paths([str(broken)], options=JobOptions(preset=12))

    async def connect() -> EngineClient:
        return await service.client("tui-test")

    app = DraptoApp(connect, settings=tmp_path / "tui.toml")
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: on_main(app))
        mirror = app.mirror
        assert mirror is not None
        await setup.resume()
        await until(pilot, lambda: mirror.state.entries[0].status is EntryStatus.FAILED, 30)
        error = mirror.state.entries[0].error
        assert error
        await redrawn(pilot)
        log = app.screen.query_one(EventLog)
        lines = [n.text for n in log.notices if n.text.startswith("broken.mkv: failed")]
        assert len(lines) == 1 and lines[0].endswith(error.removeprefix(f"{broken}: "))
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, JobScreen))
        await redrawn(pilot)
        timeline = plain(app.screen.query_one("#timeline", Static))
        assert timeline.startswith("failed: ") and error.removeprefix(f"{broken}: ") in timeline
        assert "pending" not in plain(app.screen.query_one("#analysis", Static))
        await app.leave(stop_engine=False)
    await setup.close()


def with_entries(*inputs: str, status: EntryStatus = EntryStatus.QUEUED) -> EngineSnapshot:
    snapshot = ReplayClient().snapshot
    template = snapshot.entries[-1]
    more = [
        template.model_copy(
            update={"id": 100 + n, "input": path, "output": path + ".av1.mkv",
                    "position": 100 + n, "status": status,
                    "error": "not a video" if status is EntryStatus.FAILED else None}
        )
        for n, path in enumerate(inputs)
    ]  # fmt: skip
    return snapshot.model_copy(update={"entries": [*snapshot.entries, *more]})


async def test_files_of_the_same_name_show_the_folder_that_tells_them_apart(
    tmp_path: Path,
) -> None:
    snapshot = with_entries("/tv/Show A/Season 1/Pilot.mkv", "/tv/Show B/Season 1/Pilot.mkv")
    app = replay_app(tmp_path, ReplayClient(snapshot))
    async with app.run_test(size=(110, 34)) as pilot:
        await until(pilot, lambda: on_main(app))
        await redrawn(pilot)
        table = app.screen.query_one(QueueTable)
        rows = [table.row_text(i) for i in range(table.row_count)]
        assert rows[0].startswith(" Big Night (2021).mkv ")  # a unique name stays as it is
        assert "Show A" in rows[4] and "Show B" in rows[5]
        assert "Pilot.mkv" in rows[4] and "Pilot.mkv" in rows[5]
        await pilot.resize_terminal(80, 24)  # the narrow name column keeps them apart too
        await until(pilot, lambda: table.size.width <= 80)
        assert table.row_text(4)[:21] != table.row_text(5)[:21]
        await pilot.press("end", "enter")
        await until(pilot, lambda: isinstance(app.screen, JobScreen))
        await redrawn(pilot)
        title = plain(app.screen.query_one("#job-title", Static))
        assert title.startswith("Show B/Season 1/Pilot.mkv")
        await app.leave(stop_engine=False)


async def test_at_80x24_the_keys_and_the_queue_line_are_whole(tmp_path: Path) -> None:
    snapshot = with_entries("/films/Broken.mkv", status=EntryStatus.FAILED)
    app = replay_app(tmp_path, ReplayClient(snapshot))
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: on_main(app))
        await redrawn(pilot)
        await pilot.pause(0.2)  # the footer composes after the bindings are known
        keys = list(app.screen.query(FooterKey))
        palette = [k for k in keys if k.has_class("-command-palette")]
        edge = palette[0].region.x if palette else 80
        shown = [k.description for k in keys if k.region.width and k.region.right <= edge]
        assert "Quit" in shown and "Add" in shown and "Cancel" in shown
        line = plain(app.screen.query_one("#totals", Static))
        assert len(line) <= 80 and line.rstrip().endswith("1 failed"), line
        log = app.screen.query_one(EventLog)  # it failed before the TUI attached
        assert [n.text for n in log.notices if "failed" in n.text] == [
            "Broken.mkv: failed: not a video"
        ]
        await app.leave(stop_engine=False)


@pytest.mark.slow
async def test_a_real_cancel_leaves_no_running_cell_no_progress_and_no_stall_alert(
    tmp_path: Path, start_engine: Callable[[str], Service], make_media: Callable[..., Path]
) -> None:
    """Cancel a real encode mid-way (c, confirmed), pause, retry (r): the grid shows no
    running segment, the queue bar does not jump, the queued entry shows 0%, and no
    `stalled` alert comes for the cancelled encoders once the stall time has passed."""
    service = start_engine("stall_timeout_s = 2")
    # long enough that its encode still runs when the cancel lands on a loaded machine (at
    # 10 s it could end first, and a done entry is never cancelled)
    film = make_media("film.mkv", size=(640, 360), duration=40, gop=25)
    later = make_media("later.mkv", size=(64, 64), duration=1)

    async def connect() -> EngineClient:
        return await service.client("tui-test")

    app = DraptoApp(connect, settings=tmp_path / "tui.toml")
    async with app.run_test(size=(110, 34)) as pilot:
        await until(pilot, lambda: on_main(app))
        mirror = app.mirror
        assert mirror is not None
        options = JobOptions(preset=12, min_segment_s=1, max_segment_s=2)
        await mirror.client.add_paths([str(film)], options=options)
        grid = app.screen.query_one(SegmentGrid)

        def encoding() -> bool:
            job = mirror.state.jobs.get(mirror.state.entries[0].job or "")
            return job is not None and any(
                s.state == "running" and s.percent > 0 for s in job.segments.values()
            )

        await until(pilot, lambda: bool(mirror.state.entries) and encoding(), timeout=60)
        await mirror.client.pause()  # a second file waits behind it: the run goes on
        await mirror.client.add_paths([str(later)], options=options)
        await until(pilot, lambda: len(mirror.state.entries) == 2, 30)
        await redrawn(pilot)
        assert "running" in grid.text()
        before = queue_percent(app)
        await pilot.press("home", "c")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), 30)
        await pilot.press("y")
        await until(pilot, lambda: on_main(app), 30)
        await until(pilot, lambda: mirror.state.entries[0].status is EntryStatus.CANCELLED, 30)
        cancelled_at = time.time()
        await redrawn(pilot)
        assert "running" not in grid.text() and "▶" not in grid.text(), grid.text()
        assert queue_percent(app) <= before
        await pilot.press("r")
        # a loaded machine (the suite's other workers encoding) can take seconds
        await until(pilot, lambda: mirror.state.entries[0].status is EntryStatus.QUEUED, 30)
        await redrawn(pilot)
        row = app.screen.query_one(QueueTable).row_text(0)
        assert "queued" in row and " 0%" in row, row
        await pilot.pause(4.0)  # past the stall time of the cancelled encoders
        log = app.screen.query_one(EventLog)
        late = [n.text for n in log.notices if "stalled" in n.text and n.at > cancelled_at]
        assert late == []
        await app.leave(stop_engine=False)
