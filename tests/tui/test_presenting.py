"""What the TUI shows, as plain values: queue totals and ETA, notices, segment cells.
Fast and screenless; the states are built from the engine's own models."""

from __future__ import annotations

from drapto_engine.core.api import EngineSnapshot, EngineView, JobView, SegmentView
from drapto_engine.core.events import (
    AnalysisReady,
    EntryChanged,
    JobFailed,
    SegmentPlanned,
    SegmentProgress,
    SegmentStarted,
    Warning,
)
from drapto_engine.core.jobs import EntryStatus, QueueEntry
from drapto_engine.core.metrics import JobSummary
from drapto_tui import format as fmt
from drapto_tui.notices import Notice, describe, pop_ups
from drapto_tui.widgets.segment_grid import CELL, cell, summary


def entry(number: int, status: EntryStatus, **fields: object) -> QueueEntry:
    return QueueEntry(
        id=number,
        input=f"/films/{number}.mkv",
        output=f"/films/{number}.av1.mkv",
        position=number,
        status=status,
        **fields,  # type: ignore[arg-type]
    )


def finished(number: int, wall_s: float) -> QueueEntry:
    summary = JobSummary(
        input=f"/films/{number}.mkv",
        output=f"/films/{number}.av1.mkv",
        input_bytes=1000,
        output_bytes=400,
        reduction_percent=60,
        wall_s=wall_s,
        frames=100,
        encode_fps=10,
        segments=1,
    )
    return entry(number, EntryStatus.DONE, summary=summary)


def encoding(view: EngineView, number: int, frames: int, done: int, fps: float) -> None:
    """An entry half-way through one segment of `frames`, at `fps`."""
    job = f"job{number}"
    view.apply(EntryChanged(entry=entry(number, EntryStatus.RUNNING, job=job, stage="encoding")))
    view.apply(
        AnalysisReady(
            job=job,
            dynamic_range="hdr10",
            width=64,
            height=64,
            frames=frames,
            crf=30,
            encoder="svt",
        )
    )
    view.apply(SegmentPlanned(job=job, index=0, start_frame=0, frames=frames))
    view.apply(SegmentStarted(job=job, index=0, threads=2))
    view.apply(
        SegmentProgress(
            job=job, index=0, frame=done, frames=frames, fps=fps, percent=100 * done / frames
        )
    )


class TestQueueTotals:
    def test_running_frames_left_at_the_speed_now(self) -> None:
        view = EngineView(EngineSnapshot(entries=[finished(1, 60)]))
        encoding(view, 2, frames=1000, done=500, fps=50)
        totals = fmt.queue_totals(view.state)
        assert totals.eta_s == 10 and not totals.eta_at_least
        assert totals.fraction == 0.75 and totals.fps == 50

    def test_queued_entries_take_the_mean_time_of_finished_ones(self) -> None:
        snapshot = EngineSnapshot(
            entries=[finished(1, 60), finished(2, 120), entry(4, EntryStatus.QUEUED)]
        )
        view = EngineView(snapshot)
        encoding(view, 3, frames=1000, done=500, fps=50)
        totals = fmt.queue_totals(view.state)
        assert totals.eta_s == 10 + 90 and not totals.eta_at_least

    def test_without_a_finished_job_the_eta_is_a_lower_bound(self) -> None:
        view = EngineView(EngineSnapshot(entries=[entry(2, EntryStatus.QUEUED)]))
        encoding(view, 1, frames=1000, done=500, fps=50)
        totals = fmt.queue_totals(view.state)
        assert totals.eta_s == 10 and totals.eta_at_least
        line = fmt.totals_line(totals, paused=True)
        assert line.startswith("[$warning]paused[/]  queue ")
        assert "ETA ≥0:10" in line and "1 running, 1 queued" in line

    def test_cached_counts_give_the_same_totals(self) -> None:
        view = EngineView(EngineSnapshot(entries=[finished(1, 60), entry(3, EntryStatus.QUEUED)]))
        encoding(view, 2, frames=600, done=150, fps=30)
        counts = fmt.queue_counts(view.state)
        assert fmt.queue_totals(view.state, counts, view.entry) == fmt.queue_totals(view.state)

    def test_an_empty_queue(self) -> None:
        totals = fmt.queue_totals(EngineSnapshot())
        assert (totals.fraction, totals.eta_s) == (0.0, None)
        assert fmt.totals_line(totals, paused=False).endswith("empty")


class TestNotices:
    def test_a_job_event_names_its_file(self) -> None:
        notice = describe(JobFailed(job="abc", stage="muxing", error="disk full"), "Film.mkv")
        assert notice is not None and notice.severity == "error" and notice.pop_up
        assert notice.text == "Film.mkv: failed while muxing: disk full"

    def test_a_burst_pops_up_as_a_few_lines_and_a_count(self) -> None:
        burst = [describe(Warning(message=f"bad{i}.mkv: skipped")) for i in range(20)]
        shown = pop_ups([n for n in burst if n is not None])
        assert [n.text for n in shown[:2]] == ["bad0.mkv: skipped", "bad1.mkv: skipped"]
        assert shown[2].text.startswith("18 more") and len(shown) == 3

    def test_log_only_notices_do_not_pop_up(self) -> None:
        quiet = Notice("information", "attached", pop_up=False)
        assert pop_ups([quiet]) == []


class TestSegmentCells:
    def test_every_state_fits_its_cell(self) -> None:
        states = [
            SegmentView(index=7, start_frame=0, frames=10, state="running", percent=42, fps=31),
            SegmentView(
                index=8, start_frame=0, frames=10, state="done", fps=30, size_bytes=1_400_000
            ),
            SegmentView(index=9, start_frame=0, frames=10, state="failed", attempts=3),
            SegmentView(index=1234, start_frame=0, frames=10, state="pending", attempts=2),
        ]
        cells = [cell(s) for s in states]
        assert all(len(c) == CELL - 1 for c in cells)
        assert "42%" in cells[0] and "31f" in cells[0]
        assert "1.4 MB" in cells[1] and "30f" in cells[1]
        assert "x3" in cells[2] and "retry 2" in cells[3]
        job = JobView(id="j", segments={s.index: s for s in states})
        assert summary(job) == "4 segments: 1 running, 1 pending, 1 done, 1 failed"
