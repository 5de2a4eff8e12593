"""The schedule and the household on real encoders: SIGSTOP outside a window and while
other programs keep the CPU busy, SIGCONT after, and the output whole."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from pathlib import Path

import av
import psutil
import pytest

from drapto_engine.core.schedule import Schedule
from drapto_engine.infrastructure.disk import GIB
from drapto_engine.infrastructure.ffmpeg.runner import die_with_parent
from drapto_engine.infrastructure.resources import Memory, ResourceManager
from drapto_engine.infrastructure.workers import cpu_count
from drapto_engine.services.pacing import Pacer, others_share

# timed (windows of 3 s, a 1 s yield hold): one at a time with the other timed tests
pytestmark = [pytest.mark.timeout(120), pytest.mark.xdist_group("timing")]

SATURATED = 0.8
"""Other programs' share of the CPU above which the yield test cannot see a resume."""
SPEED = 20
"""Seconds of the test's wall clock per real second: a minute-wide window lasts 3 s."""


def plenty() -> Memory:
    return Memory(total=64 * GIB, available=48 * GIB)


def fast_clock(start: datetime) -> Callable[[], datetime]:
    began = time.monotonic()
    return lambda: start + timedelta(seconds=SPEED * (time.monotonic() - began))


@contextlib.asynccontextmanager
async def encoder(
    ffmpeg: str, out: Path, seconds: int
) -> AsyncIterator[asyncio.subprocess.Process]:
    """A real SVT-AV1 encode of a real-time source (`seconds` long) to `out`."""
    proc = await asyncio.create_subprocess_exec(
        ffmpeg, "-hide_banner", "-loglevel", "error", "-nostats", "-y",
        "-re", "-f", "lavfi", "-i", f"testsrc2=s=64x64:r=10:d={seconds}",
        "-c:v", "libsvtav1", "-preset", "12", str(out),
        stdin=asyncio.subprocess.DEVNULL, start_new_session=True, preexec_fn=die_with_parent,
    )  # fmt: skip
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()


def status(proc: asyncio.subprocess.Process) -> str:
    return str(psutil.Process(proc.pid).status())


async def until(check: Callable[[], bool], seconds: float, what: str) -> float:
    began = time.monotonic()
    async with asyncio.timeout(seconds):
        while not check():
            await asyncio.sleep(0.05)
    assert check(), what
    return time.monotonic() - began


def frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


async def test_an_encoder_stops_when_its_window_closes_and_goes_on_when_the_next_opens(
    ffmpeg: str, tmp_path: Path
) -> None:
    # Windows 01:00-01:01 and 01:02-02:00, the clock 20 times fast from 01:00:00: open
    # for 3 s, closed for 3 s, then open again.
    schedule = Schedule.parse(["01:00-01:01", "01:02-02:00"])
    now = fast_clock(datetime(2026, 12, 7, 1, 0, 0))
    manager = ResourceManager(1, memory=plenty, interval_s=0.2)
    pacer = Pacer(manager, schedule, now=now, tick_s=0.1)
    out = tmp_path / "out.mkv"
    async with manager.sampling():
        pacer.start()
        try:
            async with manager.admit(0, segment=0) as ticket, encoder(ffmpeg, out, 8) as proc:
                ticket.track(proc)
                assert pacer.paused is None
                await until(lambda: status(proc) == psutil.STATUS_STOPPED, 6, "stopped")
                assert pacer.paused is not None
                assert pacer.paused.startswith("outside the encode windows until 01:02")
                assert now() >= datetime(2026, 12, 7, 1, 1)
                await until(lambda: status(proc) != psutil.STATUS_STOPPED, 6, "continued")
                assert now() >= datetime(2026, 12, 7, 1, 2) and pacer.paused is None
                assert await asyncio.wait_for(proc.wait(), 30) == 0
        finally:
            await pacer.stop()
    assert frames(out) == 80  # all 8 s at 10 fps: nothing lost to the stop


async def test_nothing_is_admitted_outside_a_window_until_the_override(tmp_path: Path) -> None:
    schedule = Schedule.parse(["01:00-02:00"])
    manager = ResourceManager(2, memory=plenty)
    pacer = Pacer(manager, schedule, now=lambda: datetime(2026, 12, 7, 3, 0))
    view = await pacer.update(waiting=4)
    assert view.paused == "outside the encode windows until Tue 01:00"
    assert view.waiting == 4 and not view.open
    admitted = asyncio.Event()
    release = asyncio.Event()

    async def encode() -> None:
        async with manager.admit(0):
            admitted.set()
            await release.wait()

    task = asyncio.create_task(encode())
    await asyncio.sleep(0.3)
    assert not admitted.is_set()  # held
    view = await pacer.set_override(True)
    assert view.paused is None and view.override and view.waiting == 0
    await asyncio.wait_for(admitted.wait(), 2)
    assert manager.running == 1
    release.set()
    await task


def hogs(count: int) -> list[subprocess.Popen[bytes]]:
    """Busy Python children, one a core: other programs keeping the CPU busy."""
    return [
        subprocess.Popen([sys.executable, "-c", "while True: pass"], preexec_fn=die_with_parent)
        for _ in range(count)
    ]


async def test_encoders_yield_to_other_programs_cpu_and_go_on_after(
    ffmpeg: str, tmp_path: Path
) -> None:
    manager = ResourceManager(1, memory=plenty, interval_s=0.25)
    busy: list[subprocess.Popen[bytes]] = []
    async with (
        manager.sampling(),
        manager.admit(0, segment=0) as ticket,
        encoder(ffmpeg, tmp_path / "out.mkv", 60) as proc,
    ):
        ticket.track(proc)
        # This machine's other load (a shared CI host) is other programs too: the share
        # to yield at lies halfway between the busiest quarter second of it and all.
        baseline = 0.0
        for _ in range(12):
            await asyncio.sleep(0.25)
            if manager.latest is not None:
                baseline = max(baseline, others_share(manager.latest, cpu_count()))
        saturated = baseline > SATURATED
        share = 0.5 if saturated else (baseline + 1) / 2
        pacer = Pacer(manager, Schedule(), yield_cpu=share, yield_hold_s=1.0, tick_s=0.1)
        pacer.start()
        try:
            busy = hogs(cpu_count() + 1)
            await until(lambda: status(proc) == psutil.STATUS_STOPPED, 15, "yielded")
            assert pacer.view().yielding and pacer.paused is not None
            assert pacer.paused.startswith("yielding the CPU: other programs use")
            for hog in busy:
                hog.kill()
                hog.wait()
            if saturated:  # the household keeps it busy without the hogs: drapto waits
                await asyncio.sleep(2)
                assert status(proc) == psutil.STATUS_STOPPED and pacer.view().yielding
                pytest.skip(
                    f"other programs keep {100 * baseline:.0f}% of this host's CPU busy: "
                    "the encoder yielded, but going on after cannot be seen here"
                )
            await until(lambda: status(proc) != psutil.STATUS_STOPPED, 30, "went on")
            assert not pacer.view().yielding and pacer.paused is None
        finally:
            for hog in busy:
                hog.kill()
                hog.wait()
            await pacer.stop()
