"""ResourceManager on real ffmpeg processes: sampling, suspension under pressure, shutdown.

Memory readings are simulated (a test cannot safely exhaust this machine's memory); the
processes sampled, stopped and continued are real.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import psutil
import pytest

from drapto_engine.infrastructure import processes as process_tree
from drapto_engine.infrastructure.disk import GIB
from drapto_engine.infrastructure.ffmpeg.runner import die_with_parent
from drapto_engine.infrastructure.processes import Admission
from drapto_engine.infrastructure.resources import Memory, ResourceManager

pytestmark = pytest.mark.timeout(60)

TOTAL = 16 * GIB
RESERVE = int(0.15 * TOTAL)
WAIT_S = 5.0


class FakeMemory:
    def __init__(self, available: int) -> None:
        self.available = available

    def __call__(self) -> Memory:
        return Memory(total=TOTAL, available=self.available)


def source_argv(ffmpeg: str) -> list[str]:
    """A real-time 320x240 encode to nowhere, reporting its frame count every 0.1 s.

    Bounded to 30 s so that nothing outlives a test run killed before its cleanup.
    """
    return [
        ffmpeg, "-hide_banner", "-loglevel", "error", "-nostats",
        "-re", "-f", "lavfi", "-i", "testsrc2=s=320x240:r=25", "-t", "30",
        "-f", "null", "-progress", "pipe:1", "-stats_period", "0.1", "-",
    ]  # fmt: skip


@dataclass
class Encoder:
    proc: asyncio.subprocess.Process
    frame: int = 0
    reports: int = 0
    reader: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def status(self) -> str:
        return str(psutil.Process(self.proc.pid).status())

    async def read_progress(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            key, _, value = line.decode().strip().partition("=")
            if key == "frame":
                self.frame = int(value)
                self.reports += 1


class Processes:
    """Spawns real processes, each in its own session so that the whole tree can be killed."""

    def __init__(self) -> None:
        self.started: list[Encoder] = []

    async def spawn(self, *argv: str) -> Encoder:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        encoder = Encoder(proc)
        encoder.reader = asyncio.create_task(encoder.read_progress())
        self.started.append(encoder)
        return encoder

    async def kill_all(self) -> None:
        for encoder in self.started:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(encoder.proc.pid, signal.SIGKILL)  # SIGKILL ends stopped ones too
            await encoder.proc.wait()
            if encoder.reader is not None:
                await encoder.reader


@pytest.fixture
async def processes() -> AsyncIterator[Processes]:
    made = Processes()
    try:
        yield made
    finally:
        await made.kill_all()


async def until(condition: Callable[[], bool], what: str) -> None:
    """Poll briefly for something that happens asynchronously in another process."""
    async with asyncio.timeout(WAIT_S):
        while not condition():
            await asyncio.sleep(0.02)
    assert condition(), what


async def others_report(*encoders: Encoder, times: int) -> None:
    """Wait until each of `encoders` has reported progress `times` more times."""
    start = [e.reports for e in encoders]
    await until(
        lambda: all(e.reports >= n + times for e, n in zip(encoders, start, strict=True)),
        f"{times} more progress reports",
    )


def samplers() -> list[asyncio.Task[object]]:
    """The resource sampler tasks still running on this loop."""
    return [t for t in asyncio.all_tasks() if t.get_name() == "resource-sampler" and not t.done()]


@contextlib.asynccontextmanager
async def admitted(
    manager: ResourceManager, encoder: Encoder, segment: int
) -> AsyncIterator[Admission]:
    async with manager.admit(0, segment=segment) as ticket:
        ticket.track(encoder.proc)
        yield ticket


async def test_sampling_reports_cpu_and_rss_of_an_encoder_and_its_children(
    ffmpeg: str, processes: Processes
) -> None:
    # A shell that stays the parent of two encoders: the tracked process itself uses
    # nearly nothing, so CPU and most RSS can only come from its children.
    argv = shlex.join(source_argv(ffmpeg))
    wrapper = await processes.spawn(
        "/bin/sh", "-c", f"{argv} >/dev/null & {argv} >/dev/null & wait"
    )
    shell = psutil.Process(wrapper.proc.pid)
    await until(lambda: len(shell.children()) == 2, "the shell started both encoders")
    children_rss = sum(c.memory_info().rss for c in shell.children())

    manager = ResourceManager(2, memory=FakeMemory(TOTAL), interval_s=0.2)
    async with manager.sampling(), manager.admit(0, segment=7) as ticket:
        ticket.track(wrapper.proc)

        def measured() -> bool:
            last = manager.latest
            return last is not None and bool(last.encoders) and last.encoders[0].cpu_percent > 0

        await until(measured, "a sample with the encoder's CPU use")
    assert manager.latest is not None
    sample = manager.latest.encoders[0]
    assert sample.pid == wrapper.proc.pid
    assert sample.segment == 7
    assert not sample.suspended
    assert sample.rss_bytes > shell.memory_info().rss + children_rss // 2
    assert ticket.peak_rss_bytes >= sample.rss_bytes
    assert manager.latest.running == 1


async def test_pressure_suspends_the_newest_encoder_and_resumes_it_when_memory_returns(
    ffmpeg: str, processes: Processes
) -> None:
    notices: list[str] = []
    memory = FakeMemory(available=TOTAL // 2)
    manager = ResourceManager(3, memory=memory, on_notice=notices.append)
    a, b, c = [await processes.spawn(*source_argv(ffmpeg)) for _ in range(3)]
    async with admitted(manager, a, 1), admitted(manager, b, 2), admitted(manager, c, 3):
        await until(lambda: min(e.frame for e in (a, b, c)) > 0, "all three encoding")

        memory.available = RESERVE - 1
        first = await manager.sample()
        assert first.suspended == 0  # one low sample is not yet pressure
        second = await manager.sample()
        assert second.suspended == 1
        assert [e.suspended for e in second.encoders] == [False, False, True]
        await until(lambda: c.status == psutil.STATUS_STOPPED, "the newest encoder stopped")
        assert a.status != psutil.STATUS_STOPPED and b.status != psutil.STATUS_STOPPED
        assert notices[-1].startswith("memory pressure: suspended encoder of segment 3")
        # The running encoders are the clock (each reports every 0.1 s of real-time
        # encoding): once they have reported twice more, whatever the stopped one wrote
        # before its stop has been read; while they report five times more, it is silent.
        await others_report(a, b, times=2)
        stopped_at = c.frame
        await others_report(a, b, times=5)
        assert c.status == psutil.STATUS_STOPPED
        assert c.frame == stopped_at, "a stopped encoder made progress"

        # Still low: two more samples stop the next newest; the last one always runs.
        for _ in range(6):
            await manager.sample()
        await until(lambda: b.status == psutil.STATUS_STOPPED, "the second encoder stopped")
        assert a.status != psutil.STATUS_STOPPED

        memory.available = TOTAL // 2
        resumed = await manager.sample()  # one resumption per sample, oldest first
        assert [e.suspended for e in resumed.encoders] == [False, False, True]
        await until(lambda: b.status != psutil.STATUS_STOPPED, "segment 2 resumed")
        await manager.sample()
        await until(lambda: c.status != psutil.STATUS_STOPPED, "segment 3 resumed")
        assert notices[-2:] == [
            "memory recovered: resumed encoder of segment 2",
            "memory recovered: resumed encoder of segment 3",
        ]
        await until(lambda: c.frame > stopped_at, "the resumed encoder goes on")


async def test_nothing_is_admitted_while_an_encoder_is_suspended(
    ffmpeg: str, processes: Processes
) -> None:
    memory = FakeMemory(available=TOTAL // 2)
    manager = ResourceManager(4, memory=memory)
    a, b = [await processes.spawn(*source_argv(ffmpeg)) for _ in range(2)]
    async with admitted(manager, a, 1), admitted(manager, b, 2) as newest:
        memory.available = RESERVE - 1
        for _ in range(2):
            await manager.sample()
        assert newest.suspended
        memory.available = RESERVE + newest.rss_bytes // 2  # above the reserve, not enough
        await manager.sample()
        assert newest.suspended

        async def another() -> None:
            async with manager.admit(0):
                pass

        waiter = asyncio.create_task(another())
        await until(lambda: manager.waiting == 1 or waiter.done(), "the admission to wait")
        assert not waiter.done(), "admitted beside a suspended encoder"
        await manager.sample()  # waiting admissions re-check after every sample
        for _ in range(10):  # the re-check runs on this loop, without I/O
            await asyncio.sleep(0)
        assert not waiter.done() and manager.waiting == 1, "admitted beside a suspended encoder"
        waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiter
    # Leaving the admission resumes what it left stopped.
    await until(lambda: b.status != psutil.STATUS_STOPPED, "released encoder resumed")


async def test_shutdown_leaves_nothing_suspended(ffmpeg: str, processes: Processes) -> None:
    memory = FakeMemory(available=TOTAL // 2)
    manager = ResourceManager(2, memory=memory, interval_s=0.05)
    a, b = [await processes.spawn(*source_argv(ffmpeg)) for _ in range(2)]
    async with admitted(manager, a, 1), admitted(manager, b, 2):
        memory.available = RESERVE - 1
        manager.start()
        await until(lambda: b.status == psutil.STATUS_STOPPED, "pressure stopped one encoder")
        [sampler] = samplers()
        await manager.shutdown()
        assert sampler.done() and samplers() == [], "sampling went on after shutdown"
        await until(lambda: b.status != psutil.STATUS_STOPPED, "shutdown resumed it")
        assert a.status != psutil.STATUS_STOPPED


async def test_children_are_scanned_once_however_often_an_encoder_is_measured(
    ffmpeg: str, processes: Processes, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Finding children costs reads in /proc: the ten-a-second samples of an encoder's
    # first seconds must not repeat it (once, then at most every CHILD_SCAN_S).
    scans: list[int] = []
    descendants = process_tree._descendants

    def counted(pid: int) -> list[int] | None:
        scans.append(pid)
        return descendants(pid)

    monkeypatch.setattr(process_tree, "_descendants", counted)
    encoder = await processes.spawn(*source_argv(ffmpeg))
    ticket = Admission(0, segment=1)
    ticket.track(encoder.proc)
    for number in range(20):  # what the early sampler does in its 2 s
        ticket.measure(number)
    assert ticket.rss_bytes > 0
    assert scans == [encoder.proc.pid]


async def test_children_found_from_proc_are_psutils_children(processes: Processes) -> None:
    # A shell with a child that has a child of its own: the /proc lists find the same
    # tree as psutil's scan of every process.
    shell = await processes.spawn("/bin/sh", "-c", "sh -c 'sleep 30 & wait' & sleep 30 & wait")
    root = psutil.Process(shell.proc.pid)
    await until(lambda: len(root.children(recursive=True)) == 3, "the shell's tree started")
    expected = sorted(p.pid for p in root.children(recursive=True))
    assert sorted(process_tree._descendants(shell.proc.pid) or []) == expected
