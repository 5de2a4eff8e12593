"""How long checking a big queue file takes: parsing, then drapto's checks, separately.

Writes a queue file of N jobs (default 100,000) in a temporary folder: a [defaults]
table, a [flags] table and N [[job]] tables of four keys each, whose inputs are 1,000
real (empty) folders; then the same file with every job wrong (`crf = true`: N
problems, each with its file, line and key). Times load_batch's two steps, median of
--reps runs each:

    parse     reading the file, tomllib.loads (the standard library's TOML parser) and
              the scan for dotted keys too long for it
    check     what drapto adds: the models (pydantic), segment lengths over the
              defaults, each distinct input, and (for problems) every key's line

and how long refusing a 100,000-deep nesting takes. Usage:

    .venv/bin/python bench/queue_file.py [--jobs 100000] [--reps 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from drapto_engine.infrastructure.ffmpeg.toolchain import find_toolchain
from drapto_engine.infrastructure.toml_file import KeyLines, parse, read_text
from drapto_engine.services.batch_file import (
    QUEUE_LIMIT,
    BatchFileError,
    check_batch,
    load_batch,
)

FOLDERS = 1000


def queue_text(jobs: int, wrong: bool) -> str:
    parts = ['[defaults]\noutput_dir = "av1"\npreset = 8\n\n[flags]\ncrop_detection = "on"\n']
    crf = "true" if wrong else "28"
    for i in range(jobs):
        parts.append(
            f'\n[[job]]\ninput = "library/folder {i % FOLDERS}"  # job {i + 1}\n'
            f"crf = {crf}\nmin_segment_s = {4 + i % 3}\nmax_segment_s = 20.5\n"
        )
    return "".join(parts)


def median_s(reps: int, work: Callable[[], object]) -> float:
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def timed_load(reps: int, path: Path, ffmpeg: str) -> tuple[float, float, int]:
    """Medians of load_batch's two steps: reading and parsing (tomllib, and the scan for
    keys too long for it), then drapto's checks; and the problems found."""
    parse_times, check_times, problems = [], [], 0
    for _ in range(reps):
        started = time.perf_counter()
        text = read_text(path, QUEUE_LIMIT)
        lines = KeyLines(text)
        data = parse(path, text, lines)
        parsed = time.perf_counter()
        try:
            check_batch(path, data, lines, ffmpeg)
        except BatchFileError as exc:
            problems = exc.count
        else:
            problems = 0
        check_times.append(time.perf_counter() - parsed)
        parse_times.append(parsed - started)
    return statistics.median(parse_times), statistics.median(check_times), problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    ffmpeg = find_toolchain().ffmpeg
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        for i in range(FOLDERS):
            (root / "library" / f"folder {i}").mkdir(parents=True)
        print(f"{args.jobs} jobs, median of {args.reps}")
        for wrong in (False, True):
            path = root / ("invalid.toml" if wrong else "queue.toml")
            text = queue_text(args.jobs, wrong)
            path.write_text(text, encoding="utf-8")
            size = f"{len(text.encode()) / 2**20:.1f} MiB"
            parse_s, check_s, problems = timed_load(args.reps, path, ffmpeg)
            name = "invalid file" if wrong else "valid file"
            print(f"{name}: {size}, {problems} problems")
            print(f"  parse  {parse_s:7.2f} s  (read, tomllib.loads, long-key scan)")
            print(f"  check  {check_s:7.2f} s  (models, segment lengths, inputs, lines)")
        deep = root / "deep.toml"
        deep.write_text("x = " + "[" * 100_000 + "]" * 100_000 + "\n")

        def refuse() -> None:
            try:
                load_batch(deep, ffmpeg)
            except BatchFileError:
                return
            raise AssertionError("a 100,000-deep file was accepted")

        print(f"deep     {median_s(args.reps, refuse):7.3f} s  (100,000-deep nesting refused)")


if __name__ == "__main__":
    main()
