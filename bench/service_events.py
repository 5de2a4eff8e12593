"""The engine service under load: event throughput and latency to several clients while
encoders run, and how long a client waits for the snapshot of a 10,000-entry queue.

Events: an in-process Engine and EngineServer; --clients client processes connect,
subscribe and time every event they receive (receive time minus the event's `at`).
A real job (a 640x360 x264 test file, 2 workers, short segments) runs so that two
SVT-AV1 encoders share the machine with the engine; once both run, this process
adds synthetic SegmentProgress events on top of the real ones at --rate per second
for --seconds. Each client reports the events per second it received in that window
(real and synthetic) and the latency median, p95 and max.

Snapshot: 10,000 entries are written straight to a fresh state store with QueueStore
(not add_paths: its folder scan is not what is measured here), the queue paused, then
an engine serves it; a client process times get_snapshot() and subscribe() round trips
(request sent to the reply's models validated). Usage:

    .venv/bin/python bench/service_events.py [--seconds 10] [--rate 1000] [--entries 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from drapto_engine.config import Config
from drapto_engine.core.events import (
    Event,
    SegmentDone,
    SegmentFailed,
    SegmentProgress,
    SegmentStarted,
    WarningEvent,
)
from drapto_engine.core.jobs import JobOptions, QueueEntry
from drapto_engine.engine import Engine
from drapto_engine.infrastructure import paths
from drapto_engine.infrastructure.ffmpeg.toolchain import find_toolchain
from drapto_engine.infrastructure.queue_store import QueueStore
from drapto_engine.infrastructure.store import StateStore
from drapto_engine.server.client import EngineClient
from drapto_engine.server.server import EngineServer

START, END = "bench-start", "bench-end"
TICK_S = 0.01


# -- client processes --


async def events_client(socket_path: Path) -> None:
    """Subscribe, then time every event between the START and END markers."""
    client = await EngineClient.connect(socket_path, client_name="bench-events")
    await client.subscribe()
    print("ready", flush=True)
    latencies: list[float] = []
    began = ended = 0.0
    async for event in client.events():
        now = time.time()
        if isinstance(event, WarningEvent) and event.message in (START, END):
            if event.message == END:
                ended = now
                break
            began = now
        elif began:
            latencies.append(now - event.at)
    await client.close()
    latencies.sort()
    print(
        json.dumps(
            {
                "events": len(latencies),
                "per_s": len(latencies) / (ended - began),
                "median_ms": 1000 * statistics.median(latencies),
                "p95_ms": 1000 * latencies[int(0.95 * (len(latencies) - 1))],
                "max_ms": 1000 * latencies[-1],
            }
        ),
        flush=True,
    )


async def snapshot_client(socket_path: Path) -> None:
    client = await EngineClient.connect(socket_path, client_name="bench-snapshot")
    timings: dict[str, Any] = {}
    for name, call in (("get_snapshot", client.get_snapshot), ("subscribe", client.subscribe)):
        started = time.perf_counter()
        snapshot = await call()
        timings[f"{name}_s"] = time.perf_counter() - started
        timings["entries"] = len(snapshot.entries)
    await client.close()
    print(json.dumps(timings), flush=True)


# -- the engine side --


def make_source(ffmpeg: str, out: Path, seconds: int) -> None:
    subprocess.run(
        [
            ffmpeg, "-v", "error", "-y", "-f", "lavfi",
            "-i", f"testsrc2=size=640x360:rate=25:duration={seconds}",
            "-c:v", "libx264", "-preset", "ultrafast", "-g", "25", str(out),
        ],
        check=True,
    )  # fmt: skip


async def serving(engine: Engine, socket_path: Path) -> tuple[EngineServer, asyncio.Task[None]]:
    server = EngineServer(engine, socket_path)
    await engine.start()
    await server.start()
    return server, asyncio.create_task(engine.run())


async def stop(engine: Engine, server: EngineServer, runner: asyncio.Task[None]) -> None:
    await engine.stop()
    await runner
    await server.close()
    engine.close()


async def start_clients(
    mode: str, socket_path: Path, count: int
) -> list[asyncio.subprocess.Process]:
    clients = [
        await asyncio.create_subprocess_exec(
            sys.executable, __file__, mode, str(socket_path), stdout=asyncio.subprocess.PIPE
        )
        for _ in range(count)
    ]
    return clients


async def report(process: asyncio.subprocess.Process) -> dict[str, Any]:
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 120)
    await process.wait()
    result: dict[str, Any] = json.loads(line)
    return result


class Encoders:
    """Counts running encoders from the engine's own events."""

    def __init__(self) -> None:
        self.running: set[tuple[str, int]] = set()

    def __call__(self, event: Event) -> None:
        if isinstance(event, SegmentStarted):
            self.running.add((event.job, event.index))
        elif isinstance(event, SegmentDone | SegmentFailed):
            self.running.discard((event.job, event.index))


async def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def inject(engine: Engine, rate: float, seconds: float, encoders: Encoders) -> float:
    """Emit `rate` synthetic progress events a second; returns the mean encoders running."""
    began = time.monotonic()
    sent, occupancy = 0, []
    while (elapsed := time.monotonic() - began) < seconds:
        for _ in range(int(rate * elapsed) - sent):
            engine.bus.emit(
                SegmentProgress(
                    job="bench-synthetic", index=sent % 64, frame=sent, frames=10**6,
                    fps=42.0, percent=sent / 10**4,
                )
            )  # fmt: skip
            sent += 1
        occupancy.append(len(encoders.running))
        await asyncio.sleep(TICK_S)
    return statistics.mean(occupancy)


async def measure_events(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    ffmpeg = find_toolchain().ffmpeg
    source = work / "source.mkv"
    make_source(ffmpeg, source, args.source_seconds)
    engine = Engine(
        ffmpeg, config=Config(), state_dir=work / "state", config_path=work / "c.toml",
        workers=2, persist=False,
    )  # fmt: skip
    encoders = Encoders()
    engine.bus.subscribe(encoders)
    socket_path = work / "engine.sock"
    server, runner = await serving(engine, socket_path)
    clients = await start_clients("--events-client", socket_path, args.clients)
    for client in clients:
        assert client.stdout is not None
        assert await asyncio.wait_for(client.stdout.readline(), 30) == b"ready\n"
    options = JobOptions(preset=args.preset, min_segment_s=2.0, max_segment_s=3.0, overwrite=True)
    await engine.add([(source, work / "out.mkv")], options=options)
    await wait_for(lambda: len(encoders.running) >= 2, 120, "two encoders")
    engine.bus.emit(WarningEvent(message=START))
    mean_encoders = await inject(engine, args.rate, args.seconds, encoders)
    engine.bus.emit(WarningEvent(message=END))
    results = [await report(client) for client in clients]
    await stop(engine, server, runner)
    return {"injected_per_s": args.rate, "mean_encoders": mean_encoders, "clients": results}


async def measure_snapshot(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    state = work / "state-large"
    store = StateStore(paths.state_db(state))
    queue = QueueStore(store)
    options = JobOptions(preset=8, output_dir=Path("/library/av1"))
    started = time.perf_counter()
    for number in range(args.entries):
        name = f"/library/show-{number // 100:03d}/episode-{number:05d}.mkv"
        queue.add(QueueEntry(id=0, input=name, output=name + ".av1", position=0, options=options))
    queue.set_meta("paused", "1")
    store.close()
    fill_s = time.perf_counter() - started
    engine = Engine(
        find_toolchain().ffmpeg, config=Config(), state_dir=state, config_path=work / "c.toml"
    )
    socket_path = work / "large.sock"
    server, runner = await serving(engine, socket_path)
    [client] = await start_clients("--snapshot-client", socket_path, 1)
    result = await report(client)
    await stop(engine, server, runner)
    return {"fill_s": fill_s, **result}


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="drapto-bench-", dir="/tmp") as folder:
        work = Path(folder)
        events = await measure_events(args, work)
        snapshot = await measure_snapshot(args, work)
    for number, client in enumerate(events["clients"], 1):
        print(
            f"client {number}: {client['per_s']:.0f} events/s received ({client['events']} in"
            f" {args.seconds:g} s, {events['injected_per_s']:g}/s injected,"
            f" {events['mean_encoders']:.1f} encoders running on average);"
            f" latency median {client['median_ms']:.1f} ms, p95 {client['p95_ms']:.1f} ms,"
            f" max {client['max_ms']:.1f} ms"
        )
    print(
        f"snapshot of {snapshot['entries']} entries: get_snapshot {snapshot['get_snapshot_s']:.3f} s,"
        f" subscribe {snapshot['subscribe_s']:.3f} s"
        f" (queue filled through QueueStore in {snapshot['fill_s']:.1f} s)"
    )
    print(json.dumps({"events": events, "snapshot": snapshot}))


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measurement window")
    parser.add_argument("--rate", type=float, default=1000.0, help="synthetic events per second")
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--preset", type=int, default=10, help="SVT-AV1 preset of the real job")
    parser.add_argument("--source-seconds", type=int, default=60)
    parser.add_argument("--events-client", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--snapshot-client", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse()
    if arguments.events_client:
        asyncio.run(events_client(arguments.events_client))
    elif arguments.snapshot_client:
        asyncio.run(snapshot_client(arguments.snapshot_client))
    else:
        asyncio.run(main(arguments))
