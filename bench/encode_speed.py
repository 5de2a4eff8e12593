"""drapto vs one plain ffmpeg run on the same file, settings and audio.

Makes its own input: ../shared/media/testvideo.mp4 scaled to 1920x1080 and looped to
72 s, with a stereo track. Runs drapto and plain ffmpeg alternately, several times
each, and prints the median wall-time ratio drapto/plain, CPU utilisation and the
output size ratio. Usage:

    .venv/bin/python bench/encode_speed.py [--reps 3] [--preset 6] [--seconds 72]
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

from drapto_engine.core.models import DEFAULTS
from drapto_engine.infrastructure.ffmpeg.toolchain import find_toolchain
from drapto_engine.infrastructure.resources import cpu_count
from drapto_engine.services.detection.resolution import default_crf, resolution_class

ROOT = Path(__file__).resolve().parents[1]
SOURCE = (
    Path(os.environ.get("DRAPTO_TEST_MEDIA") or ROOT.parent / "shared" / "media") / "testvideo.mp4"
)
OUT = ROOT / "bench" / "out"


def make_input(ffmpeg: str, seconds: float, size: str) -> Path:
    path = OUT / f"bench-{size}-{seconds:g}s.mkv"
    if path.exists():
        return path
    loops = int(seconds // 24) + 1
    subprocess.run(
        [
            ffmpeg, "-hide_banner", "-loglevel", "error", "-y",
            "-stream_loop", str(loops), "-i", str(SOURCE),
            "-f", "lavfi", "-i", f"sine=frequency=330:sample_rate=48000:duration={seconds}",
            "-map", "0:v", "-map", "1:a", "-t", str(seconds),
            "-vf", f"scale={size.replace('x', ':')}:flags=bicubic",
            "-c:v", "libx264", "-preset", "veryfast", "-crf", "16",
            "-c:a", "aac", "-b:a", "192k", "-ac", "2", str(path),
        ],
        check=True,
    )  # fmt: skip
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


def psnr(ffmpeg: str, encoded: Path, reference: Path) -> float:
    """Average luma PSNR against the source, frames paired by index: pairing by
    timestamp flips pairs where Matroska rounded a time to the millisecond."""
    done = subprocess.run(
        [
            ffmpeg, "-hide_banner", "-nostats", "-i", str(encoded), "-i", str(reference),
            "-lavfi", "[0:v]format=yuv420p,setpts=N[a];[1:v]format=yuv420p,setpts=N[b];[a][b]psnr",
            "-f", "null", "-",
        ],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    line = next(x for x in done.stderr.splitlines() if "PSNR y:" in x)
    return float(line.split("y:")[1].split()[0])


def vmaf(ffmpeg: str, encoded: Path, reference: Path, subsample: int) -> float:
    """Mean VMAF (libvmaf's default model) of every `subsample`th frame, paired by index."""
    done = subprocess.run(
        [
            ffmpeg, "-hide_banner", "-nostats", "-i", str(encoded), "-i", str(reference),
            "-lavfi",
            "[0:v]format=yuv420p,setpts=N[a];[1:v]format=yuv420p,setpts=N[b];"
            f"[a][b]libvmaf=n_subsample={subsample}:n_threads={cpu_count()}:shortest=1",
            "-f", "null", "-",
        ],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    line = next(x for x in done.stderr.splitlines() if "VMAF score:" in x)
    return float(line.split("VMAF score:")[1].split()[0])


def fresh_state_env(root: Path) -> dict[str, str]:
    """An environment whose drapto state and config start empty.

    drapto keeps a finished job's analysis and segment plan, and reuses them when the
    same unchanged file is encoded again with the same settings. Every timed run must
    pay for its own probe, crop detection and scene scan, so each gets its own folders.
    """
    env = dict(os.environ)
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


def main() -> int:
    parser = bench_parser(__doc__, workers=None)
    parser.add_argument("--quality", action="store_true", help="also measure each output's PSNR")
    parser.add_argument(
        "--vmaf", type=int, default=0, metavar="N",
        help="also measure each output's VMAF on every Nth frame (0: no)",
    )  # fmt: skip
    args = parser.parse_args()
    if (prepared := prepare(args.seconds, args.size)) is None:
        return 2
    ffmpeg, source = prepared
    crf = default_crf(resolution_class(int(args.size.split("x")[0])))
    plain_out, drapto_out = OUT / "plain.mkv", OUT / "drapto.mkv"
    plain = [
        ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-i", str(source),
        "-map", "0:v", "-map", "0:a",
        "-c:v", "libsvtav1", "-preset", str(args.preset), "-crf", str(crf),
        "-pix_fmt", "yuv420p10le", "-svtav1-params", DEFAULTS.svtav1_params,
        "-c:a", "libopus", "-b:a", "128k", "-vbr", "on", str(plain_out),
    ]  # fmt: skip
    drapto = [
        sys.executable, "-m", "drapto_engine.cli", "encode", str(source), "-o", str(drapto_out),
        "--overwrite", "--preset", str(args.preset), "--progress", "json",
    ]  # fmt: skip
    if args.workers:
        drapto += ["--workers", str(args.workers)]
    runs: dict[str, Runs] = {"plain": [], "drapto": []}
    for rep in range(args.reps):
        order = [("plain", plain), ("drapto", drapto)]
        for name, argv in order if rep % 2 == 0 else order[::-1]:
            with tempfile.TemporaryDirectory(prefix="drapto-bench-") as scratch:
                env = fresh_state_env(Path(scratch)) if name == "drapto" else None
                wall, cpu = timed(argv, env)
            runs[name].append((wall, cpu))
            print(
                f"rep {rep + 1} {name:6s} wall {wall:7.1f} s  cpu {cpu / wall / cpu_count():5.0%}",
                flush=True,
            )
    cores = cpu_count()
    med = {name: statistics.median(w for w, _ in r) for name, r in runs.items()}
    util = {name: statistics.median(c / w / cores for w, c in r) for name, r in runs.items()}
    sizes = {"plain": plain_out.stat().st_size, "drapto": drapto_out.stat().st_size}
    result = {
        "cores": cores,
        "input": f"{args.size} {args.seconds:g} s, preset {args.preset}, crf {crf}",
        "reps": args.reps,
        "median_wall_s": med,
        "ratio_drapto_over_plain": med["drapto"] / med["plain"],
        "cpu_utilisation": util,
        "size_bytes": sizes,
        "size_ratio": sizes["drapto"] / sizes["plain"],
    }
    if args.quality:
        result["psnr_y_db"] = {
            name: psnr(ffmpeg, out, source)
            for name, out in (("plain", plain_out), ("drapto", drapto_out))
        }
    if args.vmaf:
        result["vmaf"] = {
            name: vmaf(ffmpeg, out, source, args.vmaf)
            for name, out in (("plain", plain_out), ("drapto", drapto_out))
        }
    result["runs_wall_s"] = {name: [round(w, 1) for w, _ in r] for name, r in runs.items()}
    result["runs_cpu_s"] = {name: [round(c, 1) for _, c in r] for name, r in runs.items()}
    result["pair_ratios"] = pair_ratios(runs["plain"], runs["drapto"])
    result["median_cpu_ratio"] = statistics.median(
        d / p for (_, p), (_, d) in zip(runs["plain"], runs["drapto"], strict=True)
    )
    report(result, "encode_speed")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
