"""A watched library's cost: the rescan of many files, and the watcher's CPU while idle.

Makes `--files` small files (default 50,000, in folders of 100) in a temporary folder,
then times `FolderWatch.rescan` over them: the first one (every file new) and warm ones
in the steady state (every file already decided, as after the engine queued or skipped
them), with the page cache warm. Then runs the whole `WatchService` (watchfiles' events
on every folder, ticks every second, a rescan every `--rescan-s`) over the same folder
for `--seconds` (default 600) with nothing changing, and reports the CPU time of this
process (all its threads, watchfiles' too) as a share of one core. Usage:

    .venv/bin/python bench/watch_scan.py [--files 50000] [--seconds 600] [--rescan-s 600]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from drapto_engine.core.watching import WatchedFolder
from drapto_engine.services.watch import Decision, FolderWatch, WatchService


def make_library(root: Path, files: int, per_folder: int = 100) -> None:
    for index in range(files):
        folder = root / f"show {index // per_folder:04d}"
        if index % per_folder == 0:
            folder.mkdir()
        (folder / f"episode {index % per_folder:03d}.mkv").write_bytes(b"x" * (index % 7 + 1))


def time_rescans(root: Path, reps: int) -> tuple[float, list[float], int]:
    watch = FolderWatch(WatchedFolder(path=str(root), settle_s=60))
    began = time.perf_counter()
    seen = watch.rescan()
    first = time.perf_counter() - began
    # The steady state: every file decided (queued, done or refused) with its stamp.
    watch.decided = {
        path: Decision(waiting.stamp, 0, "done") for path, waiting in watch.pending.items()
    }
    watch.pending.clear()
    warm: list[float] = []
    for _ in range(reps):
        began = time.perf_counter()
        watch.rescan()
        warm.append(time.perf_counter() - began)
    assert not watch.pending, "a warm rescan found changes"
    return first, warm, seen


async def idle_cpu(root: Path, seconds: float, rescan_s: float) -> tuple[float, float]:
    """CPU-seconds this process used while the service watched `root`, and the wall."""

    async def queue(_folder: WatchedFolder, paths: list[Path]) -> None:
        raise AssertionError(f"nothing should be queued: {paths[:3]}")

    service = WatchService(queue, lambda _p: "done", rescan_s=rescan_s, events=True)
    service.add(WatchedFolder(path=str(root), settle_s=1))
    service.start()
    while not service.views()[0].last_scan or service.views()[0].pending:
        await asyncio.sleep(0.1)  # the first scan and its decisions are not idle time
    await asyncio.sleep(2)  # the event watcher has set up its watches
    cpu, wall = time.process_time(), time.monotonic()
    await asyncio.sleep(seconds)
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    await service.stop()
    return cpu, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=50_000)
    parser.add_argument("--reps", type=int, default=5, help="warm rescans timed")
    parser.add_argument("--seconds", type=float, default=600.0, help="idle measurement")
    parser.add_argument("--rescan-s", type=float, default=600.0, help="rescan interval")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="drapto-watch-bench-") as temporary:
        root = Path(temporary)
        began = time.perf_counter()
        make_library(root, args.files)
        print(f"made {args.files} files in {time.perf_counter() - began:.1f} s")
        first, warm, seen = time_rescans(root, args.reps)
        print(f"rescan of {seen} files: first {first:.2f} s (all new)")
        print(
            f"warm rescans: median {statistics.median(warm):.2f} s, max {max(warm):.2f} s "
            f"({', '.join(f'{w:.2f}' for w in warm)})"
        )
        if args.seconds > 0:
            cpu, wall = asyncio.run(idle_cpu(root, args.seconds, args.rescan_s))
            print(
                f"idle watcher: {cpu:.2f} CPU-s over {wall:.0f} s = {100 * cpu / wall:.3f}% "
                f"of one core (rescan every {args.rescan_s:g} s)"
            )


if __name__ == "__main__":
    main()
