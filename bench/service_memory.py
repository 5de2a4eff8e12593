"""The engine service's memory over many jobs: its resident size stays flat.

One real job runs first through an in-process Engine (a 6 s 320x240 x264 test file,
SVT-AV1 preset 12, 1-2 s segments, so a few segments and their progress), and every
event of it is recorded. Then the engine's event path takes --jobs more jobs: the
recorded events are emitted again on the engine's bus, each time with a new job id and
entry id, so the engine's subscribers (the Monitor, the engine's view that clients get
their snapshots from, its own bookkeeping) see what a real job makes them see; every
BATCH jobs the finished entries are removed, as the TUI's "Clear done" (C) does. Real
encodes would be the same events, only slower: 2,000 of them take about 30 minutes of
both cores (0.9 s a job), the replay a few seconds.

With --real, every job is a real encode instead: BATCH copies of the file are queued
and run at a time, then cleared and their outputs deleted.

Printed: the process's RSS (after a full collection) and how many jobs the Monitor and
the engine's view hold, at every --every jobs. Usage:

    .venv/bin/python bench/service_memory.py [--jobs 2000] [--every 500] [--real]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import shutil
import subprocess
import tempfile
from pathlib import Path

import psutil

from drapto_engine.config import Config
from drapto_engine.core.events import EntryChanged, EntryRemoved, Event
from drapto_engine.core.jobs import JobOptions
from drapto_engine.engine import Engine
from drapto_engine.infrastructure.ffmpeg.toolchain import find_toolchain

BATCH = 50
"""Finished entries are cleared every this many jobs."""


def make_source(ffmpeg: str, out: Path) -> None:
    subprocess.run(
        [
            ffmpeg, "-v", "error", "-y", "-f", "lavfi",
            "-i", "testsrc2=size=320x240:rate=25:duration=6",
            "-c:v", "libx264", "-preset", "ultrafast", "-g", "25", str(out),
        ],
        check=True,
    )  # fmt: skip


async def record(engine: Engine, source: Path) -> tuple[list[Event], int, str]:
    """Run one real job; its events, its entry id and its job id."""
    seen: list[Event] = []
    unsubscribe = engine.bus.subscribe(seen.append)
    entry = await engine.add_file(str(source), str(source.with_suffix(".av1.mkv")), OPTIONS)
    await engine.run(only={entry.id})
    done = engine.entry(entry.id)
    assert done.status.value == "done", f"the recorded job did not finish: {done.error}"
    assert done.job is not None
    await engine.clear_finished()
    unsubscribe()
    return seen, entry.id, done.job


def renamed(event: Event, entry_id: int, job: str, number: int) -> Event | None:
    """The recorded event as job `number` would emit it (None: not about the job)."""
    new_id, new_job = 1_000_000 + number, f"{job}-{number}"
    if isinstance(event, EntryChanged) and event.entry.id == entry_id:
        update = {"id": new_id, "job": new_job if event.entry.job else None}
        return event.model_copy(update={"entry": event.entry.model_copy(update=update)})
    if isinstance(event, EntryRemoved):
        return None  # the replay clears its own entries, BATCH at a time
    if event.job == job:
        return event.model_copy(update={"job": new_job})
    return None


OPTIONS = JobOptions(preset=12, min_segment_s=1.0, max_segment_s=2.0)


async def encode_batch(engine: Engine, sources: list[Path], first: int) -> None:
    """BATCH real jobs, one of each copy of the source (a file is encoded by one job at
    a time), run and cleared; their outputs deleted."""
    outputs = [s.with_name(f"out-{first + n}.av1.mkv") for n, s in enumerate(sources)]
    entries = [
        await engine.add_file(str(s), str(out), OPTIONS)
        for s, out in zip(sources, outputs, strict=True)
    ]
    await engine.run(only={e.id for e in entries})
    failed = [e.error for e in map(engine.entry, (e.id for e in entries)) if e.error]
    assert not failed, failed[0]
    await engine.clear_finished()
    for out in outputs:
        out.unlink()


def rss() -> int:
    gc.collect()
    return int(psutil.Process().memory_info().rss)


def held(engine: Engine) -> tuple[int, int]:
    return len(engine.monitor._jobs), len(engine.view.state.jobs)


async def main(jobs: int, every: int, real: bool) -> None:
    ffmpeg = find_toolchain().ffmpeg
    with tempfile.TemporaryDirectory(prefix="drapto-memory-") as folder:
        root = Path(folder)
        source = root / "clip.mkv"
        make_source(ffmpeg, source)
        engine = Engine(ffmpeg, config=Config(), state_dir=root / "state", workers=2)
        await engine.start()
        try:
            events, entry_id, job = await record(engine, source)
            replayed = [e for e in events if renamed(e, entry_id, job, 0) is not None]
            print(f"one real job: {len(events)} events, {len(replayed)} of them about the job")
            print(f"{'jobs':>6} {'RSS MiB':>8} {'monitor jobs':>13} {'view jobs':>10}")
            copies = [source.with_name(f"clip-{n}.mkv") for n in range(BATCH)] if real else []
            for copy in copies:
                shutil.copyfile(source, copy)
            base = rss()
            for number in range(jobs + 1):
                if number % every == 0:
                    size = rss()
                    monitor, view = held(engine)
                    print(f"{number:>6} {size / 2**20:>8.1f} {monitor:>13} {view:>10}")
                if number == jobs:
                    break
                if real:
                    if number % BATCH == 0:
                        await encode_batch(engine, copies, number)
                    continue
                for event in replayed:
                    again = renamed(event, entry_id, job, number)
                    assert again is not None
                    engine.bus.emit(again)
                if (number + 1) % BATCH == 0:
                    for cleared in range(number + 1 - BATCH, number + 1):
                        engine.bus.emit(EntryRemoved(entry_id=1_000_000 + cleared))
            print(f"growth over {jobs} jobs: {(rss() - base) / 2**20:.1f} MiB")
        finally:
            await engine.stop()
            engine.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--every", type=int, default=500)
    parser.add_argument("--real", action="store_true", help="real encodes, not the replay")
    args = parser.parse_args()
    assert args.every % BATCH == 0, f"--every must be a multiple of {BATCH}"
    asyncio.run(main(args.jobs, args.every, args.real))
