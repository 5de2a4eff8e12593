"""The words drapto uses for sizes and for Dolby Vision decisions."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from drapto_engine.cli.printers import PlainPrinter, summary_lines
from drapto_engine.core.errors import DraptoError
from drapto_engine.core.events import AnalysisReady, JobFinished, SegmentsPlanned
from drapto_engine.core.metrics import JobMetrics, JobSummary, SegmentMetrics, size_change
from drapto_engine.core.models import DolbyVisionInfo
from drapto_engine.services.encoding.dolby_vision import decide


def test_size_change_never_says_a_negative_smaller() -> None:
    assert size_change(26.04) == "26.0% smaller"
    assert size_change(-12.4) == "12.4% larger"
    assert size_change(-79.2, 0) == "79% larger"
    assert size_change(0.0, 0) == "0% smaller"


def _summary(input_bytes: int, output_bytes: int, metrics: JobMetrics | None = None) -> JobSummary:
    return JobSummary(
        input="in.mkv",
        output="out.mkv",
        input_bytes=input_bytes,
        output_bytes=output_bytes,
        reduction_percent=100.0 * (1 - output_bytes / input_bytes),
        wall_s=2.0,
        frames=100,
        encode_fps=20.0,
        segments=4,
        metrics=metrics,
    )


def test_summary_says_plainly_when_the_output_grew() -> None:
    grown = summary_lines(JobFinished(job="j", summary=_summary(1_000_000, 1_120_000)))
    assert "(12.0% larger)" in grown[1]
    assert grown[2].startswith("  the output is larger than the source")
    shrunk = summary_lines(JobFinished(job="j", summary=_summary(1_000_000, 800_000)))
    assert "(20.0% smaller)" in shrunk[1] and "larger" not in "\n".join(shrunk)


def test_summary_of_a_resumed_job_counts_this_runs_frames() -> None:
    done = [SegmentMetrics(index=3, frames=40, wall_s=2.0, fps=20.0, speed=1.0,
                           peak_rss_bytes=1, cpu_percent=1.0, queue_wait_s=0.0)]  # fmt: skip
    metrics = JobMetrics(segments=done, encoded_segments=1, resumed_segments=3)
    lines = summary_lines(JobFinished(job="j", summary=_summary(10, 5, metrics)))
    assert "over the 40 of 100 frames encoded in this run" in lines[1]
    assert "4 segments, 3 kept from the interrupted run" in lines[1]
    everything = JobMetrics(segments=[], encoded_segments=0, resumed_segments=4)
    kept = summary_lines(JobFinished(job="j", summary=_summary(10, 5, everything)))[1]
    assert kept.endswith(
        ", 2.0 s, nothing left to encode: all 4 segments kept from the interrupted run"
    )
    assert "fps" not in kept


def test_one_segment_is_said_in_the_singular() -> None:
    one = _summary(10, 5).model_copy(update={"segments": 1})
    assert "fps over 100 frames in 1 segment" in summary_lines(JobFinished(job="j", summary=one))[1]
    many = summary_lines(JobFinished(job="j", summary=_summary(10, 5)))[1]
    assert "in 4 segments" in many
    printer = PlainPrinter(io.StringIO())
    assert (
        printer.describe(SegmentsPlanned(job="j", count=1, frames=[100])) == "[j] 1 segment planned"
    )
    assert (
        printer.describe(SegmentsPlanned(job="j", count=3, frames=[40, 30, 30]))
        == "[j] 3 segments planned"
    )


def test_dolby_vision_profile_10_is_kept_over_an_hdr10_base() -> None:
    path = Path("again.mkv")
    assert decide(DolbyVisionInfo(profile=10, bl_compat_id=1), path, False).keep
    assert decide(DolbyVisionInfo(profile=10, bl_compat_id=4), path, False).keep
    with pytest.raises(DraptoError, match=r"profile 10 \(AV1\) with an IPT base layer") as info:
        decide(DolbyVisionInfo(profile=10, bl_compat_id=0), path, False)
    assert "cannot be kept in AV1" not in info.value.one_line()
    assert not decide(DolbyVisionInfo(profile=10, bl_compat_id=0), path, True).keep


def _remote_and_local_metrics(remote: int, local: int) -> JobMetrics:
    """The Monitor's figures over SegmentDone events: remote ones carry no encoder sample."""
    from drapto_engine.core.events import EventBus, SegmentDone
    from drapto_engine.monitoring import Monitor

    bus = EventBus()
    monitor = Monitor(bus)
    for index in range(remote + local):
        here = index >= remote
        bus.emit(SegmentDone(job="j", index=index, frames=25, size_bytes=1000, fps=10.0,
                             wall_s=2.5, remote=not here, host="here" if here else "w1",
                             peak_rss_bytes=300 * 2**20 if here else 0,
                             cpu_percent=150.0 if here else 0.0))  # fmt: skip
    return monitor.metrics("j")


def test_remote_segments_are_not_reported_as_using_no_memory_and_no_cpu() -> None:
    remote = _remote_and_local_metrics(remote=3, local=0)
    assert remote.remote_segments == 3
    line = summary_lines(JobFinished(job="j", summary=_summary(10, 5, remote)))[2]
    assert "0 MiB" not in line and "CPU 0%" not in line, line
    assert "encoder memory and CPU not measured on cluster workers" in line, line
    mixed = _remote_and_local_metrics(remote=2, local=1)
    assert (mixed.peak_rss_bytes, mixed.mean_cpu_percent) == (300 * 2**20, 150.0)
    line = summary_lines(JobFinished(job="j", summary=_summary(10, 5, mixed)))[2]
    assert "peak encoder 300 MiB, mean CPU 150% over the 1 segment encoded here" in line, line
    assert "2 on cluster workers, not measured there" in line, line
    local = _remote_and_local_metrics(remote=0, local=2)
    line = summary_lines(JobFinished(job="j", summary=_summary(10, 5, local)))[2]
    assert "peak encoder 300 MiB, mean CPU 150%, mean queue wait" in line, line


def _row(status: str, name: str) -> dict[str, object]:
    return {"status": status, "input": f"/lib/{name}", "output": f"/out/{name}",
            "input_bytes": 2_000_000, "output_bytes": None, "reduction_percent": None,
            "wall_s": None, "fps": None, "note": None, "rollbacks": []}  # fmt: skip


def test_the_batch_summary_table_keeps_its_columns_for_every_status() -> None:
    from drapto_engine.cli.summary import INTERRUPTED, print_summary

    out = io.StringIO()
    rows = [_row(s, f"{s}.mkv") for s in ("done", INTERRUPTED, "failed", "skipped", "cancelled")]
    print_summary(rows, out)
    header, *lines = out.getvalue().strip("\n").splitlines()
    column = header.index("input")
    for line, row in zip(lines, rows, strict=True):
        assert line.startswith(f"{row['status']} "), line
        assert line.index(f"{row['status']}.mkv") == column, (header, line)
        assert len(line) == len(header), (header, line)


def test_two_batch_summaries_in_the_same_second_keep_both_files(tmp_path: Path) -> None:
    from drapto_engine.cli.summary import write_summary

    first = write_summary(tmp_path, "a.toml@1", [_row("done", "a.mkv")], 1.0)
    second = write_summary(tmp_path, "b.toml@1", [_row("done", "b.mkv")], 1.0)
    assert first != second
    assert json.loads(first.read_text())["batch"] == "a.toml@1"
    assert json.loads(second.read_text())["batch"] == "b.toml@1"
    assert json.loads((tmp_path / "last-batch.json").read_text())["batch"] == "b.toml@1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["batches", "last-batch.json"]


def test_the_analysis_line_says_the_target_not_the_fallback_crf() -> None:
    printer = PlainPrinter(io.StringIO())
    fixed = AnalysisReady(
        job="j", dynamic_range="sdr", width=1280, height=720, frames=240, crf=24,
        encoder="svt-av1",
    )  # fmt: skip
    assert printer.describe(fixed) == "[j] sdr, 1280x720, 240 frames, no crop, crf 24, svt-av1"
    target = fixed.model_copy(update={"target_vmaf": 93.5, "crf_range": (15, 55)})
    assert printer.describe(target) == (
        "[j] sdr, 1280x720, 240 frames, no crop, target VMAF 93.5 (crf 15-55), svt-av1"
    )
