"""What watching encoders costs the engine: the sampler's CPU and the engine's memory.

Starts real ffmpeg test encodes (320x240 testsrc2 to null at real-time speed, so they
barely load the machine), admits and tracks each in a ResourceManager, then measures
this process's CPU time over --seconds twice: idle (the baseline) and sampling every
--interval. The difference, as percent of one core, is the sampler's cost. Also prints
the cost of one sample timed back to back, and this benchmark process's RSS while
sampling with a full history: a ResourceManager alone, not the engine (whose own RSS
while encoding bench/engine_figures.py measures). Usage:

    .venv/bin/python bench/engine_overhead.py [--seconds 20] [--encoders 3] [--interval 1]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time
from contextlib import AsyncExitStack

import psutil

from drapto_engine.infrastructure.ffmpeg.runner import die_with_parent
from drapto_engine.infrastructure.ffmpeg.toolchain import find_toolchain
from drapto_engine.infrastructure.resources import HISTORY_SAMPLES, ResourceManager

MIB = 1 << 20
BACK_TO_BACK = 300


def encoder_argv(ffmpeg: str, seconds: float) -> list[str]:
    return [
        ffmpeg, "-hide_banner", "-loglevel", "error", "-nostats",
        "-re", "-f", "lavfi", "-i", "testsrc2=s=320x240:r=25", "-t", f"{seconds:g}",
        "-f", "null", "-",
    ]  # fmt: skip


async def cpu_over(seconds: float) -> float:
    """This process's CPU seconds while the event loop idles (or samples) for `seconds`."""
    before = time.process_time()
    await asyncio.sleep(seconds)
    return time.process_time() - before


async def per_sample_ms(manager: ResourceManager) -> list[float]:
    costs = []
    for _ in range(BACK_TO_BACK):
        before = time.thread_time()
        await manager.sample()
        costs.append(1e3 * (time.thread_time() - before))
    return costs


async def main(seconds: float, encoders: int, interval: float) -> None:
    ffmpeg = find_toolchain().ffmpeg
    lifetime = 2 * seconds + 30
    procs = [
        await asyncio.create_subprocess_exec(
            *encoder_argv(ffmpeg, lifetime),
            stdin=asyncio.subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )
        for _ in range(encoders)
    ]
    manager = ResourceManager(encoders, interval_s=interval)
    print(
        f"bench process RSS (not the engine's) before sampling: {psutil.Process().memory_info().rss / MIB:.1f} MiB"
    )
    try:
        async with AsyncExitStack() as stack:
            for index, proc in enumerate(procs):
                ticket = await stack.enter_async_context(manager.admit(0, segment=index))
                ticket.track(proc)
            idle = await cpu_over(seconds)
            async with manager.sampling():
                sampling = await cpu_over(seconds)
            samples = len(manager.history)
            costs = await per_sample_ms(manager)
            rss = psutil.Process().memory_info().rss
            report(seconds, encoders, interval, idle, sampling, samples, costs, rss, manager)
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


def report(
    seconds: float,
    encoders: int,
    interval: float,
    idle: float,
    sampling: float,
    samples: int,
    costs: list[float],
    rss: int,
    manager: ResourceManager,
) -> None:
    latest = manager.latest
    assert latest is not None
    tracked = len(latest.encoders)
    print(f"tracked encoders: {tracked} of {encoders} (real ffmpeg, children included)")
    print(f"window: {seconds:g} s each; samples taken while sampling: {samples}")
    print(f"engine CPU idle:     {100 * idle / seconds:.3f} % of one core")
    print(f"engine CPU sampling: {100 * sampling / seconds:.3f} % of one core")
    print(f"sampler cost:        {100 * (sampling - idle) / seconds:.3f} % of one core")
    mean, p95 = statistics.fmean(costs), sorted(costs)[int(0.95 * len(costs))]
    print(
        f"one sample, {BACK_TO_BACK} back to back: mean {mean:.3f} ms, p95 {p95:.3f} ms, "
        f"max {max(costs):.3f} ms -> {mean / (10 * interval):.3f} % of one core at "
        f"{1 / interval:g} Hz"
    )
    print(
        f"bench process RSS (not the engine's) while sampling ({len(manager.history)}/{HISTORY_SAMPLES} history): "
        f"{rss / MIB:.1f} MiB"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--encoders", type=int, default=3)
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args()
    asyncio.run(main(args.seconds, args.encoders, args.interval))
