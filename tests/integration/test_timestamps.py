"""Every output frame at its source frame's time, to the millisecond Matroska keeps.

The times are read from the packets of both files (no decoding) by the test's own code,
and rounded the way ffmpeg rounds (halves away from zero): a plain `ffmpeg -c copy` into
Matroska gives exactly these times, and so must drapto's segmented encode.
"""

from __future__ import annotations

import dataclasses
import itertools
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import pytest
from encode_helpers import encode
from mediagen import BITEXACT, run_ffmpeg

from drapto_engine.services.validation import Expected, check_output, source_frame_times

pytestmark = pytest.mark.slow

MS = Fraction(1, 1000)


def _round(value: Fraction) -> int:
    """Nearest integer, halves away from zero (av_rescale_q's default)."""
    n = (abs(value) * 2 + 1) // 2
    return int(n if value >= 0 else -n)


def packet_times(path: Path) -> tuple[list[Fraction], int]:
    """Exact sorted times of the video packets, and the container start in microseconds."""
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        times = sorted(
            p.pts * Fraction(stream.time_base)
            for p in c.demux(stream)
            if p.size and p.pts is not None
        )
        return times, c.start_time or 0


def expected_ms(source: Path) -> list[int]:
    """The source's frame times from its container's start, rounded to milliseconds."""
    with av.open(str(source)) as c:
        tb = Fraction(c.streams.video[0].time_base)
    times, start_us = packet_times(source)
    start = _round(Fraction(start_us, 1_000_000) / tb) * tb  # ffmpeg shifts in the stream's tb
    return [_round((t - start) / MS) for t in times]


def output_ms(output: Path) -> list[int]:
    times, _ = packet_times(output)
    return [_round(t / MS) for t in times]


def make(ffmpeg: str, out: Path, graph: str, *extra: str, audio: bool = False) -> Path:
    inputs = ["-f", "lavfi", "-i", graph]
    maps = ["-map", "0:v"]
    if audio:
        inputs += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=9"]
        maps += ["-map", "1:a", "-c:a", "aac"]
    # Keyframes every 10 frames: ffmpeg's MPEG-TS seek finds nothing to decode within a
    # second of the end otherwise (and drapto falls back to a whole-file encode).
    codec = ["-c:v", "libx264", "-preset", "ultrafast", "-g", "10", "-pix_fmt", "yuv420p"]
    run_ffmpeg(ffmpeg, [*inputs, *maps, *codec, *BITEXACT, *extra, str(out)])
    return out


SIZE = "192x108"
# 30000/1001 and 24000/1001 in MP4 (time base 1/30000, 1/24000): about half of the frame
# times fall between two milliseconds, where a second rounding at a join goes astray.
CONSTANT_30 = f"testsrc2=s={SIZE}:r=30000/1001:d=9"
CONSTANT_24 = f"testsrc2=s={SIZE}:r=24000/1001:d=9"
# Variable: 29.97 fps steps with every third frame 1/90 s late, in a 1/90000 time base.
VFR = (
    f"testsrc2=s={SIZE}:r=30000/1001:d=9,settb=1/90000,"
    r"setpts='N*3003+if(eq(mod(N\,3)\,1)\,1000\,0)'"
)
VFR_ARGS = (
    "-fps_mode", "passthrough", "-enc_time_base:v", "filter", "-video_track_timescale", "90000"
)  # fmt: skip


@pytest.mark.parametrize(
    ("name", "graph", "extra"),
    [
        ("ntsc30.mp4", CONSTANT_30, ()),
        ("film24.mp4", CONSTANT_24, ()),
        ("vfr.mp4", VFR, VFR_ARGS),
        # MPEG-TS starts at 1.4 s (and in a 1/90000 time base): the start is taken off.
        ("ntsc30.ts", CONSTANT_30, ()),
    ],
)
def test_every_frame_keeps_its_source_time(
    ffmpeg: str, tmp_path: Path, name: str, graph: str, extra: tuple[str, ...]
) -> None:
    source = make(ffmpeg, tmp_path / name, graph, *extra, audio=name.endswith(".ts"))
    wanted = expected_ms(source)
    if name == "vfr.mp4":
        steps = {b - a for a, b in itertools.pairwise(wanted)}
        assert len(steps) >= 3, steps  # really variable
    # The plain remux keeps them all: what drapto must match.
    remuxed = tmp_path / "remux.mkv"
    run_ffmpeg(ffmpeg, ["-i", str(source), "-map", "0", "-c", "copy", str(remuxed)])
    assert output_ms(remuxed) == wanted
    output = tmp_path / "out.mkv"
    run = encode(
        source,
        output,
        "--no-scenes",
        "--min-segment",
        "0.5",
        "--max-segment",
        "0.7",
        "--workers",
        "2",
    )
    assert run.returncode == 0, run.stderr
    assert run.of("rollback") == []
    assert run.of("segments_planned")[0]["count"] >= 10
    got = output_ms(output)
    assert len(got) == len(wanted)
    wrong = [(i, g, w) for i, (g, w) in enumerate(zip(got, wanted, strict=True)) if g != w]
    assert wrong == [], f"{len(wrong)} of {len(got)} frames off, first {wrong[:3]}"


@pytest.fixture(scope="module")
def av1_file(tmp_path_factory: pytest.TempPathFactory, ffmpeg: str) -> Path:
    """An AV1 file at 29.97 fps whose Matroska times are its own rounded ones."""
    out = tmp_path_factory.mktemp("t") / "ok.mkv"
    subprocess.run(
        [
            ffmpeg, "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
            "testsrc2=s=320x240:r=30000/1001:d=2", "-c:v", "libsvtav1", "-preset", "12",
            "-pix_fmt", "yuv420p10le", str(out),
        ],
        check=True,
    )  # fmt: skip
    return out


def _expected(path: Path) -> Expected:
    return Expected(
        width=320,
        height=240,
        frames=60,
        duration_s=60 * 1001 / 30000,
        frame_duration_s=1001 / 30000,
        frame_times=source_frame_times(path),
    )


def test_validation_accepts_the_same_times(av1_file: Path, ffmpeg: str) -> None:
    assert check_output(av1_file, _expected(av1_file), ffmpeg) == []


@pytest.mark.parametrize(
    ("setts", "wrong"),
    [
        ("pts=if(eq(N\\,10)\\,PTS+1\\,PTS):dts=if(eq(N\\,10)\\,DTS+1\\,DTS)", 1),  # one frame, 1 ms
        ("pts=PTS+1:dts=DTS+1", 60),  # the whole video, 1 ms late
    ],
)
def test_validation_rejects_shifted_frame_times(
    av1_file: Path, ffmpeg: str, tmp_path: Path, setts: str, wrong: int
) -> None:
    shifted = tmp_path / "shifted.mkv"
    run_ffmpeg(
        ffmpeg, ["-i", str(av1_file), "-c", "copy", "-bsf:v", f"setts={setts}", str(shifted)]
    )
    expected = _expected(av1_file)
    failures = check_output(shifted, expected, ffmpeg)
    assert len(failures) == 1, failures
    assert failures[0].startswith(f"frame times: {wrong} of 60 frames are off the source's"), (
        failures
    )
    # Without the source's times the check is skipped: the rest of the file is fine.
    assert check_output(shifted, dataclasses.replace(expected, frame_times=None), ffmpeg) == []


def test_validation_allows_for_the_source_start(ffmpeg: str, tmp_path: Path) -> None:
    """A source starting at 1.4 s (MPEG-TS) is compared from its start, as ffmpeg shifts it."""
    source = make(ffmpeg, tmp_path / "s.ts", f"testsrc2=s={SIZE}:r=30000/1001:d=1")
    times = source_frame_times(source)
    assert times[0] == 0
    out = tmp_path / "copy.mkv"
    run_ffmpeg(ffmpeg, ["-i", str(source), "-c", "copy", str(out)])
    from drapto_engine.services.validation import check_frame_times

    assert check_frame_times(out, None, times) == []
    assert check_frame_times(out, None, [t + MS for t in times])[0].startswith(
        "frame times: 30 of 30"
    )
