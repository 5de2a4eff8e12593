"""drapto vs one plain ffmpeg run on the same file, settings and audio.

Makes its own input: ../shared/media/testvideo.mp4 (or $DRAPTO_TEST_MEDIA) scaled and
looped, H.264 with 250-frame GOPs and a stereo AAC track. The two benchmark files:
`--file 1080p` (1920x1080, 72 s, preset 6) and `--file 360p` (640x360, 10 minutes,
preset 10); `--file both` runs one after the other; `--file 720p` is the clip once, not
looped (1280x720, 24 s, preset 6), for quality on real footage; without --file, --size, --seconds
and --preset choose. Runs drapto and plain ffmpeg alternately (pairs), every drapto
run from empty state, and prints the median wall-time and CPU-second ratios
drapto/plain, drapto's own CPU (its process) against its children's (every ffmpeg),
CPU utilisation and the output size ratio; --quality N adds PSNR-Y and VMAF of every
Nth frame, paired by timestamp and by index (mean, 1st and 5th percentile). Usage:

    .venv/bin/python bench/encode_speed.py [--file 1080p|360p|720p|both] [--reps 3] [--quality 5]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from drapto_engine.core.models import DEFAULTS
from drapto_engine.infrastructure.ffmpeg.toolchain import find_toolchain
from drapto_engine.infrastructure.workers import cpu_count
from drapto_engine.services.detection.resolution import default_crf, resolution_class
from drapto_engine.services.encoding.audio import bitrate_kbps

ROOT = Path(__file__).resolve().parents[1]
SOURCE = (
    Path(os.environ.get("DRAPTO_TEST_MEDIA") or ROOT.parent / "shared" / "media") / "testvideo.mp4"
)
OUT = ROOT / "bench" / "out"
RUSAGE = ROOT / "bench" / "drapto_rusage.py"
# The benchmark files: size, seconds, preset. 1080p and 360p are the speed files (the
# clip looped 3 and 25 times); 720p is the clip once, at its own size: real footage
# with no repeated position, for the quality comparison (a looped file's 1% low is one
# content position repeated at every loop).
FILES = {
    "1080p": ("1920x1080", 72.0, 6),
    "360p": ("640x360", 600.0, 10),
    "720p": ("1280x720", 24.0, 6),
}


def make_input(ffmpeg: str, seconds: float, size: str) -> Path:
    path = OUT / f"bench-{size}-{seconds:g}s-gop250.mkv"
    if path.exists():
        return path
    partial = path.with_suffix(".partial.mkv")
    loops = int(seconds // 24) + 1
    subprocess.run(
        [
            ffmpeg, "-hide_banner", "-loglevel", "error", "-y",
            "-stream_loop", str(loops), "-i", str(SOURCE),
            "-f", "lavfi", "-i", f"sine=frequency=330:sample_rate=48000:duration={seconds}",
            "-map", "0:v", "-map", "1:a", "-t", str(seconds),
            "-vf", f"scale={size.replace('x', ':')}:flags=bicubic",
            "-c:v", "libx264", "-preset", "veryfast", "-crf", "16", "-g", "250",
            "-c:a", "aac", "-b:a", "192k", "-ac", "2", str(partial),
        ],
        check=True,
    )  # fmt: skip
    partial.rename(path)
    return path


def prepare(seconds: float, size: str) -> tuple[str, Path] | None:
    """The ffmpeg to use and the benchmark file (made once), or None without the media."""
    if not SOURCE.exists():
        print(f"bench: {SOURCE} is missing (the shared media folder)", file=sys.stderr)
        return None
    OUT.mkdir(parents=True, exist_ok=True)
    ffmpeg = find_toolchain().ffmpeg
    return ffmpeg, make_input(ffmpeg, seconds, size)


def children_cpu() -> float:
    """CPU seconds (user + system) of every finished child process so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """Wall seconds and CPU seconds (children included) of one run."""
    before, start = children_cpu(), time.monotonic()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=env)
    return time.monotonic() - start, children_cpu() - before


def quality(
    ffmpeg: str, encoded: Path, reference: Path, subsample: int, by: str
) -> dict[str, float]:
    """VMAF (libvmaf's default model) and PSNR-Y of every `subsample`th frame against
    the source: mean, 1st and 5th percentile. by="index" pairs the nth frames; by="time"
    pairs frames by timestamp (libvmaf's own sync), as most tools do."""
    renumber = ",setpts=N" if by == "index" else ""
    with tempfile.TemporaryDirectory(prefix="drapto-vmaf-") as folder:
        log = Path(folder) / "vmaf.json"
        subprocess.run(
            [
                ffmpeg, "-hide_banner", "-nostats", "-loglevel", "error",
                "-i", str(encoded), "-i", str(reference),
                "-lavfi",
                f"[0:v]format=yuv420p{renumber}[a];[1:v]format=yuv420p{renumber}[b];"
                f"[a][b]libvmaf=n_subsample={subsample}:n_threads={cpu_count()}:shortest=1"
                f":feature=name=psnr:log_fmt=json:log_path={log}",
                "-f", "null", "-",
            ],
            check=True, capture_output=True,  # setpts=N makes the null muxer complain per frame
        )  # fmt: skip
        frames = json.loads(log.read_text())["frames"]
    result: dict[str, float] = {"frames": len(frames)}
    for name, key in (("vmaf", "vmaf"), ("psnr_y", "psnr_y")):
        values = np.array([frame["metrics"][key] for frame in frames])
        result[f"{name}_mean"] = round(float(values.mean()), 3)
        result[f"{name}_p1"] = round(float(np.percentile(values, 1)), 3)
        result[f"{name}_p5"] = round(float(np.percentile(values, 5)), 3)
    return result


def fresh_state_env(root: Path) -> dict[str, str]:
    """An environment whose drapto state and config start empty.

    drapto keeps a finished job's analysis and segment plan, and reuses them when the
    same unchanged file is encoded again with the same settings. Every timed run must
    pay for its own probe, crop detection and scene scan, so each gets its own folders.
    """
    env = dict(os.environ)
    env.pop("DRAPTO_STATE_DIR", None)  # it would win over XDG_STATE_HOME
    for name in ("XDG_STATE_HOME", "XDG_CONFIG_HOME", "XDG_RUNTIME_DIR", "XDG_CACHE_HOME"):
        folder = root / name.lower()
        folder.mkdir(mode=0o700)
        env[name] = str(folder)
    return env


Runs = list[tuple[float, float]]
"""(wall seconds, CPU seconds) of each rep."""


def pair_ratios(base: Runs, other: Runs) -> list[float]:
    """Each rep's wall ratio other/base. A rep's pair ran back to back, so its ratio is
    the least disturbed by a host whose speed drifts over minutes."""
    return [round(o / b, 3) for (b, _), (o, _) in zip(base, other, strict=True)]


def report(result: dict[str, object], name: str) -> None:
    """Print the result and keep it as bench/out/NAME-<cores>cores.json."""
    text = json.dumps(result, indent=2)
    print(text)
    (OUT / f"{name}-{cpu_count()}cores.json").write_text(text)


def bench_parser(doc: str, workers: int | None) -> argparse.ArgumentParser:
    """The options both speed scripts take: reps, preset, the file's length and size."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--preset", type=int, default=DEFAULTS.preset)
    parser.add_argument("--seconds", type=float, default=72.0)
    parser.add_argument("--size", default="1920x1080")
    parser.add_argument("--workers", type=int, default=workers)
    return parser


def run_drapto(argv: list[str], scratch: Path) -> tuple[float, float, dict[str, float]]:
    """Wall and CPU seconds of one drapto run from empty state, and its own figures
    (drapto_rusage.py: the drapto process's CPU against its children's)."""
    figures = scratch / "rusage.json"
    wall, cpu = timed([sys.executable, str(RUSAGE), str(figures), "--", *argv],
                      fresh_state_env(scratch))  # fmt: skip
    own: dict[str, float] = json.loads(figures.read_text())
    return wall, cpu, own


def bench_file(
    args: argparse.Namespace, size: str, seconds: float, preset: int
) -> dict[str, object]:
    if (prepared := prepare(seconds, size)) is None:
        raise SystemExit(2)
    ffmpeg, source = prepared
    crf = default_crf(resolution_class(int(size.split("x")[0])))
    plain_out, drapto_out = OUT / f"plain-{size}.mkv", OUT / f"drapto-{size}.mkv"
    plain = [
        ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-i", str(source),
        "-map", "0:v", "-map", "0:a",
        "-c:v", "libsvtav1", "-preset", str(preset), "-crf", str(crf),
        "-pix_fmt", "yuv420p10le", "-svtav1-params", DEFAULTS.svtav1_params,
        "-c:a", "libopus", "-b:a", f"{bitrate_kbps(2)}k", "-vbr", "on", str(plain_out),
    ]  # fmt: skip
    drapto = [
        "encode", str(source), "-o", str(drapto_out),
        "--overwrite", "--preset", str(preset), "--progress", "json",
    ]  # fmt: skip
    if args.workers:
        drapto += ["--workers", str(args.workers)]
    runs: dict[str, Runs] = {"plain": [], "drapto": []}
    own: list[dict[str, float]] = []
    load = os.getloadavg()
    for rep in range(args.reps):
        for name in ("plain", "drapto") if rep % 2 == 0 else ("drapto", "plain"):
            with tempfile.TemporaryDirectory(prefix="drapto-bench-") as scratch:
                if name == "drapto":
                    wall, cpu, figures = run_drapto(drapto, Path(scratch))
                    own.append(figures)
                else:
                    wall, cpu = timed(plain)
            runs[name].append((wall, cpu))
            print(
                f"{size} rep {rep + 1} {name:6s} wall {wall:7.1f} s  cpu {cpu:7.1f} s"
                f"  ({cpu / wall / cpu_count():4.0%} of {cpu_count()} cores)",
                flush=True,
            )
    cores = cpu_count()
    med = {name: statistics.median(w for w, _ in r) for name, r in runs.items()}
    med_cpu = {name: statistics.median(c for _, c in r) for name, r in runs.items()}
    util = {name: statistics.median(c / w / cores for w, c in r) for name, r in runs.items()}
    sizes = {"plain": plain_out.stat().st_size, "drapto": drapto_out.stat().st_size}
    result: dict[str, object] = {
        "cores": cores,
        "input": f"{source.name}: {size} {seconds:g} s, preset {preset}, crf {crf}",
        "reps": args.reps,
        "load_average_start_end": [load, os.getloadavg()],
        "median_wall_s": med,
        "median_cpu_s": med_cpu,
        "median_wall_ratio": statistics.median(pair_ratios(runs["plain"], runs["drapto"])),
        "median_cpu_ratio": statistics.median(
            d / p for (_, p), (_, d) in zip(runs["plain"], runs["drapto"], strict=True)
        ),
        "drapto_own_cpu_s": [round(f["self_cpu_s"], 2) for f in own],
        "drapto_children_cpu_s": [round(f["children_cpu_s"], 1) for f in own],
        "drapto_own_share": statistics.median(
            f["self_cpu_s"] / (f["self_cpu_s"] + f["children_cpu_s"]) for f in own
        ),
        "cpu_utilisation": util,
        "size_bytes": sizes,
        "size_ratio": sizes["drapto"] / sizes["plain"],
        "runs_wall_s": {name: [round(w, 1) for w, _ in r] for name, r in runs.items()},
        "runs_cpu_s": {name: [round(c, 1) for _, c in r] for name, r in runs.items()},
        "pair_ratios": pair_ratios(runs["plain"], runs["drapto"]),
    }
    if args.quality:
        result["quality"] = {
            f"{name} by {by}": quality(ffmpeg, out, source, args.quality, by)
            for by in ("time", "index")
            for name, out in (("plain", plain_out), ("drapto", drapto_out))
        }
    return result


def main() -> int:
    parser = bench_parser(__doc__, workers=None)
    parser.add_argument("--file", choices=[*FILES, "both"],
                        help="a benchmark file with its preset (overrides --size, --seconds, --preset)")  # fmt: skip
    parser.add_argument(
        "--quality", type=int, default=0, metavar="N",
        help="also measure VMAF and PSNR-Y of every Nth frame, by time and by index (0: no)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.file is None:
        chosen = [(args.size, args.seconds, args.preset)]
    else:
        both = [FILES["1080p"], FILES["360p"]]
        chosen = both if args.file == "both" else [FILES[args.file]]
    results = [bench_file(args, *settings) for settings in chosen]
    report(results[0] if len(results) == 1 else {"files": results}, "encode_speed")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
