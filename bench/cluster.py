"""The cost of distribution: one file encoded by the engine in process, then through a
local cluster of `drapto worker`s, each pinned to one core with `taskset -c`, the
engine's own slots at 0 and no shared storage (every segment's packets shipped as
bytes, every encoded segment sent back).

Prints, per mode, the wall time; per remote segment its seconds, frames and bytes
shipped (source packets out plus the encoded segment back); and the wall ratio
cluster/in-process. Usage:

    .venv/bin/python bench/cluster.py [--input FILE] [--preset 12] [--workers 2]

Needs the cluster extra and taskset (util-linux). Makes its own certificates in a
temporary config folder.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from drapto_engine.cluster.host import ClusterOptions
from drapto_engine.cluster.scheduler import ENCODER
from drapto_engine.config import Config
from drapto_engine.core.events import Event, RolledBack, SegmentDone, SegmentFailed
from drapto_engine.core.jobs import EntryStatus, JobOptions
from drapto_engine.engine import Engine
from drapto_engine.infrastructure.ffmpeg.toolchain import find_toolchain
from drapto_engine.infrastructure.workers import cpu_count

ROOT = Path(__file__).resolve().parents[1]
SOURCE = (
    Path(os.environ.get("DRAPTO_TEST_MEDIA") or ROOT.parent / "shared" / "media") / "testvideo.mp4"
)
DRAPTO = [sys.executable, "-m", "drapto_engine.cli"]


async def encode(
    ffmpeg: str,
    source: Path,
    folder: Path,
    options: JobOptions,
    start_workers: Callable[[str], list[subprocess.Popen[bytes]]] | None = None,
    **engine: Any,
) -> tuple[float, list[SegmentDone]]:
    done: list[SegmentDone] = []
    eng = Engine(
        ffmpeg,
        config=Config(),
        state_dir=folder / "state",
        config_path=folder / "config.toml",
        persist=False,
        **engine,
    )

    def record(event: Event) -> None:
        if isinstance(event, SegmentDone):
            done.append(event)
        elif isinstance(event, RolledBack | SegmentFailed):
            print(f"bench: {event.type}: {event.model_dump_json()}", file=sys.stderr)

    eng.bus.subscribe(record)
    await eng.start()
    workers: list[subprocess.Popen[bytes]] = []
    try:
        if eng.cluster is not None and start_workers is not None:
            workers = start_workers(eng.cluster.address)
        wall = await run(eng, source, folder / "out.mkv", options, workers)
    finally:
        for proc in workers:
            proc.send_signal(signal.SIGTERM)
        for proc in workers:
            proc.wait(60)
        await eng.stop()
        eng.close()
    return wall, done


async def run(
    eng: Engine, source: Path, output: Path, options: JobOptions, workers: list[Any]
) -> float:
    if eng.cluster is not None and eng.cluster.scheduler is not None:
        scheduler = eng.cluster.scheduler
        deadline = time.monotonic() + 120
        while sum(1 for ws in scheduler.workers.values() if ws.resources.get(ENCODER)) < len(
            workers
        ):
            if time.monotonic() > deadline:
                raise SystemExit("bench: the workers did not join within 120 s")
            await asyncio.sleep(0.2)
    [entry] = await eng.add([(source, output)], options=options)
    started = time.monotonic()
    await eng.run(only={entry.id}, ignore_pause=True)
    wall = time.monotonic() - started
    finished = eng.entry(entry.id)
    if finished.status is not EntryStatus.DONE:
        raise SystemExit(f"bench: the encode failed: {finished.error}")
    return wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, default=SOURCE)
    parser.add_argument("--preset", type=int, default=12)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if shutil.which("taskset") is None:
        print("bench: taskset is missing (util-linux)", file=sys.stderr)
        return 2
    ffmpeg = find_toolchain().ffmpeg
    options = JobOptions(preset=args.preset)
    cores = cpu_count()
    with tempfile.TemporaryDirectory(prefix="drapto-bench-cluster-") as tmp:
        tmp_path = Path(tmp)
        env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config")}
        subprocess.run([*DRAPTO, "cluster", "init"], env=env, check=True, capture_output=True)
        certs = tmp_path / "config" / "drapto" / "cluster"

        def pinned_workers(address: str) -> list[subprocess.Popen[bytes]]:
            bundle = ["--bundle", str(certs / "worker-bundle"), "--slots", "1"]
            return [
                subprocess.Popen(
                    [
                        "taskset",
                        "-c",
                        str(i % cores),
                        *DRAPTO,
                        "worker",
                        address,
                        *bundle,
                        "--name",
                        f"core{i % cores}",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                for i in range(args.workers)
            ]

        (tmp_path / "local").mkdir()
        (tmp_path / "cluster").mkdir()
        local_wall, local_done = asyncio.run(
            encode(ffmpeg, args.input, tmp_path / "local", options, workers=args.workers)
        )
        cluster_wall, cluster_done = asyncio.run(
            encode(
                ffmpeg,
                args.input,
                tmp_path / "cluster",
                options,
                pinned_workers,
                workers=args.workers,
                cluster=ClusterOptions("tls://127.0.0.1:0", folder=certs, local_slots=False),
            )
        )
    segments = [
        {
            "index": d.index,
            "host": d.host,
            "frames": d.frames,
            "seconds": round(d.wall_s, 2),
            "shipped_bytes": d.shipped_bytes,
            "encoded_bytes": d.size_bytes,
        }
        for d in sorted(cluster_done, key=lambda d: d.index)
    ]
    report = {
        "input": str(args.input),
        "preset": args.preset,
        "workers": args.workers,
        "in_process_s": round(local_wall, 2),
        "in_process_segments": len(local_done),
        "cluster_s": round(cluster_wall, 2),
        "wall_ratio": round(cluster_wall / local_wall, 3),
        "shipped_bytes_total": sum(s["shipped_bytes"] for s in segments),
        "cluster_segments": segments,
    }
    for s in segments:
        print(
            f"segment {s['index']:3d} on {s['host']}: {s['frames']} frames, {s['seconds']} s,"
            f" {s['shipped_bytes']:,} bytes shipped ({s['encoded_bytes']:,} back)"
        )
    print(
        f"in process {local_wall:.2f} s, cluster of {args.workers} pinned workers"
        f" {cluster_wall:.2f} s: ratio {cluster_wall / local_wall:.3f}"
    )
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
