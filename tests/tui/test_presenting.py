"""What the TUI shows, as plain values: queue totals and ETA, notices, segment cells.
Fast and screenless; the states are built from the engine's own models."""

from __future__ import annotations

import pytest

from drapto_engine.core.api import EngineSnapshot, EngineView, JobView, SegmentView
from drapto_engine.core.events import (
    AnalysisReady,
    EntryChanged,
    JobFailed,
    SegmentDone,
    SegmentPlanned,
    SegmentProgress,
    SegmentStarted,
    StageChanged,
    WarningEvent,
)
from drapto_engine.core.jobs import EntryStatus, QueueEntry
from drapto_engine.core.metrics import JobSummary
from drapto_engine.core.savings import Totals
from drapto_tui import presentation
from drapto_tui.notices import Notice, describe, failure
from drapto_tui.widgets.segment_grid import CELL, cell, strip_states, summary


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
        totals = presentation.queue_totals(view.state)
        assert totals.eta_s == 10 and not totals.eta_at_least
        assert totals.fraction == 0.5 and totals.fps == 50  # the old entry does not count

    def test_progress_counts_only_entries_waiting_or_running_in_this_run(self) -> None:
        old = [finished(n, 60) for n in range(1, 6)]  # done before: not this run's
        view = EngineView(EngineSnapshot(entries=[*old, entry(7, EntryStatus.QUEUED)]))
        encoding(view, 6, frames=1000, done=500, fps=50)
        counts = presentation.queue_counts(view.state)
        assert presentation.queue_totals(view.state, counts).fraction == 0.25  # 0.5 of 2 entries
        view.apply(EntryChanged(entry=finished(6, 60)))  # 6 ends: it still counts, whole
        counts = presentation.queue_counts(view.state, counts.run)
        assert presentation.queue_totals(view.state, counts).fraction == 0.5
        view.apply(EntryChanged(entry=finished(7, 60)))  # nothing waits: the run is over
        counts = presentation.queue_counts(view.state, counts.run)
        assert (
            counts.run == frozenset()
            and presentation.queue_totals(view.state, counts).fraction == 0
        )

    def test_queued_entries_take_the_mean_time_of_finished_ones(self) -> None:
        snapshot = EngineSnapshot(
            entries=[finished(1, 60), finished(2, 120), entry(4, EntryStatus.QUEUED)]
        )
        view = EngineView(snapshot)
        encoding(view, 3, frames=1000, done=500, fps=50)
        totals = presentation.queue_totals(view.state)
        assert totals.eta_s == 10 + 90 and not totals.eta_at_least

    def test_without_a_finished_job_the_eta_is_a_lower_bound(self) -> None:
        view = EngineView(EngineSnapshot(entries=[entry(2, EntryStatus.QUEUED)]))
        encoding(view, 1, frames=1000, done=500, fps=50)
        totals = presentation.queue_totals(view.state)
        assert totals.eta_s == 10 and totals.eta_at_least
        line = presentation.totals_line(totals, paused=True)
        assert line.startswith("[$warning]paused[/]  queue ")
        assert "ETA ≥0:10" in line and "1 running, 1 queued" in line

    def test_failed_and_cancelled_entries_are_no_progress(self) -> None:
        view = EngineView(EngineSnapshot(entries=[entry(3, EntryStatus.QUEUED)]))
        encoding(view, 1, frames=1000, done=300, fps=50)
        encoding(view, 2, frames=1000, done=100, fps=50)
        counts = presentation.queue_counts(view.state)
        assert round(presentation.queue_totals(view.state, counts).fraction, 3) == round(0.4 / 3, 3)
        view.apply(EntryChanged(entry=entry(1, EntryStatus.CANCELLED, job="job1")))
        view.apply(EntryChanged(entry=entry(3, EntryStatus.FAILED, error="not a video")))
        counts = presentation.queue_counts(view.state, counts.run)
        assert (
            presentation.queue_totals(view.state, counts).fraction == 0.1
        )  # only 2 is left, at 10%
        assert (
            presentation.job_progress(view.state.entries[0], view.state.jobs["job1"]).fraction == 0
        )

    def test_the_counts_stay_whole_on_a_narrow_line(self) -> None:
        counts = {"running": 1, "queued": 12, "done": 30, "failed": 1}
        totals = presentation.QueueTotals(counts, 0.5, 123.4, 4000.0, eta_at_least=True)
        wide = presentation.totals_line(totals, paused=True)
        assert "fps" in wide and "ETA" in wide
        narrow = presentation.totals_line(totals, paused=True, width=78)
        shown = narrow.replace("[$warning]paused[/]", "paused")
        assert len(shown) <= 78 and shown.endswith("1 running, 12 queued, 30 done, 1 failed")

    def test_the_space_saved_ends_the_line_where_it_fits(self) -> None:
        counts = {"running": 1, "done": 3}
        totals = presentation.QueueTotals(counts, 0.5, 12.5, 40.0, eta_at_least=False)
        saved = Totals(files=3, bytes_before=4_100_000_000, bytes_after=1_900_000_000,
                       bytes_saved=2_200_000_000)  # fmt: skip
        line = presentation.totals_line(totals, paused=False, saved=saved)
        assert line.endswith("1 running, 3 done  saved 2.2 GB (54%)")
        assert presentation.totals_line(totals, paused=False, saved=Totals()) == (
            presentation.totals_line(totals, paused=False)
        )
        plain = presentation.totals_line(totals, paused=False, width=60)
        assert presentation.totals_line(totals, paused=False, width=60, saved=saved) == plain

    def test_repeated_names_get_the_folders_that_tell_them_apart(self) -> None:
        paths = ["/tv/A/Season 1/Pilot.mkv", "/tv/B/Season 1/Pilot.mkv",
                 "/tv/A/Season 2/Pilot.mkv", "/tv/A/Extra.mkv"]  # fmt: skip
        entries = [
            QueueEntry(id=n, input=p, output=p + ".av1.mkv", position=n)
            for n, p in enumerate(paths)
        ]
        assert presentation.labels(entries) == {
            0: "A/Season 1/Pilot.mkv",
            1: "B/Season 1/Pilot.mkv",
            2: "A/Season 2/Pilot.mkv",
        }
        assert presentation.fit_middle("A/Season 1/Pilot.mkv", 11) == "A/Sea…t.mkv"

    def test_cached_counts_give_the_same_totals(self) -> None:
        view = EngineView(EngineSnapshot(entries=[finished(1, 60), entry(3, EntryStatus.QUEUED)]))
        encoding(view, 2, frames=600, done=150, fps=30)
        counts = presentation.queue_counts(view.state)
        assert presentation.queue_totals(
            view.state, counts, view.entry
        ) == presentation.queue_totals(view.state)

    def test_an_empty_queue(self) -> None:
        totals = presentation.queue_totals(EngineSnapshot())
        assert (totals.fraction, totals.eta_s) == (0.0, None)
        assert presentation.totals_line(totals, paused=False).endswith("empty")


class TestNotices:
    def test_a_failure_names_its_file_stage_and_reason_once(self) -> None:
        view = EngineView()
        encoding(view, 1, frames=100, done=50, fps=10)
        view.apply(StageChanged(job="job1", stage="muxing"))
        view.apply(JobFailed(job="job1", stage="muxing", error="/films/1.mkv: disk full"))
        assert describe(JobFailed(job="job1", stage="muxing", error="disk full")) is None
        failed = entry(1, EntryStatus.FAILED, job="job1", error="/films/1.mkv: disk full")
        notice = failure(failed, view.state.jobs["job1"], "1.mkv")
        assert notice.severity == "error" and notice.pop_up
        assert notice.text == "1.mkv: failed while muxing: disk full"
        unread = entry(2, EntryStatus.FAILED, error="/films/2.mkv: not a video")
        assert failure(unread, None, "2.mkv").text == "2.mkv: failed: not a video"

    def test_log_only_notices_are_not_counted(self) -> None:
        done = describe(WarningEvent(message="bad.mkv: skipped"))
        assert done is not None and done.pop_up
        assert not Notice("information", "attached", pop_up=False).pop_up


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
        states += [
            SegmentView(  # the widest figures a cell can meet
                index=1234, start_frame=0, frames=10, state="done", fps=1234.5,
                size_bytes=271_100,
            ),
            SegmentView(
                index=1234, start_frame=0, frames=10, state="running", percent=100, fps=1234
            ),
        ]  # fmt: skip
        cells = [cell(s) for s in states]
        assert all(len(c) == CELL - 1 for c in cells)
        assert all(c.rstrip().endswith("f") for c in cells if "✓" in c or "%" in c)
        assert "271k" in cells[4] and "1234f" in cells[4] and "1234f" in cells[5]
        assert "42%" in cells[0] and "31f" in cells[0]
        assert "1.4M" in cells[1] and "30f" in cells[1]
        assert "x3" in cells[2] and "retry 2" in cells[3]
        job = JobView(id="j", segments={s.index: s for s in states[:4]})
        assert summary(job) == "4 segments: 1 running, 1 pending, 1 done, 1 failed"
        assert summary(JobView(id="j", segments={9: states[3]})) == "1 segment: 1 pending"

    def test_a_target_quality_segment_shows_its_crf_and_score(self) -> None:
        """The engine's view takes the CRF and score from segment_done; the cell shows
        them in place of size and fps (a fixed-CRF cell is unchanged, as above)."""
        view = EngineView()
        for event in (
            SegmentPlanned(job="j", index=1234, start_frame=0, frames=10),
            SegmentDone(
                job="j", index=1234, frames=10, size_bytes=271_100, fps=30.0, wall_s=1.0,
                crf=31, vmaf=93.27, probes=[(32, 92.5), (24, 96.0)], target="met",
            ),
        ):  # fmt: skip
            view.apply(event)
        done = view.job("j").segments[1234]
        assert (done.crf, done.vmaf) == (31, 93.27)
        shown = cell(done)
        assert len(shown) == CELL - 1
        assert "crf31" in shown and "93.3" in shown and "271k" not in shown

    def test_a_long_job_fits_its_strip(self) -> None:
        states = ["done"] * 500 + ["running"] + ["pending"] * 499
        shown = strip_states(states, width=78, lines=2)
        assert len(shown) <= 156 and "running" in shown
        assert shown[0] == "done" and shown[-1] == "pending"
        assert strip_states(["done", "running"], 78, 2) == ["done", "running"]


class TestSizes:
    def test_the_estimate_waits_for_two_segments_and_uses_every_encoded_frame(self) -> None:
        segments = {
            0: SegmentView(index=0, start_frame=0, frames=100, state="done", size_bytes=300),
            1: SegmentView(index=1, start_frame=100, frames=100, state="running", percent=50),
            2: SegmentView(index=2, start_frame=200, frames=200, state="pending"),
        }
        job = JobView(id="j", segments=segments)
        assert presentation.estimated_bytes(job, 400) is None  # the first segment alone misleads
        job.segments[1] = SegmentView(
            index=1, start_frame=100, frames=100, state="done", size_bytes=500
        )
        assert (
            presentation.estimated_bytes(job, 400) == 1600
        )  # 800 bytes for 200 frames, 400 frames
        job.segments[2] = SegmentView(  # resumed without a size: not measured, not counted
            index=2, start_frame=200, frames=200, state="done", resumed=True
        )
        assert presentation.estimated_bytes(job, 400) == 1600

    def test_a_whole_file_job_is_estimated_from_its_one_segment(self) -> None:
        one = SegmentView(index=0, start_frame=0, frames=50, state="done", size_bytes=1000)
        assert presentation.estimated_bytes(JobView(id="j", segments={0: one}), 50) == 1000

    @pytest.mark.parametrize(
        ("value", "shown"),
        [(912, "912"), (271_100, "271k"), (9_960, "10k"), (999_600, "1.0M"),
         (1_400_000, "1.4M"), (12_300_000, "12M"), (3_100_000_000, "3.1G"), (None, "-")],
    )  # fmt: skip
    def test_short_sizes_fit_five_characters(self, value: int | None, shown: str) -> None:
        assert presentation.short_size(value) == shown and len(shown) <= 5


class TestBadge:
    def test_the_entry_keeps_the_dynamic_range_when_the_job_is_gone(self) -> None:
        done = finished(1, 60).model_copy(update={"dynamic_range": "dolby_vision"})
        assert presentation.badge(None, done) == "DV"  # after an engine restart: no job view
        assert presentation.badge(None, finished(2, 60)) == ""


def test_the_job_screen_says_the_target_not_the_fallback_crf() -> None:
    from drapto_tui.screens.job import analysis

    view = EngineView()
    encoding(view, 1, frames=100, done=10, fps=5.0)
    job = view.state.jobs["job1"]
    assert "CRF 30, svt" in analysis(job)
    assert job.analysis is not None
    job.analysis = job.analysis.model_copy(update={"target_vmaf": 93.0, "crf_range": (15, 55)})
    text = analysis(job)
    assert "target VMAF 93 (CRF 15-55), svt" in text and "CRF 30" not in text
