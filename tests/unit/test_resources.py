"""ResourceManager admission: slots, memory budget, estimates, live limit changes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from drapto_engine.core.models import ResolutionClass
from drapto_engine.infrastructure.disk import GIB
from drapto_engine.infrastructure.processes import Admission
from drapto_engine.infrastructure.resources import Memory, ResourceManager
from drapto_engine.infrastructure.workers import ENCODER_MEMORY

MIB = 1 << 20
TOTAL = 1000 * MIB
RESERVE = 150 * MIB  # the default 15 %


class FakeMemory:
    """A memory reading a test sets; the processes it stands for are not real."""

    def __init__(self, available: int, total: int = TOTAL) -> None:
        self.available = available
        self.total = total

    def __call__(self) -> Memory:
        return Memory(total=self.total, available=self.available)


class Holder:
    """Holds one admission open until released, to probe who gets in."""

    def __init__(self, manager: ResourceManager, estimate: int) -> None:
        self.ticket: Admission | None = None
        self._release = asyncio.Event()
        self.task = asyncio.create_task(self._hold(manager, estimate))

    async def _hold(self, manager: ResourceManager, estimate: int) -> None:
        async with manager.admit(estimate) as ticket:
            self.ticket = ticket
            await self._release.wait()

    @property
    def inside(self) -> bool:
        return self.ticket is not None and not self.task.done()

    async def release(self) -> None:
        self._release.set()
        await self.task


async def settle() -> None:
    """Let every ready task run: admission needs no real time, only turns of the loop."""
    for _ in range(10):
        await asyncio.sleep(0)


@contextlib.asynccontextmanager
async def holders(manager: ResourceManager, *estimates: int) -> AsyncIterator[list[Holder]]:
    made = [Holder(manager, e) for e in estimates]
    await settle()
    try:
        yield made
    finally:
        for holder in made:
            holder.task.cancel()
        await asyncio.gather(*(h.task for h in made), return_exceptions=True)


def test_estimate_starts_from_the_class_guess_and_follows_measured_peaks() -> None:
    manager = ResourceManager(2, memory=FakeMemory(TOTAL))
    assert manager.estimate(ResolutionClass.HD) == ENCODER_MEMORY[ResolutionClass.HD]
    manager.record_peak(ResolutionClass.HD, 0)  # never sampled: no information
    assert manager.estimate(ResolutionClass.HD) == ENCODER_MEMORY[ResolutionClass.HD]
    manager.record_peak(ResolutionClass.HD, GIB // 4)
    manager.record_peak(ResolutionClass.HD, GIB // 10)  # a smaller peak keeps the max
    assert manager.estimate(ResolutionClass.HD) == int(1.2 * (GIB // 4))
    assert manager.estimate(ResolutionClass.UHD) == ENCODER_MEMORY[ResolutionClass.UHD]


def test_reserve_is_a_fraction_of_total_memory() -> None:
    assert ResourceManager(1).reserve_bytes(TOTAL) == RESERVE
    assert ResourceManager(1, reserve=0.25).reserve_bytes(TOTAL) == TOTAL // 4


async def test_admission_counts_the_reserve_and_what_admitted_encoders_will_take() -> None:
    memory = FakeMemory(available=RESERVE + 500 * MIB)
    manager = ResourceManager(4, memory=memory)
    async with holders(manager, 200 * MIB, 200 * MIB, 200 * MIB) as (a, b, c):
        # 500 free above the reserve: two estimates of 200 fit, a third does not.
        assert a.inside and b.inside and not c.inside
        # Memory freed elsewhere: the next sample lets the waiter re-check.
        memory.available += 100 * MIB
        await manager.sample()
        await settle()
        assert c.inside
        assert manager.running == 3


async def test_an_encoder_grown_to_its_estimate_no_longer_counts_as_outstanding() -> None:
    memory = FakeMemory(available=RESERVE + 300 * MIB)
    manager = ResourceManager(4, memory=memory)
    async with holders(manager, 200 * MIB, 200 * MIB) as (a, b):
        assert a.inside and not b.inside
        # The first encoder now holds its 200: the reading shows it, the estimate must not
        # be counted a second time.
        assert a.ticket is not None
        a.ticket.rss_bytes = 200 * MIB
        memory.available -= 200 * MIB
        await manager.sample()
        await settle()
        assert not b.inside  # 100 free, 200 wanted
        memory.available += 100 * MIB
        await manager.sample()
        await settle()
        assert b.inside


async def test_nothing_running_admits_one_even_below_the_reserve() -> None:
    manager = ResourceManager(4, memory=FakeMemory(available=RESERVE // 2))
    async with holders(manager, 4 * GIB, 1) as (big, small):
        assert big.inside
        assert not small.inside  # below the reserve: nothing more


async def test_raising_the_limit_wakes_waiters_and_lowering_it_holds_new_ones() -> None:
    manager = ResourceManager(1, memory=FakeMemory(TOTAL))
    async with holders(manager, 0, 0) as (a, b):
        assert a.inside and not b.inside
        await manager.set_limit(2)
        await settle()
        assert b.inside
        await manager.set_limit(1)
        async with holders(manager, 0) as (c,):
            await a.release()
            await settle()
            assert not c.inside  # b alone fills the lowered limit
            await b.release()
            await settle()
            assert c.inside


async def test_burst_of_admissions_never_exceeds_the_limit() -> None:
    manager = ResourceManager(3, memory=FakeMemory(TOTAL))
    inside = 0
    most = 0

    async def encoder(n: int) -> None:
        nonlocal inside, most
        async with manager.admit(MIB):
            inside += 1
            most = max(most, inside)
            await asyncio.sleep(0.001 * (n % 4))
            inside -= 1

    await asyncio.wait_for(asyncio.gather(*(encoder(n) for n in range(20))), 10)
    assert most == 3
    assert manager.peak == 3
    assert manager.running == 0


async def test_a_memory_budget_smaller_than_two_estimates_admits_one_at_a_time() -> None:
    estimate = 100 * MIB
    manager = ResourceManager(4, memory=FakeMemory(available=RESERVE + estimate * 3 // 2))
    inside = 0
    most = 0

    async def encoder() -> None:
        nonlocal inside, most
        async with manager.admit(estimate):
            inside += 1
            most = max(most, inside)
            await asyncio.sleep(0.005)
            inside -= 1

    await asyncio.wait_for(asyncio.gather(*(encoder() for _ in range(4))), 10)
    assert most == 1
    assert manager.peak == 1
    assert manager.limit == 4


async def test_slot_keeps_worker_slots_behaviour() -> None:
    manager = ResourceManager(2, memory=FakeMemory(available=0))
    inside = 0
    most = 0

    async def worker() -> None:
        nonlocal inside, most
        async with manager.slot():
            inside += 1
            most = max(most, inside)
            await asyncio.sleep(0.001)
            inside -= 1

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(6))), 10)
    # slot() asks for no memory, but below the reserve only the first one runs.
    assert most == 1
    roomy = ResourceManager(2, memory=FakeMemory(TOTAL))
    async with holders(roomy, 0, 0, 0) as (a, b, c):
        assert a.inside and b.inside and not c.inside


async def test_snapshots_report_memory_and_counts_and_history_is_bounded() -> None:
    memory = FakeMemory(available=600 * MIB)
    manager = ResourceManager(3, memory=memory, history=3)
    async with holders(manager, MIB):
        for _ in range(5):
            snapshot = await manager.sample()
    assert snapshot.memory_total == TOTAL
    assert snapshot.memory_available == 600 * MIB
    assert snapshot.reserve_bytes == RESERVE
    assert (snapshot.workers, snapshot.running, snapshot.suspended) == (3, 1, 0)
    assert snapshot.encoders == ()  # admitted but no process started
    assert 0.0 <= snapshot.cpu_percent <= 100.0
    assert manager.latest == snapshot
    assert len(manager.history) == 3
    assert manager.history[-1] == snapshot


async def test_sampling_runs_in_the_background_until_the_block_ends() -> None:
    manager = ResourceManager(1, memory=FakeMemory(TOTAL), interval_s=0.01)
    async with manager.sampling():
        async with asyncio.timeout(5):
            while len(manager.history) < 3:
                await asyncio.sleep(0.01)
        [sampler] = [t for t in asyncio.all_tasks() if t.get_name() == "resource-sampler"]
    assert sampler.done(), "sampling went on after the block"


async def test_pressure_without_two_encoders_suspends_nothing() -> None:
    notices: list[str] = []
    memory = FakeMemory(available=0)
    manager = ResourceManager(2, memory=memory, on_notice=notices.append)
    async with holders(manager, MIB):
        for _ in range(4):
            snapshot = await manager.sample()
    assert snapshot.suspended == 0
    assert notices == []


@pytest.mark.parametrize("limit", [0, -3])
def test_limit_is_at_least_one(limit: int) -> None:
    assert ResourceManager(limit).limit == 1
