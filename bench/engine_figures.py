"""The engine's own figures while encoding: its RSS (encoders excluded) and how long a
job whose segments are all done takes to resume.

Makes a 1280x720 test file (testsrc2 with a stereo sine, x264, 250-frame GOPs),
encodes it with `drapto encode --progress json` while sampling the drapto process's
resident memory (its ffmpeg children are not counted) five times a second, then
encodes it again in a fresh state directory and kills drapto with SIGKILL as soon as
the muxing stage starts (every segment is done), and runs the same command once more:
the resumed run's time to reach muxing is what resuming costs, and the mux and
validation that follow are reported separately. Usage:

    .venv/bin/python bench/engine_figures.py [--seconds 60] [--preset 10] [--max-segment 5]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from drapto_engine.infrastructure.ffmpeg.toolchain import find_toolchain

MIB = 1 << 20
DRAPTO = [sys.executable, "-m", "drapto_engine.cli"]


def make_source(ffmpeg: str, out: Path, seconds: int) -> None:
    subprocess.run(
        [
            ffmpeg, "-v", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc2=size=1280x720:rate=25:duration={seconds}",
            "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
            "-ac", "2", "-c:v", "libx264", "-preset", "veryfast", "-g", "250",
            "-c:a", "aac", str(out),
        ],
        check=True,
    )  # fmt: skip


def encode_argv(
    source: Path, output: Path, state: Path, preset: int, max_segment: float
) -> list[str]:
    return [
        *DRAPTO, "encode", str(source), "-o", str(output), "--preset", str(preset),
        "--max-segment", str(max_segment), "--min-segment", str(min(5.0, max_segment)),
        "--progress", "json", "--state-dir", str(state), "--overwrite",
    ]  # fmt: skip


def run_sampled(argv: list[str], kill_at: str | None = None) -> tuple[list[dict], list[int], float]:
    """Run drapto, sampling its own RSS; returns its events, the samples and the wall time."""
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    me = psutil.Process(proc.pid)
    samples: list[int] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            try:
                samples.append(me.memory_info().rss)
            except psutil.Error:
                return
            done.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    events: list[dict] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        if not line.startswith("{"):
            continue
        event = json.loads(line)
        event["received"] = time.monotonic() - started
        events.append(event)
        if kill_at and event["type"] == "stage" and event["stage"] == kill_at:
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait()
    done.set()
    sampler.join()
    return events, samples, time.monotonic() - started


def stage_at(events: list[dict], stage: str) -> float:
    return next(e["received"] for e in events if e["type"] == "stage" and e["stage"] == stage)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--preset", type=int, default=10)
    parser.add_argument("--max-segment", type=float, default=5.0)
    args = parser.parse_args()
    ffmpeg = find_toolchain().ffmpeg
    with tempfile.TemporaryDirectory(prefix="drapto-bench-") as folder:
        root = Path(folder)
        source = root / "source.mkv"
        make_source(ffmpeg, source, args.seconds)
        events, samples, wall = run_sampled(
            encode_argv(source, root / "out.mkv", root / "state-a", args.preset, args.max_segment)
        )
        segments = sum(1 for e in events if e["type"] == "segment_done")
        print(f"encode: {wall:.1f} s, {segments} segments")
        print(
            f"engine RSS while encoding (encoders excluded): peak {max(samples) / MIB:.1f} MiB, "
            f"median {sorted(samples)[len(samples) // 2] / MIB:.1f} MiB over {len(samples)} samples"
        )
        argv = encode_argv(
            source, root / "out2.mkv", root / "state-b", args.preset, args.max_segment
        )
        first, _, _ = run_sampled(argv, kill_at="muxing")
        print(f"killed at muxing after {sum(e['type'] == 'segment_done' for e in first)} segments")
        resumed, _, wall = run_sampled(argv)
        muxing, validating = stage_at(resumed, "muxing"), stage_at(resumed, "validating")
        reused = sum(1 for e in resumed if e["type"] == "segment_done" and e["resumed"])
        encoded = sum(1 for e in resumed if e["type"] == "segment_started")
        print(
            f"resume with every segment done: {muxing:.2f} s from start to mux "
            f"({reused} segments reused, {encoded} encoded), mux {validating - muxing:.2f} s, "
            f"validation and the rest {wall - validating:.2f} s, total {wall:.2f} s"
        )


if __name__ == "__main__":
    main()
