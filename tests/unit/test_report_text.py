"""The words drapto uses for sizes and for Dolby Vision decisions."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from drapto_engine.cli.printers import PlainPrinter, summary_lines
from drapto_engine.core.errors import DraptoError
from drapto_engine.core.events import JobFinished, SegmentsPlanned
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
