"""Probe and crop detection on a film-length file: what `drapto encode` spends before
the scene scan on a 2-hour 1080p H.264 file.

Makes its input once: encode_speed.py's 72 s 1080p file stream-copied --copies times
(100: 7202 s, about 215,800 frames) into one Matroska file without a frame-count tag,
so the probe has to count packets. Then times, in this process, `probe` (streams,
frame count) and `analyze_media` (dynamic range, the Dolby Vision check, crop
detection), --reps times each, wall and CPU-seconds (this process and its children).

    .venv/bin/python bench/probe_film.py [--copies 100] [--reps 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from encode_speed import OUT, prepare

from drapto_engine.infrastructure.probe import probe
from drapto_engine.services.detection import analyze_media


def make_film(ffmpeg: str, part: Path, copies: int) -> Path:
    path = OUT / f"film-{copies}x-{part.stem}.mkv"
    if path.exists():
        return path
    listing = OUT / f"film-{copies}x.txt"
    listing.write_text("".join(f"file '{part.name}'\n" for _ in range(copies)))
    partial = path.with_suffix(".partial.mkv")
    subprocess.run(
        [ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-f", "concat", "-safe", "0",
         "-i", str(listing), "-map", "0", "-c", "copy", str(partial)],
        check=True,
    )  # fmt: skip
    partial.rename(path)
    return path


def cpu() -> float:
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=100)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    if (prepared := prepare(72.0, "1920x1080")) is None:
        return 2
    ffmpeg, part = prepared
    film = make_film(ffmpeg, part, args.copies)
    figures: dict[str, list[tuple[float, float]]] = {"probe": [], "analyze": []}
    for _ in range(args.reps):
        wall, before = time.monotonic(), cpu()
        media = probe(film, ffmpeg)
        figures["probe"].append((time.monotonic() - wall, cpu() - before))
        wall, before = time.monotonic(), cpu()
        analysis = analyze_media(media)
        figures["analyze"].append((time.monotonic() - wall, cpu() - before))
    result = {
        "input": f"{film.name}: {media.duration_s:.0f} s, {media.video.frame_count} frames,"
        f" {film.stat().st_size / 1e9:.2f} GB",
        "crop": str(analysis.crop),
        "median_wall_s": {
            k: round(statistics.median(w for w, _ in v), 2) for k, v in figures.items()
        },
        "median_cpu_s": {
            k: round(statistics.median(c for _, c in v), 2) for k, v in figures.items()
        },
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
