"""The resource manager: admits encoders under a worker bound and the machine's memory,
samples them once a second, and relieves memory pressure by suspending the newest.

The rooms it uses: `workers.py` (how many encoders, how many threads, the slots),
`processes.py` (an admitted encoder's process tree: measuring, suspending) and
`disk.py` (the free-disk check made before a job starts)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import psutil

from drapto_engine.core.metrics import ResourceSnapshot
from drapto_engine.core.models import ResolutionClass
from drapto_engine.infrastructure.background import BackgroundTask
from drapto_engine.infrastructure.disk import GIB
from drapto_engine.infrastructure.processes import Admission
from drapto_engine.infrastructure.workers import ENCODER_MEMORY, MEMORY_RESERVE, WorkerSlots

log = logging.getLogger(__name__)

SAMPLE_INTERVAL_S = 1.0
HISTORY_SAMPLES = 300  # five minutes at 1 Hz: enough for a sparkline
# A measured peak is a sample, not a maximum: 1 Hz sampling misses short spikes.
PEAK_MARGIN = 1.2
PRESSURE_SAMPLES = 2  # consecutive samples below the reserve before suspending


@dataclass(frozen=True)
class Memory:
    """System memory in bytes, as the admission and pressure rules see it."""

    total: int
    available: int


MemoryReader = Callable[[], Memory]
OnNotice = Callable[[str], None]


def system_memory() -> Memory:
    """The default reader; tests pass their own to simulate pressure."""
    reading = psutil.virtual_memory()
    return Memory(total=int(reading.total), available=int(reading.available))


class ResourceManager(WorkerSlots):
    """Admits encoders while a worker slot and enough memory are free, and watches them.

    Admission: at most `limit` at once, and only while available memory less the
    reserve covers the new encoder's estimate plus what admitted encoders are still
    expected to grow into (estimate less measured RSS): a memory reading lags the
    encoders it admitted. When nothing runs, one encoder is admitted whatever memory
    says, or a job whose segments need more than the machine has would never finish.

    Pressure: when available memory stays below the reserve for PRESSURE_SAMPLES samples
    and more than one encoder runs, the most recently started one is suspended (SIGSTOP,
    children too); suspended ones are resumed oldest first once available memory exceeds
    the reserve plus their RSS. Nothing is killed for memory, and nothing is admitted
    while an encoder is suspended.
    """

    def __init__(
        self,
        limit: int,
        *,
        reserve: float = MEMORY_RESERVE,
        memory: MemoryReader = system_memory,
        interval_s: float = SAMPLE_INTERVAL_S,
        history: int = HISTORY_SAMPLES,
        on_notice: OnNotice | None = None,
        on_sample: Callable[[ResourceSnapshot], None] | None = None,
    ) -> None:
        super().__init__(max(1, limit))
        self._on_sample = on_sample
        self.reserve = reserve
        """Fraction of total memory kept free."""
        self.interval_s = interval_s
        self.latest: ResourceSnapshot | None = None
        self._memory = memory
        self._on_notice = on_notice
        self._history: deque[ResourceSnapshot] = deque(maxlen=history)
        self._admitted: list[Admission] = []
        self._waiting: list[Admission] = []
        self._peaks: dict[ResolutionClass, int] = {}
        self._low_samples = 0
        self._samples = 0
        self._cpu_times = psutil.cpu_times()
        self._sampler = BackgroundTask(self._sample_forever, "resource-sampler")

    # -- estimates --

    def estimate(self, resolution: ResolutionClass) -> int:
        """Bytes one encoder is expected to need: measured peaks once there are any."""
        peak = self._peaks.get(resolution)
        return int(PEAK_MARGIN * peak) if peak else ENCODER_MEMORY[resolution]

    def record_peak(self, resolution: ResolutionClass, rss_bytes: int) -> None:
        """Remember a finished encoder's peak RSS; 0 (never sampled) is ignored."""
        if rss_bytes > 0:
            self._peaks[resolution] = max(rss_bytes, self._peaks.get(resolution, 0))

    def reserve_bytes(self, total: int) -> int:
        return int(self.reserve * total)

    # -- admission --

    @asynccontextmanager
    async def admit(
        self,
        estimate: int,
        *,
        segment: int | None = None,
        job: str | None = None,
        priority: int = 0,
    ) -> AsyncIterator[Admission]:
        """Wait for a slot and memory for `estimate` bytes; the slot is held inside.

        Waiters are admitted in order of (priority, arrival): a queue's earlier job
        (lower priority number) gets freed slots before a later job running ahead.
        """
        ticket = Admission(max(0, estimate), segment, job, priority)
        async with self._cond:
            self._waiting.append(ticket)
            try:
                await self._cond.wait_for(
                    lambda: self._first_waiting() is ticket and self._admissible(ticket.estimate)
                )
            finally:
                self._waiting.remove(ticket)
                self._cond.notify_all()
            self.running += 1
            self.peak = max(self.peak, self.running)
            self._admitted.append(ticket)
        log.debug("admitted segment %s (estimate %d bytes)", segment, ticket.estimate)
        try:
            yield ticket
        finally:
            ticket.set_suspended(False)  # nothing stays stopped once nobody watches it
            async with self._cond:
                self._admitted.remove(ticket)
                self.running -= 1
                self._cond.notify_all()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """WorkerSlots' slot: a worker slot, with no memory estimate."""
        async with self.admit(0):
            yield

    async def set_limit(self, limit: int) -> None:
        """Change the worker limit now; running encoders above a lowered limit finish."""
        async with self._cond:
            self.limit = max(1, limit)
            self._cond.notify_all()

    @property
    def waiting(self) -> int:
        """Encoders waiting to be admitted."""
        return len(self._waiting)

    def _first_waiting(self) -> Admission:
        return min(self._waiting, key=lambda t: (t.priority, t.order))

    def _admissible(self, estimate: int) -> bool:
        if self.running >= self.limit:
            return False
        if not self._admitted:
            return True  # see the class docstring: a job must always progress
        if any(t.suspended for t in self._admitted):
            return False
        memory = self._memory()
        outstanding = sum(t.outstanding() for t in self._admitted)
        # With estimate >= 0 this also refuses whenever available is below the reserve.
        free = memory.available - self.reserve_bytes(memory.total) - outstanding
        return free >= estimate

    # -- sampling --

    @property
    def history(self) -> tuple[ResourceSnapshot, ...]:
        """The latest samples, oldest first (at most `history` of them)."""
        return tuple(self._history)

    def start(self) -> None:
        self._sampler.start()

    async def stop(self) -> None:
        await self._sampler.stop()

    @asynccontextmanager
    async def sampling(self) -> AsyncIterator[ResourceManager]:
        """Sample every `interval_s` inside the block; everything suspended is resumed after."""
        self.start()
        try:
            yield self
        finally:
            await self.shutdown()

    async def shutdown(self) -> None:
        """Resume every suspended encoder (so that it can be stopped) and stop sampling."""
        for ticket in self._admitted:
            ticket.set_suspended(False)
        await self.stop()

    async def sample(self) -> ResourceSnapshot:
        """Take one sample now, act on memory pressure, and let waiting admissions re-check."""
        snapshot = self._sample_now()
        async with self._cond:
            self._cond.notify_all()
        return snapshot

    async def _sample_forever(self) -> None:
        while True:
            try:
                await self.sample()
            except Exception:  # a failed sample must not stop a job's encoders
                log.exception("resource sampling failed")
            await asyncio.sleep(self.interval_s)

    def _sample_now(self) -> ResourceSnapshot:
        memory = self._memory()
        cpu = self._system_cpu()
        self._samples += 1
        for ticket in self._admitted:
            ticket.measure(self._samples)
        self._relieve(memory)
        tracked = [t for t in self._admitted if t.tracked]
        snapshot = ResourceSnapshot(
            time=time.time(),
            cpu_percent=cpu,
            memory_total=memory.total,
            memory_available=memory.available,
            reserve_bytes=self.reserve_bytes(memory.total),
            workers=self.limit,
            running=self.running,
            suspended=sum(t.suspended for t in self._admitted),
            encoders=tuple(t.sample() for t in tracked),
        )
        self.latest = snapshot
        self._history.append(snapshot)
        if self._on_sample is not None:
            self._on_sample(snapshot)
        return snapshot

    def _system_cpu(self) -> float:
        """Busy percent of all cores since the last call, from one read of /proc/stat.

        Computed here rather than by psutil.cpu_percent(), whose baseline is shared by
        every caller in the process.
        """
        now, before = psutil.cpu_times(), self._cpu_times
        self._cpu_times = now
        idle = (now.idle + getattr(now, "iowait", 0.0)) - (
            before.idle + getattr(before, "iowait", 0.0)
        )
        total = _busy_total(now) - _busy_total(before)
        return 0.0 if total <= 0 else max(0.0, min(100.0, 100.0 * (1 - idle / total)))

    # -- memory pressure --

    def _relieve(self, memory: Memory) -> None:
        reserve = self.reserve_bytes(memory.total)
        if memory.available >= reserve:
            self._low_samples = 0
            self._resume_oldest(memory.available, reserve)
            return
        self._low_samples += 1
        # SIGSTOP frees nothing, it stops growth: one suspension per PRESSURE_SAMPLES
        # samples lets the others' finishing show before stopping another.
        if self._low_samples >= PRESSURE_SAMPLES and self._suspend_newest(memory, reserve):
            self._low_samples = 0

    def _suspend_newest(self, memory: Memory, reserve: int) -> bool:
        active = [t for t in self._admitted if t.tracked and not t.suspended]
        if len(active) < 2:
            return False  # the last running encoder is what frees memory: it goes on
        newest = max(active, key=lambda t: t.started)
        newest.set_suspended(True)
        self._notice(
            f"memory pressure: suspended encoder of {_name(newest)} "
            f"({_gib(memory.available)} available, {_gib(reserve)} reserved, "
            f"it holds {_gib(newest.rss_bytes)})"
        )
        return True

    def _resume_oldest(self, available: int, reserve: int) -> None:
        waiting = [t for t in self._admitted if t.suspended]
        if not waiting:
            return
        oldest = min(waiting, key=lambda t: t.started)
        if available > reserve + oldest.rss_bytes:
            oldest.set_suspended(False)
            self._notice(f"memory recovered: resumed encoder of {_name(oldest)}")

    def _notice(self, message: str) -> None:
        log.warning("%s", message)
        if self._on_notice is not None:
            self._on_notice(message)


def _busy_total(times: Any) -> float:
    # On Linux guest time is already counted in user time.
    guest = getattr(times, "guest", 0.0) + getattr(times, "guest_nice", 0.0)
    return float(sum(times)) - guest


def _gib(size: int) -> str:
    return f"{size / GIB:.1f} GiB"


def _name(ticket: Admission) -> str:
    return f"segment {ticket.segment}" if ticket.segment is not None else f"pid {ticket.pid}"
