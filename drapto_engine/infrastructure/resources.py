"""CPU, memory and disk: how many encoders may run, with how many threads, and watching them."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import shutil
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from drapto_engine.core.errors import DraptoError
from drapto_engine.core.metrics import EncoderSample, ResourceSnapshot
from drapto_engine.core.models import ResolutionClass
from drapto_engine.infrastructure.background import BackgroundTask

log = logging.getLogger(__name__)

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


# --- ResourceManager: admission by slots and memory, sampling, memory-pressure relief ---

SAMPLE_INTERVAL_S = 1.0
HISTORY_SAMPLES = 300  # five minutes at 1 Hz: enough for a sparkline
# A measured peak is a sample, not a maximum: 1 Hz sampling misses short spikes.
PEAK_MARGIN = 1.2
PRESSURE_SAMPLES = 2  # consecutive samples below the reserve before suspending
# Finding children reads the stat file of every process in /proc (milliseconds, more on
# a busy machine); an encoder's tree rarely changes, so each is scanned when first
# measured, then at most once in this many seconds, however often it is measured (the
# first seconds of every encoder are sampled ten times a second), and before every
# suspension. Encoders start at different times, so they take turns.
CHILD_SCAN_S = 10.0


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


def _descendants(pid: int) -> list[int] | None:
    """Every descendant of a process from Linux's /proc/PID/task/TID/children lists (a
    few small reads per process of the tree), or None where the kernel has no such
    list: then psutil's scan, which reads the stat file of every process, is used."""
    if not os.path.exists(f"/proc/{pid}/task/{pid}/children"):
        return None
    found: list[int] = []
    queue = [pid]
    while queue:
        parent = queue.pop()
        try:
            threads = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue  # it has exited
        for thread in threads:
            try:
                with open(f"/proc/{parent}/task/{thread}/children", encoding="ascii") as file:
                    kids = [int(text) for text in file.read().split()]
            except (OSError, ValueError):
                continue
            found += kids
            queue += kids
    return found


class _ProcessTree:
    """An encoder process and its children, as cached psutil objects.

    Cached because `cpu_percent(None)` measures since the previous call on the same object.
    """

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.members: dict[int, Any] = {pid: self.root}
        self.root.cpu_percent(None)  # the baseline, so the first sample is a real figure
        self.scanned_at: float | None = None

    def scan_children(self) -> None:
        with contextlib.suppress(psutil.Error):
            pids = _descendants(self.root.pid)
            children = (
                [psutil.Process(pid) for pid in pids if pid not in self.members]
                if pids is not None
                else self.root.children(recursive=True)
            )
            for child in children:
                if child.pid not in self.members:
                    child.cpu_percent(None)
                    self.members[child.pid] = child
        self.scanned_at = time.monotonic()

    def scan_due(self) -> bool:
        return self.scanned_at is None or time.monotonic() - self.scanned_at >= CHILD_SCAN_S

    def measure(self) -> tuple[float, int] | None:
        """(CPU percent of one core, resident bytes) of the tree; None once the root is gone."""
        cpu, rss = 0.0, 0
        for pid, member in list(self.members.items()):
            try:
                with member.oneshot():
                    if member.status() == psutil.STATUS_ZOMBIE:
                        raise psutil.NoSuchProcess(pid)
                    cpu += float(member.cpu_percent(None))
                    rss += int(member.memory_info().rss)
            except psutil.Error:
                if member is self.root:
                    return None
                del self.members[pid]
        return cpu, rss

    def high_water(self) -> int:
        """The summed peak resident size (Linux's VmHWM) of the live members: exact
        where samples are not, for an encoder that lives less than a sample period."""
        total = 0
        for pid in list(self.members):
            try:
                with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
                    line = next((t for t in status if t.startswith("VmHWM:")), "")
            except OSError:
                continue
            fields = line.split()
            if len(fields) >= 2 and fields[1].isdigit():
                total += int(fields[1]) * 1024
        return total

    def signal(self, stop: bool) -> None:
        """SIGSTOP or SIGCONT every member; one that has exited meanwhile is skipped."""
        for member in list(self.members.values()):
            with contextlib.suppress(psutil.Error):
                if stop:
                    member.suspend()
                else:
                    member.resume()


_START_ORDER = itertools.count(1)
_WAIT_ORDER = itertools.count(1)


class Admission:
    """One admitted encoder: its memory estimate, its process once started, what it used."""

    def __init__(
        self, estimate: int, segment: int | None, job: str | None = None, priority: int = 0
    ) -> None:
        self.estimate = estimate
        self.segment = segment
        self.job = job
        self.priority = priority
        self.order = next(_WAIT_ORDER)
        self.cpu_samples = 0
        self.cpu_total = 0.0
        self.pid: int | None = None
        self.cpu_percent = 0.0
        self.rss_bytes = 0
        self.peak_rss_bytes = 0
        """The largest resident size sampled; 0 when it ended before the first sample."""
        self.suspended = False
        self.finished = False
        self.started = 0  # order of process start, for "most recently started"
        self._tree: _ProcessTree | None = None

    def track(self, proc: asyncio.subprocess.Process) -> None:
        """Register the encoder's process; pass as run_ffmpeg's `on_start`."""
        try:
            tree = _ProcessTree(proc.pid)
        except psutil.Error:  # it exited already: nothing to sample
            return
        self._tree, self.pid, self.finished = tree, proc.pid, False
        self.rss_bytes, self.cpu_percent = 0, 0.0
        self.started = next(_START_ORDER)

    @property
    def tracked(self) -> bool:
        return self._tree is not None and not self.finished

    def outstanding(self) -> int:
        """Memory this encoder is expected to take beyond what it holds already."""
        return 0 if self.finished else max(0, self.estimate - self.rss_bytes)

    def measure(self, sample_number: int, *, final: bool = False) -> None:
        """Sample the encoder's tree; `final` (it is about to exit: its last progress
        report) also reads its peak resident size, which a short encoder's samples miss.
        `sample_number` is the caller's count (children are rescanned by time)."""
        if self._tree is None or self.finished:
            return
        if self._tree.scan_due():
            self._tree.scan_children()
        figures = self._tree.measure()
        if figures is None:  # exited, maybe killed while stopped
            self.finished, self.suspended = True, False
            self.cpu_percent, self.rss_bytes = 0.0, 0
            return
        self.cpu_percent, self.rss_bytes = figures
        self.peak_rss_bytes = max(self.peak_rss_bytes, self.rss_bytes)
        if final:
            self.peak_rss_bytes = max(self.peak_rss_bytes, self._tree.high_water())
        if not self.suspended:
            self.cpu_samples += 1
            self.cpu_total += self.cpu_percent

    @property
    def mean_cpu_percent(self) -> float:
        """Mean CPU use over the samples taken while it ran (not suspended)."""
        return self.cpu_total / self.cpu_samples if self.cpu_samples else 0.0

    def set_suspended(self, suspended: bool) -> None:
        if self._tree is None or suspended == self.suspended:
            return
        if suspended:
            self._tree.scan_children()  # a child started since the last scan must stop too
        self._tree.signal(stop=suspended)
        self.suspended = suspended

    def sample(self) -> EncoderSample:
        assert self.pid is not None
        return EncoderSample(
            pid=self.pid,
            segment=self.segment,
            job=self.job,
            cpu_percent=self.cpu_percent,
            rss_bytes=self.rss_bytes,
            suspended=self.suspended,
        )


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
        self.hold: str | None = None
        """Why every encoder is paused and none admitted (outside the encode windows,
        yielding the CPU to other programs); None when not held."""

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

    async def set_hold(self, reason: str | None) -> None:
        """Pause every encoder (SIGSTOP, children too) and admit none while `reason` is
        set; None resumes them all (memory pressure stops the newest again, if need be,
        at its next samples)."""
        async with self._cond:
            if (reason is None) != (self.hold is None):
                self._notice(f"paused encoders: {reason}" if reason else "resumed encoders")
            self.hold = reason
            self._apply_hold()
            self._cond.notify_all()

    def _apply_hold(self) -> None:
        for ticket in self._admitted:
            if ticket.tracked:
                ticket.set_suspended(self.hold is not None)

    def _admissible(self, estimate: int) -> bool:
        if self.hold is not None:
            return False
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
        if self.hold is None:
            self._relieve(memory)
        else:
            self._apply_hold()  # an encoder that started since the hold began
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
