"""How much parallel segments can win at all: the same frames, video only, no side passes.

encode_speed.py times the whole of drapto against one plain ffmpeg run. This script
takes drapto's side passes (probe, crop detection, scene scan, audio, mux, validation)
out, to show the ceiling they have to fit under. It plans the benchmark file's segments
once (untimed), then times, alternately:

* one: a single SVT-AV1 instance over the whole video (`lp` = all cores, ffmpeg's
  automatic decoder threads), as a plain run does;
* segments: drapto's own segment commands (`SvtEncoder.segment_argv`, exact seeks,
  `lp` = cores / workers, the last segment on every core), longest first on N workers.

It prints the median wall ratio segments/one and each side's CPU use. Usage:

    .venv/bin/python bench/parallel_ceiling.py [--reps 3] [--workers N] [--seconds 72]
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from encode_speed import Runs, bench_parser, children_cpu, pair_ratios, prepare, report

from drapto_engine.core.models import EncodeSettings, Segment
from drapto_engine.infrastructure.probe import probe
from drapto_engine.infrastructure.workers import cpu_count, threads_per_worker
from drapto_engine.services.detection import analyze_media
from drapto_engine.services.encoding.plan import VideoPlan
from drapto_engine.services.encoding.svt import PIX_FMT, SvtEncoder
from drapto_engine.services.segmentation import segment_video


async def run(argv: list[str]) -> None:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL
    )
    if await proc.wait() != 0:
        raise SystemExit(f"bench: ffmpeg failed: {' '.join(argv[:12])} ...")


async def one_instance(plan: VideoPlan, output: Path) -> None:
    await run(
        [
            plan.ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-i", str(plan.source),
            "-map", "0:v", "-c:v", "libsvtav1", "-preset", str(plan.preset),
            "-crf", str(plan.crf), "-pix_fmt", PIX_FMT,
            "-svtav1-params", plan.svtav1_params, str(output),
        ]
    )  # fmt: skip


async def in_segments(plan: VideoPlan, segments: list[Segment], workers: int, folder: Path) -> None:
    pending = sorted(segments, key=lambda s: (-s.frame_count, s.index))
    encoder = SvtEncoder()

    async def worker() -> None:
        while pending:
            segment = pending.pop(0)
            threads = cpu_count() if not pending else threads_per_worker(workers)
            out = folder / f"segment-{segment.index:04d}.mkv"
            await run(encoder.segment_argv(plan, segment, out, threads))

    await asyncio.gather(*(worker() for _ in range(workers)))


def timed(work: Coroutine[Any, Any, None]) -> tuple[float, float]:
    before, start = children_cpu(), time.monotonic()
    asyncio.run(work)
    return time.monotonic() - start, children_cpu() - before


def main() -> int:
    args = bench_parser(__doc__, workers=cpu_count()).parse_args()
    if (prepared := prepare(args.seconds, args.size)) is None:
        return 2
    ffmpeg, source = prepared
    settings = EncodeSettings(preset=args.preset)
    plan = VideoPlan.make(ffmpeg, analyze_media(probe(source, ffmpeg)), settings)
    segments = asyncio.run(
        segment_video(source, min_s=settings.min_segment_s, max_s=settings.max_segment_s)
    )
    runs: dict[str, Runs] = {"one": [], "segments": []}
    for rep in range(args.reps):
        order = ["one", "segments"] if rep % 2 == 0 else ["segments", "one"]
        for name in order:
            with tempfile.TemporaryDirectory(prefix="drapto-ceiling-") as scratch:
                folder = Path(scratch)
                work = (
                    one_instance(plan, folder / "one.mkv")
                    if name == "one"
                    else in_segments(plan, segments, args.workers, folder)
                )
                wall, cpu = timed(work)
            runs[name].append((wall, cpu))
            print(
                f"rep {rep + 1} {name:8s} wall {wall:6.1f} s  cpu {cpu:6.1f} s "
                f"({cpu / wall / cpu_count():4.0%} of {cpu_count()} cores)",
                flush=True,
            )
    median = {name: statistics.median(w for w, _ in r) for name, r in runs.items()}
    result = {
        "cores": cpu_count(),
        "workers": args.workers,
        "segments": len(segments),
        "input": f"{args.size} {args.seconds:g} s, preset {args.preset}, crf {plan.crf}",
        "median_wall_s": median,
        "ratio_segments_over_one": median["segments"] / median["one"],
        "pair_ratios": pair_ratios(runs["one"], runs["segments"]),
        "runs_cpu_s": {name: [round(c, 1) for _, c in r] for name, r in runs.items()},
    }
    report(result, "parallel_ceiling")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
