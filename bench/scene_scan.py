"""drapto's scene scan against PySceneDetect's `detect-content`, side by side.

Its input is encode_speed.py's 10-minute file: ../shared/media/testvideo.mp4 (or
$DRAPTO_TEST_MEDIA) looped to 10 minutes, scaled to 640x360, H.264 with 250-frame GOPs
and a stereo AAC track (made once, in bench/out). Each
side runs in its own child process (drapto: `detect_cuts`, whose decoder is PyAV's;
PySceneDetect 0.7.2: its `scenedetect` CLI with default settings, `detect-content
list-scenes`), alternately, and the CPU-seconds of that child and everything it ran
(getrusage RUSAGE_CHILDREN) are compared, medians over the reps. Then both find the cuts
of every file in the shared media folder, which are printed side by side with the
cuts the media README lists. Needs the benchmark extra: pip install -e '.[bench]'.

    .venv/bin/python bench/scene_scan.py [--reps 3] [--seconds 600] [--size 640x360]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MEDIA = Path(os.environ.get("DRAPTO_TEST_MEDIA") or ROOT.parent / "shared" / "media")
OUT = ROOT / "bench" / "out"
# What the media README lists (tests/integration/test_segmentation.py checks drapto's).
README_CUTS = {
    "testvideo.mp4": [30, 180, 394],
    "fades.mp4": [],
    "counter.mp4": [],
}


def drapto_cuts(path: Path) -> list[int]:
    from drapto_engine.services.segmentation.scenes import detect_cuts

    return asyncio.run(detect_cuts(path))


def pyscenedetect_cuts(path: Path) -> list[int]:
    """First frames (0-based) of every scene after the first, from the CLI's CSV."""
    with tempfile.TemporaryDirectory(prefix="scan-bench-") as folder:
        subprocess.run(
            [
                str(Path(sys.executable).with_name("scenedetect")),
                "-i", str(path), "-o", folder, "detect-content", "list-scenes", "-s",
            ],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        table = next(Path(folder).glob("*.csv"))
        rows = list(csv.DictReader(table.open()))
    return [int(row["Start Frame"]) - 1 for row in rows[1:]]


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_side(side: str, path: Path) -> tuple[float, float, list[int]]:
    """Wall seconds, CPU seconds (the child and all it ran) and cuts of one side."""
    before, start = children_cpu(), time.monotonic()
    done = subprocess.run(
        [sys.executable, __file__, "--one", side, str(path)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return time.monotonic() - start, children_cpu() - before, json.loads(done.stdout)


def same_cuts(a: list[int], b: list[int], tolerance: int = 1) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= tolerance for x, y in zip(a, b, strict=True))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--size", default="640x360")
    parser.add_argument("--sides", default="drapto,pyscenedetect")
    parser.add_argument("--no-media", action="store_true", help="skip the shared-media cuts")
    parser.add_argument("--one", nargs=2, metavar=("SIDE", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        side, file = args.one
        find = drapto_cuts if side == "drapto" else pyscenedetect_cuts
        print(json.dumps(find(Path(file))))
        return 0
    if not (MEDIA / "testvideo.mp4").exists():
        print(
            f"bench: {MEDIA / 'testvideo.mp4'} is missing (the shared media folder)",
            file=sys.stderr,
        )
        return 2
    sides = args.sides.split(",")
    if (
        "pyscenedetect" in sides
        and shutil.which("scenedetect", path=str(Path(sys.executable).parent)) is None
    ):
        print("bench: PySceneDetect is missing: pip install -e '.[bench]'", file=sys.stderr)
        return 2
    from encode_speed import prepare

    if (prepared := prepare(args.seconds, args.size)) is None:
        return 2
    source = prepared[1]
    load = os.getloadavg()
    runs: dict[str, list[tuple[float, float]]] = {side: [] for side in sides}
    cuts: dict[str, list[int]] = {}
    for rep in range(args.reps):
        for side in sides if rep % 2 == 0 else sides[::-1]:
            wall, cpu, found = run_side(side, source)
            runs[side].append((wall, cpu))
            if cuts.setdefault(side, found) != found:
                print(f"bench: {side} found different cuts on rep {rep + 1}", file=sys.stderr)
            print(f"rep {rep + 1} {side:13s} cpu {cpu:6.2f} s  wall {wall:6.2f} s", flush=True)
    result: dict[str, object] = {
        "input": f"{source.name}: {args.size}, {args.seconds:g} s",
        "reps": args.reps,
        "load_average_start_end": [load, os.getloadavg()],
        "median_cpu_s": {side: statistics.median(c for _, c in r) for side, r in runs.items()},
        "median_wall_s": {side: statistics.median(w for w, _ in r) for side, r in runs.items()},
        "runs_cpu_s": {side: [round(c, 2) for _, c in r] for side, r in runs.items()},
        "cuts": {side: len(found) for side, found in cuts.items()},
    }
    if len(sides) == 2:
        cpu = result["median_cpu_s"]
        assert isinstance(cpu, dict)
        result["cpu_ratio_pyscenedetect_over_drapto"] = round(cpu[sides[1]] / cpu[sides[0]], 3)
        mine, theirs = cuts[sides[0]], cuts[sides[1]]
        result["same_cuts_within_1_frame"] = same_cuts(mine, theirs)
        # Each of drapto's cuts within a frame of one of PySceneDetect's, and the rest.
        result["drapto_cuts_also_found_by_pyscenedetect"] = sum(
            any(abs(a - b) <= 1 for b in theirs) for a in mine
        )
        result["pyscenedetect_only_cuts"] = [
            b for b in theirs if not any(abs(a - b) <= 1 for a in mine)
        ][:20]
    if not args.no_media:
        media: dict[str, dict[str, object]] = {}
        for file in sorted(MEDIA.iterdir()):
            if file.suffix not in {".mp4", ".mkv"}:
                continue
            entry: dict[str, object] = {side: run_side(side, file)[2] for side in sides}
            if file.name in README_CUTS:
                entry["readme"] = README_CUTS[file.name]
            media[file.name] = entry
        result["media_cuts"] = media
    text = json.dumps(result, indent=2)
    print(text)
    (OUT / "scene_scan.json").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
