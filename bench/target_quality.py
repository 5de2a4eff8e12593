"""Target quality (`--target-vmaf`): accuracy, worth and cost on the speed benchmark files.

The files are encode_speed.py's (`--file 360p`: 640x360, 10 minutes, preset 10;
`--file 1080p`: 1920x1080, 72 s, preset 6); `--seconds` cuts a shorter one for a first
run. One drapto run with `--target-vmaf` (every ffmpeg it starts goes through a wrapper
that notes each one's CPU seconds and whether it was a probe, a final encode or a VMAF
measurement), then fixed-CRF drapto runs at `--fixed` CRFs, every one from empty state.
Every output is scored here by one libvmaf run of every frame against the source,
paired by frame number; each segment's score is the mean over its frames (the segments
of the target run, from its events).

Reported: 1. accuracy, the distribution of the target run's segment scores (share
within +/- 1.0, below target - 2); 2. worth, both files' per-segment scores and sizes,
and the fixed CRF whose worst segment reaches the target run's worst; 3. cost, the
target run's CPU seconds against the fixed run at the resolution class's CRF, split.

    .venv/bin/python bench/target_quality.py --file 360p [--seconds 60] [--target 93]
    .venv/bin/python bench/target_quality.py --probe-error   # probe presets and steps
    .venv/bin/python bench/target_quality.py --probe-gap     # probes 2 or 4 presets faster
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from encode_speed import (
    FILES,
    OUT,
    SOURCE,
    children_cpu,
    fresh_state_env,
    prepare,
    report,
    timed,
)

from drapto_engine.infrastructure.workers import cpu_count
from drapto_engine.services.detection.resolution import default_crf, resolution_class
from drapto_engine.services.quality.vmaf import measure_file, sampled, score_of

DRAPTO = [sys.executable, "-m", "drapto_engine.cli"]


def wrapper(ffmpeg: str, folder: Path, log: Path) -> Path:
    """An ffmpeg that appends `KIND USER+SYS` of each run to `log` (GNU time's %U %S)."""
    path = folder / "ffmpeg"
    path.write_text(
        "#!/bin/sh\n"
        'kind=other; for a in "$@"; do case "$a" in\n'
        "  *libvmaf*) kind=vmaf;; */probe-*) kind=probe;; */final-*) kind=final;;\n"
        "  *segment-*.partial.mp4) kind=final;; esac; done\n"
        f'exec /usr/bin/time -a -o "{log}" -f "$kind %U %S" "{ffmpeg}" "$@"\n'
    )
    path.chmod(0o755)
    return path


def run_drapto(
    source: Path, output: Path, preset: int, extra: list[str], ffmpeg: str
) -> tuple[float, float, list[dict[str, Any]], dict[str, float]]:
    """Wall and CPU seconds of one drapto run from empty state, its events, and its
    children's CPU seconds by kind (probe, final, vmaf, other)."""
    with tempfile.TemporaryDirectory(prefix="drapto-bench-") as scratch:
        folder = Path(scratch)
        log = folder / "cpu.log"
        env = fresh_state_env(folder)
        env["DRAPTO_FFMPEG"] = str(wrapper(ffmpeg, folder, log))
        events = folder / "events.jsonl"
        argv = [*DRAPTO, "encode", str(source), "-o", str(output), "--overwrite"]
        argv += ["--preset", str(preset), "--progress", "json", "--no-daemon", *extra]
        with events.open("w") as out:
            wall, cpu = timed_to(argv, env, out)
        split: dict[str, float] = {}
        for line in log.read_text().splitlines() if log.exists() else []:
            parts = line.split()
            if len(parts) == 3 and parts[0] in ("probe", "final", "vmaf", "other"):
                split[parts[0]] = split.get(parts[0], 0.0) + float(parts[1]) + float(parts[2])
        parsed = [json.loads(x) for x in events.read_text().splitlines() if x.startswith("{")]
    return wall, cpu, parsed, {k: round(v, 1) for k, v in split.items()}


def timed_to(argv: list[str], env: dict[str, str], out: Any) -> tuple[float, float]:
    before, start = children_cpu(), time.monotonic()
    subprocess.run(argv, check=True, stdout=out, env=env)
    return time.monotonic() - start, children_cpu() - before


def frame_scores(ffmpeg: str, encoded: Path, source: Path, by: str = "index") -> list[float]:
    """VMAF of every frame of `encoded` against `source`, paired by frame number (`by`
    "index") or by timestamp (`by` "time": libvmaf's inputs pair frames of equal time)."""
    with tempfile.TemporaryDirectory(prefix="drapto-vmaf-") as folder:
        log = Path(folder) / "vmaf.json"
        retime = "format=yuv420p10le," + (
            "settb=AVTB,setpts=N" if by == "index" else "setpts=PTS-STARTPTS"
        )
        subprocess.run(
            [
                ffmpeg, "-hide_banner", "-nostats", "-loglevel", "error",
                "-i", str(encoded), "-i", str(source),
                "-lavfi", f"[0:v]{retime}[d];[1:v]{retime}[r];"
                f"[d][r]libvmaf=n_threads={cpu_count()}:shortest=1:log_fmt=json:log_path={log}",
                "-f", "null", "-",
            ],
            check=True, capture_output=True,
        )  # fmt: skip
        return [float(f["metrics"]["vmaf"]) for f in json.loads(log.read_text())["frames"]]


def per_segment(scores: list[float], ranges: list[tuple[int, int]]) -> list[float]:
    return [round(score_of(scores[a:b]).mean, 2) for a, b in ranges]


def segment_sizes(encoded: Path, ranges: list[tuple[int, int]]) -> list[int]:
    """Bytes of each segment's video packets (an AV1 temporal unit a frame, in order)."""
    import av

    with av.open(str(encoded)) as container:
        sizes = [p.size for p in container.demux(video=0) if p.size]
    return [sum(sizes[a:b]) for a, b in ranges]


def oracle(fixed: dict[int, dict[str, Any]], worst: float) -> dict[str, Any] | None:
    """The best a per-segment choice among the fixed CRFs does for a worst segment of
    `worst`: each segment at the highest fixed CRF that scores at least `worst` there,
    against the highest single fixed CRF whose every segment does (video bytes)."""
    count = len(next(iter(fixed.values()))["segment_bytes"])
    picked = []
    for i in range(count):
        good = [c for c, f in fixed.items() if f["segment_vmaf"][i] >= worst]
        if not good:
            return None
        picked.append(max(good))
    whole = [c for c, f in fixed.items() if f["worst"] >= worst]
    if not whole:
        return None
    single = sum(fixed[max(whole)]["segment_bytes"])
    chosen = sum(fixed[c]["segment_bytes"][i] for i, c in enumerate(picked))
    return {
        "segment_crfs": picked,
        "single_crf": max(whole),
        "video_bytes": chosen,
        "single_crf_video_bytes": single,
        "saving": round(1 - chosen / single, 3),
    }


def accuracy(target: float, segment_scores: list[float]) -> dict[str, Any]:
    within = sum(abs(s - target) <= 1.0 for s in segment_scores)
    return {
        "segments": len(segment_scores),
        "within_1_share": round(within / len(segment_scores), 3),
        "below_target_minus_2": sum(s < target - 2 for s in segment_scores),
        "min_mean_max": [
            min(segment_scores),
            round(statistics.mean(segment_scores), 2),
            max(segment_scores),
        ],
        "errors_sorted": sorted(round(s - target, 2) for s in segment_scores),
    }


def targets(args: argparse.Namespace) -> dict[str, Any]:
    size, seconds, preset = FILES[args.file]
    seconds = args.seconds or seconds
    if (prepared := prepare(seconds, size)) is None:
        raise SystemExit(2)
    ffmpeg, source = prepared
    crf = default_crf(resolution_class(int(size.split("x")[0])))
    tq_out = OUT / f"tq-{size}-{seconds:g}s.mkv"
    extra = ["--target-vmaf", str(args.target)] + (
        ["--crf-range", args.crf_range] if args.crf_range else []
    )
    wall, cpu, events, split = run_drapto(source, tq_out, preset, extra, ffmpeg)
    done = sorted((e for e in events if e["type"] == "segment_done"), key=lambda e: e["index"])
    ranges, start = [], 0
    for e in done:
        ranges.append((start, start + e["frames"]))
        start += e["frames"]
    tq_scores = per_segment(frame_scores(ffmpeg, tq_out, source), ranges)
    tq_by_time = per_segment(frame_scores(ffmpeg, tq_out, source, by="time"), ranges)
    tq_bytes = segment_sizes(tq_out, ranges)
    print(f"target run: wall {wall:.1f} s, cpu {cpu:.1f} s, split {split}", flush=True)
    fixed: dict[int, dict[str, Any]] = {}
    for c in [] if args.target_only else sorted({crf, *args.fixed}):
        out = OUT / f"fixed-{size}-{seconds:g}s-crf{c}.mkv"
        f_wall, f_cpu, _, f_split = run_drapto(source, out, preset, ["--crf", str(c)], ffmpeg)
        scores = per_segment(frame_scores(ffmpeg, out, source), ranges)
        fixed[c] = {
            "wall_s": round(f_wall, 1), "cpu_s": round(f_cpu, 1), "split": f_split,
            "size_bytes": out.stat().st_size, "segment_vmaf": scores, "worst": min(scores),
            "segment_bytes": segment_sizes(out, ranges),
        }  # fmt: skip
        print(
            f"fixed CRF {c}: wall {f_wall:.1f} s, cpu {f_cpu:.1f} s, worst {min(scores)}",
            flush=True,
        )
    worst = min(tq_scores)
    result: dict[str, Any] = {
        "input": f"{source.name}: {size} {seconds:g} s, preset {preset}",
        "target": args.target,
        "cores": cpu_count(),
        "load_average": os.getloadavg(),
        "accuracy": accuracy(args.target, tq_scores),
    }
    target_run = {
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "split_cpu_s": split,
        "segment_crf": [e["crf"] for e in done],
        "segment_vmaf": tq_scores,
        "segment_vmaf_by_time": tq_by_time,
        "segment_bytes": tq_bytes,
        "segment_status": [e.get("target") for e in done],
        "segment_probes": [e["probes"] for e in done],
    }
    if not fixed:  # --target-only: accuracy and the target run's cost alone
        target_run["drapto_vmaf"] = [e["vmaf"] for e in done]
        return {**result, "target_run": target_run}
    reaching = [c for c, f in fixed.items() if f["worst"] >= worst]
    match = max(reaching) if reaching else None
    tq_size = tq_out.stat().st_size
    return {
        **result,
        "drapto_reported_vs_measured": [
            round(e["vmaf"] - s, 2) for e, s in zip(done, tq_scores, strict=True) if e["vmaf"]
        ],
        "target_run": {**target_run, "size_bytes": tq_size},
        "fixed_runs": fixed,
        "worth": {
            "fixed_crf_whose_worst_reaches": match,
            "size_saving_vs_it": round(1 - tq_size / fixed[match]["size_bytes"], 3)
            if match is not None
            else None,
            "oracle_among_fixed_crfs": oracle(fixed, worst),
            "oracle_interpolated": oracle_interpolated(fixed, worst),
        },
        "cost_cpu_ratio_vs_class_crf": round(cpu / fixed[crf]["cpu_s"], 2),
    }


def cut_encode(
    ffmpeg: str, source: Path, start: float, frames: int, preset: int, crf: int, out: Path
) -> list[str]:
    """An SVT-AV1 encode of `frames` frames of `source` from `start` seconds, as a
    segment's (10-bit, two threads)."""
    return [
        ffmpeg, "-v", "error", "-y", "-threads", "2", "-ss", str(start),
        "-i", str(source), "-map", "0:0", "-frames:v", str(frames),
        "-vf", "setpts=PTS-STARTPTS", "-c:v", "libsvtav1", "-preset", str(preset),
        "-crf", str(crf), "-pix_fmt", "yuv420p10le", "-svtav1-params", "lp=2", str(out),
    ]  # fmt: skip


def probe_error(args: argparse.Namespace) -> dict[str, Any]:
    """Probe settings against the final encode's score, on real footage (testvideo.mp4
    at its own 1280x720): three scenes of 120-240 frames, CRF 30 and 40, the final at
    preset 10 scored on every frame; probes at preset 12 and 13, on every frame or on the
    probe sample (vmaf.sampled), scored on every frame or every 2nd, 3rd or 4th."""
    if (prepared := prepare(24.0, "1280x720")) is None:
        raise SystemExit(2)
    ffmpeg = prepared[0]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="drapto-probe-") as scratch:
        folder = Path(scratch)

        def argv(start: float, frames: int, preset: int, crf: int, out: Path) -> list[str]:
            return cut_encode(ffmpeg, SOURCE, start, frames, preset, crf, out)

        def score(encode: list[str], out: Path, step: int) -> tuple[float, float]:
            before = children_cpu()
            got = asyncio.run(
                measure_file(encode, out, folder / "vmaf.json", subsample=step, threads=2,
                             source=SOURCE)
            )  # fmt: skip
            return got.mean, children_cpu() - before

        for start, frames in ((1.0, 150), (6.0, 240), (13.2, 180)):
            for crf in (30, 40):
                final = argv(start, frames, 10, crf, folder / "final.mp4")
                final_cpu = timed(final)[1]
                final_score, _ = score(final, folder / "final.mp4", 1)
                for preset in (12, 13):
                    for sample in (False, True):
                        probe = argv(start, frames, preset, crf, folder / "probe.mp4")
                        probe = sampled(probe) if sample else probe
                        probe_cpu = timed(probe)[1]
                        for step in (1, 2, 3, 4):
                            got, vmaf_cpu = score(probe, folder / "probe.mp4", step)
                            rows.append({
                                "start_s": start, "frames": frames, "crf": crf,
                                "probe_preset": preset, "sampled": sample, "step": step,
                                "final": round(final_score, 2),
                                "error": round(got - final_score, 2),
                                "final_cpu_s": round(final_cpu, 2),
                                "probe_cpu_s": round(probe_cpu, 2),
                                "probe_vmaf_cpu_s": round(vmaf_cpu, 2),
                            })  # fmt: skip
                            print(rows[-1], flush=True)
    summary: dict[str, Any] = {}
    for preset in (12, 13):
        for sample in (False, True):
            for step in (1, 2, 3, 4):
                mine = [
                    r for r in rows
                    if (r["probe_preset"], r["sampled"], r["step"]) == (preset, sample, step)
                ]  # fmt: skip
                summary[f"preset {preset} sampled {sample} step {step}"] = {
                    "max_abs_error": max(abs(r["error"]) for r in mine),
                    "mean_error": round(statistics.mean(r["error"] for r in mine), 3),
                    "probe_cpu_over_final": round(
                        sum(r["probe_cpu_s"] for r in mine) / sum(r["final_cpu_s"] for r in mine), 2
                    ),
                    "vmaf_cpu_over_final": round(
                        sum(r["probe_vmaf_cpu_s"] for r in mine)
                        / sum(r["final_cpu_s"] for r in mine),
                        2,
                    ),
                }
    return {"summary": summary, "rows": rows}


def probe_gap(args: argparse.Namespace) -> dict[str, Any]:
    """How far a probe two and four presets faster scores from the final at the job's
    preset, at the same CRF: on the 1080p benchmark file (preset 6), three cuts of 240
    frames, CRF 38, 50 and 58, every encode scored on every 3rd frame (as finals are)."""
    size, seconds, preset = FILES["1080p"]
    if (prepared := prepare(seconds, size)) is None:
        raise SystemExit(2)
    ffmpeg, source = prepared
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="drapto-gap-") as scratch:
        folder = Path(scratch)

        def argv(start: float, speed: int, crf: int, out: Path) -> list[str]:
            return cut_encode(ffmpeg, source, start, 240, speed, crf, out)

        for start in (2.0, 30.0, 52.0):
            for crf in (38, 50, 58):
                scores: dict[int, float] = {}
                cpu: dict[int, float] = {}
                for speed in (preset, preset + 2, preset + 4):
                    out = folder / f"p{speed}.mp4"
                    encode = argv(start, speed, crf, out)
                    cpu[speed] = timed(encode)[1]
                    got = asyncio.run(
                        measure_file(encode, out, folder / "vmaf.json", subsample=3, threads=2,
                                     source=source)
                    )  # fmt: skip
                    scores[speed] = got.mean
                rows.append({
                    "start_s": start, "crf": crf, "final": round(scores[preset], 2),
                    **{f"gap_preset_{s}": round(scores[s] - scores[preset], 2)
                       for s in (preset + 2, preset + 4)},
                    **{f"cpu_preset_{s}_over_final": round(cpu[s] / cpu[preset], 2)
                       for s in (preset + 2, preset + 4)},
                })  # fmt: skip
                print(rows[-1], flush=True)
    summary = {
        f"preset {s}": {
            "gap_min_max": [min(r[f"gap_preset_{s}"] for r in rows),
                            max(r[f"gap_preset_{s}"] for r in rows)],
            "gap_by_crf": {c: round(statistics.mean(r[f"gap_preset_{s}"] for r in rows
                                                    if r["crf"] == c), 2) for c in (38, 50, 58)},
            "cpu_over_final": round(statistics.median(r[f"cpu_preset_{s}_over_final"]
                                                      for r in rows), 2),
        }
        for s in (preset + 2, preset + 4)
    }  # fmt: skip
    return {"summary": summary, "rows": rows}


def _between(fixed: dict[int, dict[str, Any]], segment: int, crf: float) -> tuple[float, float]:
    """A segment's VMAF and video bytes at `crf`, from the fixed runs: linear in the CRF
    for the score and in its logarithm for the bytes, between the two runs around it
    (beyond the runs, from the last two)."""
    crfs = sorted(fixed)
    i = max(0, min(len(crfs) - 2, sum(c <= crf for c in crfs) - 1))
    c0, c1 = crfs[i], crfs[i + 1]
    t = (crf - c0) / (c1 - c0)
    v0, v1 = fixed[c0]["segment_vmaf"][segment], fixed[c1]["segment_vmaf"][segment]
    b0, b1 = fixed[c0]["segment_bytes"][segment], fixed[c1]["segment_bytes"][segment]
    return v0 + t * (v1 - v0), math.exp(math.log(b0) + t * (math.log(b1) - math.log(b0)))


def oracle_interpolated(fixed: dict[int, dict[str, Any]], worst: float) -> dict[str, Any]:
    """What landing every segment exactly on `worst` would save against the one CRF whose
    worst segment scores `worst`, both read between the fixed runs (_between; CRFs in
    tenths, at most 63)."""
    count = len(next(iter(fixed.values()))["segment_bytes"])
    steps = [c / 10 for c in range(10 * min(fixed), 631)]
    per = []
    for i in range(count):
        good = [c for c in steps if _between(fixed, i, c)[0] >= worst] or [min(fixed)]
        per.append(max(good))
    single = max(
        (c for c in steps if min(_between(fixed, i, c)[0] for i in range(count)) >= worst),
        default=min(fixed),
    )
    chosen = sum(_between(fixed, i, c)[1] for i, c in enumerate(per))
    whole = sum(_between(fixed, i, single)[1] for i in range(count))
    return {
        "worst": worst,
        "segment_crfs": per,
        "single_crf": single,
        "saving": round(1 - chosen / whole, 3),
    }


def oracles(report_json: Path, scores: list[float]) -> dict[str, Any]:
    """The interpolated oracle of a saved report's fixed runs, for each worst score."""
    report = json.loads(report_json.read_text())
    fixed = {int(c): f for c, f in report["fixed_runs"].items()}
    fixed = {c: f for c, f in fixed.items() if "segment_bytes" in f}
    worst = min(report["target_run"]["segment_vmaf"])
    return {f"{w:g}": oracle_interpolated(fixed, w) for w in [worst, *scores]}


def timed_capture(argv: list[str]) -> tuple[float, str]:
    before = children_cpu()
    done = subprocess.run(argv, check=True, capture_output=True, text=True)
    return children_cpu() - before, done.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", choices=("360p", "1080p"), default="360p")
    parser.add_argument("--seconds", type=float, help="a shorter cut of the file")
    parser.add_argument("--target", type=float, default=93.0)
    parser.add_argument("--crf-range", help="passed on as --crf-range")
    parser.add_argument(
        "--fixed", type=lambda t: [int(x) for x in t.split(",")], default=[20, 24, 28, 32, 36]
    )
    parser.add_argument("--probe-error", action="store_true")
    parser.add_argument(
        "--probe-gap", action="store_true", help="probes 2 and 4 presets faster at 1080p"
    )
    parser.add_argument(
        "--oracle", type=Path, metavar="REPORT", help="a saved report's interpolated oracle"
    )
    parser.add_argument(
        "--target-only", action="store_true", help="no fixed-CRF runs: accuracy and cost alone"
    )
    args = parser.parse_args()
    if args.oracle:
        print(json.dumps(oracles(args.oracle, [args.target]), indent=2))
    elif args.probe_error:
        report(probe_error(args), "target-quality-probe-error")
    elif args.probe_gap:
        report(probe_gap(args), "target-quality-probe-gap")
    else:
        seconds = args.seconds or FILES[args.file][1]
        report(targets(args), f"target-quality-{args.file}-{seconds:g}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
