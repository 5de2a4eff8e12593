"""How many encoders a machine runs at once, with how many threads each, and the
slots that hold them to that number."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psutil

from drapto_engine.core.models import ResolutionClass
from drapto_engine.infrastructure.disk import GIB

# Resident memory of one SVT-AV1 encoder at preset ~6, a first guess per class.
ENCODER_MEMORY = {
    ResolutionClass.SD: GIB // 2,
    ResolutionClass.HD: 3 * GIB // 2,
    ResolutionClass.UHD: 4 * GIB,
}
MEMORY_RESERVE = 0.15


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
