"""CPU, memory and disk: how many encoders may run, and with how many threads each."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import psutil

from drapto_engine.core.errors import DraptoError
from drapto_engine.core.models import ResolutionClass

GIB = 1 << 30
# Resident memory of one SVT-AV1 encoder at preset ~6, a first guess per class.
ENCODER_MEMORY = {
    ResolutionClass.SD: GIB // 2,
    ResolutionClass.HD: 3 * GIB // 2,
    ResolutionClass.UHD: 4 * GIB,
}
MEMORY_RESERVE = 0.15
# Output bitrate guesses (bits/s) for the disk estimate; the source size caps them.
OUTPUT_BITRATE = {ResolutionClass.SD: 3e6, ResolutionClass.HD: 10e6, ResolutionClass.UHD: 30e6}
DISK_MARGIN = 256 << 20


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_workers(resolution: ResolutionClass, cores: int | None = None) -> int:
    """One encoder per core, fewer when memory (less the reserve) cannot hold them."""
    cores = cores or cpu_count()
    memory = psutil.virtual_memory()
    usable = memory.available - MEMORY_RESERVE * memory.total
    by_memory = int(usable // ENCODER_MEMORY[resolution])
    return max(1, min(cores, by_memory))


def threads_per_worker(workers: int, cores: int | None = None) -> int:
    """A fair share of the cores, so that N encoders never oversubscribe the CPU."""
    return max(1, (cores or cpu_count()) // max(1, workers))


class WorkerSlots:
    """At most `limit` encoders at once; remembers the most ever running together."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.running = 0
        self.peak = 0
        self._cond = asyncio.Condition()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        async with self._cond:
            await self._cond.wait_for(lambda: self.running < self.limit)
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            yield
        finally:
            async with self._cond:
                self.running -= 1
                self._cond.notify_all()


def estimated_output_bytes(
    resolution: ResolutionClass, duration_s: float, source_bytes: int
) -> int:
    return int(min(source_bytes, OUTPUT_BITRATE[resolution] * duration_s / 8))


def check_disk(folder: Path, needed: int) -> None:
    """Refuse up front when a folder's filesystem cannot hold `needed` bytes."""
    free = shutil.disk_usage(folder).free
    if free < needed + DISK_MARGIN:
        raise DraptoError(
            f"not enough free disk: {free / GIB:.1f} GiB free, about "
            f"{(needed + DISK_MARGIN) / GIB:.1f} GiB needed for segments and output",
            folder,
            hint="free some space or choose another --work-dir / output",
        )
