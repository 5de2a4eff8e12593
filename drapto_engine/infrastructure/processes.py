"""An admitted encoder's processes: finding its children, measuring their CPU and
resident memory, and suspending or resuming them together (psutil, and Linux's /proc
where it is cheaper). `ResourceManager` (resources.py) decides when."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
from typing import Any

import psutil

from drapto_engine.core.metrics import EncoderSample

# Finding children reads the stat file of every process in /proc (milliseconds, more on
# a busy machine); an encoder's tree rarely changes, so each is scanned when first
# measured, then at most once in this many seconds, however often it is measured (the
# first seconds of every encoder are sampled ten times a second), and before every
# suspension. Encoders start at different times, so they take turns.
CHILD_SCAN_S = 10.0


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
