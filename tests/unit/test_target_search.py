"""Target quality's pure parts: the CRF search, libvmaf's log, the measurement's
arguments derived from the encode's, and how the option layers choose a CRF."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from drapto_engine.core.jobs import JobOptions
from drapto_engine.services.quality.search import (
    BEYOND_PROBES,
    MAX_LEARNED_MOVE,
    Target,
    brackets,
    estimate,
    first_final,
    learned_offset,
    learned_start,
    residual,
)
from drapto_engine.services.quality.vmaf import MeasureFailed, parse_log, sampled, vmaf_argv

TARGET = Target(93.0, 15, 50)


def test_interpolates_between_the_points_that_bracket_the_target() -> None:
    assert estimate([(30, 95.0), (40, 91.0)], TARGET) == 35
    assert brackets([(30, 95.0), (40, 91.0)], TARGET)


def test_extrapolates_and_clamps_when_every_point_is_on_one_side() -> None:
    assert estimate([(32, 97.0), (40, 95.0)], TARGET) == 48  # 1/4 a step: 8 more
    assert estimate([(32, 98.0), (40, 97.5)], TARGET) == 50  # the bound
    assert estimate([(32, 80.0)], TARGET) == 24  # one point: a step towards the target
    assert estimate([], TARGET) == 32  # the middle of the range


def test_a_flat_line_goes_to_the_bound() -> None:
    """A still picture scores the same at every CRF: past the target, the smallest
    file is the range's top; short of it, nothing but the bottom can help."""
    flat_above = [(36, 97.428), (44, 97.427958)]
    assert estimate(flat_above, TARGET) == TARGET.high
    assert estimate([(36, 85.0), (44, 85.01)], TARGET) == TARGET.low


def test_the_log_gives_mean_and_five_percent_low() -> None:
    frames = [{"frameNum": i, "metrics": {"vmaf": float(i)}} for i in range(1, 41)]
    score = parse_log(json.dumps({"frames": frames}))
    assert score.mean == pytest.approx(20.5)
    assert score.low5 == pytest.approx(1.5)  # the worst 2 of 40
    with pytest.raises(MeasureFailed):
        parse_log("{}")


def test_the_measurement_reads_the_frames_the_encode_read() -> None:
    encode = [
        "/x/ffmpeg", "-hide_banner", "-y", "-threads", "2", "-copyts", "-ss", "12.5",
        "-noautorotate", "-i", "/m/a,b:c.mkv", "-map", "0:3", "-frames:v", "40",
        "-vf", "trim=start=1.0,setpts=PTS-STARTPTS,yadif,crop=10:10:0:0",
        "-c:v", "libsvtav1", "-preset", "6", "-crf", "30", "-pix_fmt", "yuv420p10le",
        "/w/seg.mp4",
    ]  # fmt: skip
    argv = vmaf_argv(encode, Path("/w/seg.mp4"), Path("/w/l:o,g.json"), subsample=3, threads=2)
    assert argv[: argv.index("-i")] == [
        "/x/ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error",
        "-threads", "2", "-copyts", "-ss", "12.5", "-noautorotate",
    ]  # fmt: skip
    graph = argv[argv.index("-filter_complex") + 1]
    assert graph.startswith(
        "[0:3]trim=start=1.0,setpts=PTS-STARTPTS,yadif,crop=10:10:0:0,trim=end_frame=40,"
        "format=yuv420p10le,settb=AVTB,setpts=N[ref];"
    )
    assert "n_subsample=3:n_threads=2" in graph and "l\\\\:o\\,g.json" in graph
    assert argv[argv.index("-frames:v") + 1] == "40"


def test_the_upper_layer_chooses_between_crf_and_target() -> None:
    config = JobOptions(target_vmaf=93)
    assert JobOptions(crf=30).over(config).model_dump(exclude_none=True) == {"crf": 30}
    fixed = JobOptions(crf=30)
    chosen = JobOptions(target_vmaf=90.5).over(fixed)
    assert (chosen.crf, chosen.target_vmaf) == (None, 90.5)
    assert JobOptions(crf_range="20 - 40").crf_range == (20, 40)


def test_a_probe_sample_selects_the_same_frames_on_both_sides() -> None:
    encode = [
        "/x/ffmpeg", "-i", "/m/a.mkv", "-map", "0:0", "-frames:v", "100",
        "-vf", "setpts=PTS-STARTPTS", "-pix_fmt", "yuv420p10le", "/w/probe-30.mp4",
    ]  # fmt: skip
    probe = sampled(encode)
    assert probe[probe.index("-frames:v") + 1] == "64"  # frames 0-31 and 64-95
    assert probe[probe.index("-vf") + 1] == "setpts=PTS-STARTPTS,select=lt(mod(n\\,64)\\,32)"
    argv = vmaf_argv(probe, Path("/w/probe-30.mp4"), Path("/w/l.json"))
    graph = argv[argv.index("-filter_complex") + 1]
    assert graph.startswith(
        "[0:0]setpts=PTS-STARTPTS,select=lt(mod(n\\,64)\\,32),trim=end_frame=64,"
    )


def test_the_default_range_reaches_the_crfs_1080p_targets_need() -> None:
    """At 1080p a target of 93 needed CRF above 55 in easy scenes (bench/README.md)."""
    from drapto_engine.core.jobs import DEFAULT_CRF_RANGE
    from drapto_engine.core.models import EncodeSettings
    from drapto_engine.services.encoding.plan import VideoPlan

    assert DEFAULT_CRF_RANGE == (10, 63)
    assert EncodeSettings().crf_range == DEFAULT_CRF_RANGE
    assert VideoPlan.__dataclass_fields__["crf_range"].default == DEFAULT_CRF_RANGE


def test_the_job_learns_the_finals_offset_from_the_probes_line() -> None:
    probes = [(30, 95.0), (40, 91.0)]  # the line: 93 at CRF 35
    assert residual(probes, 35, 94.5) == pytest.approx(1.5)
    assert residual([(30, 95.0)], 35, 94.5) is None  # no line from one point
    assert learned_offset([]) == 0.0
    assert learned_offset([1.5, 9.0, 1.0]) == pytest.approx(1.5)  # the median: an outlier aside
    # finals scoring 1.2 above the probes' line: the first final goes 3 CRFs higher
    shifted = Target(93.0, 15, 50, offset=1.2)
    assert first_final(probes, shifted) == 38
    assert first_final(probes, TARGET) == 35


def test_a_learned_offset_moves_the_first_final_at_most_a_few_crfs() -> None:
    """The finals' offset grows with the CRF (bench/README.md, 1080p): a large median
    learned at one CRF must not send another segment to the range's top."""
    probes = [(30, 95.0), (40, 91.0)]  # 93 at CRF 35
    assert first_final(probes, Target(93.0, 15, 50, offset=10.0)) == 35 + MAX_LEARNED_MOVE
    assert first_final(probes, Target(93.0, 15, 50, offset=-10.0)) == 35 - MAX_LEARNED_MOVE


def test_the_first_probe_goes_where_the_jobs_finished_segments_were_kept() -> None:
    """Probes around the target are read between them; from the range's middle a
    segment needing CRF 52 was read from probes at 36 and 44, 8 CRFs beyond them."""
    assert learned_start([]) is None
    assert learned_start([52, 50, 55]) == 52
    assert Target(93.0, 10, 63).start == 36
    assert Target(93.0, 10, 63, hint=52).start == 52
    assert Target(93.0, 10, 40, hint=52).start == 40  # clamped to the range
    assert estimate([], Target(93.0, 10, 63, hint=52)) == 52


def test_the_plans_target_carries_what_the_job_learned() -> None:
    from drapto_engine.services.encoding.plan import VideoPlan
    from drapto_engine.services.quality.runner import target_of

    fields = VideoPlan.__dataclass_fields__
    assert fields["vmaf_start"].default is None and fields["target_vmaf"].default is None

    class Plan:  # the fields target_of reads
        target_vmaf, crf_range, vmaf_offset, vmaf_start = 93.0, (10, 63), 1.5, 50

    assert target_of(Plan()) == Target(93.0, 10, 63, offset=1.5, hint=50)  # type: ignore[arg-type]
    Plan.target_vmaf = None  # type: ignore[assignment]
    assert target_of(Plan()) is None  # type: ignore[arg-type]


def test_a_learned_offset_takes_a_first_final_only_a_little_beyond_the_probes() -> None:
    """The 360p benchmark's second content: probes at 43 and 51 both above 93, the
    job's offset +1.1 (learned on other contents) would send the final to 55, where it
    scored 89.6 and its correction overshot to 94.5; it stops 2 beyond the probes."""
    probes = [(43, 95.28), (51, 93.04)]
    assert estimate(probes, Target(93.0, 10, 63)) == 51
    assert first_final(probes, Target(93.0, 10, 63, offset=1.1)) == 51 + BEYOND_PROBES
    # inside the probes the offset still moves the final as far as MAX_LEARNED_MOVE
    inside = [(36, 95.0), (52, 91.0)]  # 93 at CRF 44
    assert first_final(inside, Target(93.0, 10, 63, offset=1.2)) == 44 + MAX_LEARNED_MOVE
    assert first_final(inside, Target(93.0, 10, 63, offset=-1.2)) == 44 - MAX_LEARNED_MOVE


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("40-20", "must be two CRFs from 1 to 63, the first lower, not 40-20"),
        ("0-30", "must be two CRFs from 1 to 63, the first lower, not 0-30"),
        ("20", "must be MIN-MAX, two whole CRFs (e.g. 15-50), not '20'"),
    ],
)
def test_a_bad_crf_range_is_said_once_and_plainly(text: str, said: str) -> None:
    import argparse

    from drapto_engine.cli.args import crf_range

    with pytest.raises(argparse.ArgumentTypeError) as raised:
        crf_range(text)
    assert str(raised.value) == said
