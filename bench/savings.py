"""What a replace and `drapto stats` cost: the steps of one replace on a big file, and the
report over many recorded files.

Makes a source and a smaller "AV1" file of random bytes (default 400 MiB and 150 MiB) in
a folder beside the clone (the same file system as the clone, as a library's trash is),
replaces the source (journal, hard link into the trash, fsync of the new file, rename,
unlink, record) and restores it; then fills a fresh state database with N savings rows
(default 100,000 over 20 folders and 700 days; the last 30 days' originals still in
the trash) and times the report `drapto stats`
prints, the trash's due query and a restore's look-up. Medians of --reps runs. Usage:

    .venv/bin/python bench/savings.py [--mib 400] [--rows 100000] [--reps 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from drapto_engine.core.jobs import JobOptions
from drapto_engine.infrastructure.savings import SavingsStore
from drapto_engine.infrastructure.store import StateStore
from drapto_engine.services.replace import Replacer

HERE = Path(__file__).resolve().parents[1]


def timed(run: Callable[[], object], reps: int) -> float:
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def write_random(path: Path, mib: int) -> None:
    block = os.urandom(1 << 20)
    with path.open("wb") as file:
        for _ in range(mib):
            file.write(block)


def replace_figures(mib: int, reps: int) -> None:
    with tempfile.TemporaryDirectory(dir=HERE.parent, prefix="drapto-bench-") as folder:
        root = Path(folder)
        (root / "lib").mkdir()
        store = StateStore(root / "state" / "drapto.db")
        replacer = Replacer(root / "state", SavingsStore(store))
        source, output = root / "lib" / "film.mp4", root / "lib" / "film.av1.mkv"
        write_random(source, mib)
        replace_s, restore_s = [], []
        for _ in range(reps):
            write_random(output, mib * 3 // 8)
            started = time.perf_counter()
            replacer.replace(source, output, JobOptions(replace=True))
            replace_s.append(time.perf_counter() - started)
            started = time.perf_counter()
            replacer.restore(source)
            restore_s.append(time.perf_counter() - started)
            output.unlink()
        store.close()
    print(f"replace of a {mib} MiB source by a {mib * 3 // 8} MiB file:"
          f" {statistics.median(replace_s) * 1000:.0f} ms;"
          f" restore {statistics.median(restore_s) * 1000:.0f} ms")  # fmt: skip


def report_figures(rows: int, reps: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        store = StateStore(Path(folder) / "drapto.db")
        savings = SavingsStore(store)
        start = time.time() - 700 * 86400
        with store.transaction() as db:
            db.executemany(
                "INSERT INTO savings (key, path, output, root, bytes_before, bytes_after,"
                " time, state, trash, keep_until) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        f"k{i}",
                        f"/srv/media/{i % 20}/film {i}.mp4",
                        f"/srv/media/{i % 20}/film {i}.mkv",
                        f"/srv/media/{i % 20}",
                        4_000_000_000 + i,
                        1_500_000_000,
                        start + i * 700 * 86400 / rows,
                        "replaced" if i * 700 / rows > 670 else "emptied",
                        f"/srv/media/{i % 20}/.drapto-trash/film {i}.mp4",
                        start + i * 700 * 86400 / rows + 30 * 86400,
                    )
                    for i in range(rows)
                ],
            )
        report = timed(savings.report, reps)
        due = timed(savings.due, reps)
        lookup = timed(lambda: savings.in_trash(f"/srv/media/3/film {rows // 2}.mp4"), reps)
        store.close()
    print(f"{rows:,} rows: report {report * 1000:.0f} ms, due {due * 1000:.1f} ms,"
          f" a restore's look-up {lookup * 1000:.2f} ms")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=400)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    replace_figures(args.mib, args.reps)
    report_figures(args.rows, args.reps)


if __name__ == "__main__":
    main()
