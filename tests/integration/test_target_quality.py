"""Target quality (`--target-vmaf`): real encodes of a clip whose two scenes differ
greatly in difficulty, each segment scored again here by the test's own libvmaf run."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

from encode_helpers import encode
from mediagen import Cut

from drapto_engine.infrastructure.paths import state_db

TARGET = 90.0
EASY = Cut(2.0, "testsrc2")
HARD = Cut(2.0, "mandelbrot")
SEGMENTS = ["--min-segment", "1", "--max-segment", "4", "--workers", "2"]
"""Two segments, cut at the scene change."""


def two_scenes(make_media, name: str = "two scenes.mkv") -> Path:
    return make_media(name, size=(320, 180), cuts=[EASY, HARD], gop=25)


def own_vmaf(ffmpeg: str, source: Path, output: Path, start: int, frames: int) -> float:
    """The mean VMAF of `frames` frames of the output from `start`, against the same
    source frames (10-bit, paired by frame number): measured here, not by drapto."""
    graph = (
        f"[0:v]trim=start_frame={start}:end_frame={start + frames},format=yuv420p10le,"
        "settb=AVTB,setpts=N[d];"
        f"[1:v]trim=start_frame={start}:end_frame={start + frames},format=yuv420p10le,"
        "settb=AVTB,setpts=N[r];"
        "[d][r]libvmaf=log_fmt=json:log_path=/dev/stdout:n_threads=2"
    )
    done = subprocess.run(
        [
            ffmpeg,
            "-hide_banner",
            "-nostdin",
            "-loglevel",
            "error",
            "-i",
            str(output),
            "-i",
            str(source),
            "-filter_complex",
            graph,
            "-f",
            "null",
            "-",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    log = json.loads(done.stdout[done.stdout.index("{") :])
    return float(log["pooled_metrics"]["vmaf"]["mean"])


def test_each_scene_gets_its_crf_and_lands_in_the_band(
    make_media, ffmpeg: str, tmp_path: Path
) -> None:
    source = two_scenes(make_media)
    output = tmp_path / "out.mkv"
    run = encode(source, output, "--target-vmaf", str(TARGET), "--crf-range", "20-55", *SEGMENTS)
    assert run.returncode == 0, run.stderr
    done = sorted(run.of("segment_done"), key=lambda e: e["index"])
    assert [e["frames"] for e in done] == [50, 50]
    easy, hard = done
    assert easy["crf"] - hard["crf"] >= 4, done
    for event in done:
        assert event["target"] == "met", [
            (e["crf"], e["vmaf"], e["probes"], e["target"]) for e in done
        ]
        assert abs(event["vmaf"] - TARGET) <= 1.0
        assert event["vmaf_low5"] <= event["vmaf"]
        assert len(event["probes"]) >= 1
        start = 0 if event["index"] == 0 else 50
        measured = own_vmaf(ffmpeg, source, output, start, 50)
        assert abs(measured - TARGET) <= 1.0, (event, measured)
        assert abs(measured - event["vmaf"]) < 0.5
    with sqlite3.connect(state_db()) as db:
        rows = db.execute(
            "SELECT idx, crf, vmaf, probes, target FROM segments ORDER BY idx"
        ).fetchall()
    assert [(r[0], r[1], r[4]) for r in rows[-2:]] == [
        (0, easy["crf"], "met"),
        (1, hard["crf"], "met"),
    ]
    assert json.loads(rows[-1][3]) == [list(p) for p in hard["probes"]]
