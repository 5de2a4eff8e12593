"""The segment broker's scheduling, with an executor whose segments finish on command.

No ffmpeg runs: the fake executor writes each segment's partial file itself. The state
store is the real SQLite one, so what the broker records is what a resumed run reads.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest

from drapto_engine.core.errors import EncodeError
from drapto_engine.core.events import (
    Event,
    EventBus,
    SegmentDone,
    SegmentFailed,
    SegmentsPlanned,
    SegmentStarted,
)
from drapto_engine.core.flags import FlagSet
from drapto_engine.core.models import (
    DynamicRange,
    EncodeSettings,
    MediaInfo,
    Rational,
    ResolutionClass,
    Segment,
    SegmentState,
    VideoAnalysis,
    VideoStream,
)
from drapto_engine.core.state import JobRecord
from drapto_engine.infrastructure.resources import ResourceManager
from drapto_engine.infrastructure.state_manager import StateManager
from drapto_engine.infrastructure.store import StateStore
from drapto_engine.services import broker as broker_module
from drapto_engine.services.broker import SEGMENT_ATTEMPTS, SegmentBroker
from drapto_engine.services.encoding.plan import VideoPlan
from drapto_engine.services.executors import SegmentRejected, SegmentRun, SegmentWork
from drapto_engine.services.workdir import range_file, segment_file

E = TypeVar("E")
T = TypeVar("T")
JOB = "job0broker01"
WAIT_S = 5.0


@dataclass
class FakeSlot:
    executor: FakeExecutor
    host: str = "fake"
    remote: bool = False

    async def encode(self, work: SegmentWork) -> SegmentRun:
        executor, index = self.executor, work.segment.index
        executor.in_flight.add(index)
        executor.peak = max(executor.peak, len(executor.in_flight))
        executor.started.append(index)
        work.on_started(self.host)
        try:
            if not executor.auto:
                await executor.release.setdefault(index, asyncio.Event()).wait()
            failures = executor.failures.get(index, [])
            if failures:
                raise failures.pop(0)
            work.partial.write_bytes(b"\0" * work.segment.frame_count)
            return SegmentRun(frames=work.segment.frame_count, host=self.host)
        finally:
            executor.in_flight.discard(index)


@dataclass
class FakeExecutor:
    """A SegmentExecutor: `capacity` segments at once (changeable mid-job); a segment
    finishes when released (or at once with `auto`), after raising its `failures`."""

    capacity: int
    auto: bool = False
    failures: dict[int, list[EncodeError]] = field(default_factory=dict)
    release: dict[int, asyncio.Event] = field(default_factory=dict)
    told: set[int] = field(default_factory=set)
    """The segments told to finish."""
    in_flight: set[int] = field(default_factory=set)
    started: list[int] = field(default_factory=list)
    recorded: list[SegmentRun] = field(default_factory=list)
    peak: int = 0

    def concurrency(self) -> int:
        return self.capacity

    @contextlib.asynccontextmanager
    async def slot(
        self, job: str, plan: VideoPlan, segment: Segment, priority: int
    ) -> AsyncIterator[FakeSlot]:
        yield FakeSlot(self)

    def record(self, plan: VideoPlan, run: SegmentRun) -> None:
        self.recorded.append(run)

    def finish(self, index: int) -> None:
        self.told.add(index)
        self.release.setdefault(index, asyncio.Event()).set()


@dataclass
class Job:
    broker: SegmentBroker
    executor: FakeExecutor
    state: StateManager
    work: Path
    events: list[Event]

    def of(self, kind: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, kind)]


def plan_for(path: Path, frames: int) -> VideoPlan:
    video = VideoStream(
        index=0,
        codec="h264",
        width=320,
        height=240,
        pix_fmt="yuv420p",
        bit_depth=8,
        frame_rate=Rational(num=25, den=1),
        frame_count=frames,
    )
    media = MediaInfo(
        path=path, container="matroska", size_bytes=1, duration_s=frames / 25, video=video
    )
    analysis = VideoAnalysis(
        media=media,
        dynamic_range=DynamicRange.SDR,
        resolution_class=ResolutionClass.SD,
        default_crf=24,
    )
    return VideoPlan.make("ffmpeg", analysis, EncodeSettings())


def segments_of(lengths: list[int]) -> list[Segment]:
    segments, start = [], 0
    for index, length in enumerate(lengths):
        segments.append(
            Segment(
                index=index,
                start_frame=start,
                end_frame=start + length,
                start_s=start / 25,
                end_s=(start + length) / 25,
            )
        )
        start += length
    return segments


async def yielded(segments: list[Segment]) -> AsyncIterator[Segment]:
    for segment in segments:
        yield segment


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT_S):
        while not condition():
            await asyncio.sleep(0.005)


async def finished(task: asyncio.Task[T]) -> T:
    async with asyncio.timeout(WAIT_S):
        return await task


@contextlib.asynccontextmanager
async def job(tmp_path: Path, executor: FakeExecutor, lengths: list[int]) -> AsyncIterator[Job]:
    store = StateStore(tmp_path / "state.db")
    state = StateManager(store)
    source = tmp_path / "source.mkv"
    record = JobRecord(
        id=JOB,
        input=str(source),
        input_size=0,
        input_mtime_ns=0,
        output=str(tmp_path / "out.mkv"),
        settings="{}",
    )
    await state.begin(record)
    bus = EventBus()
    events: list[Event] = []
    bus.subscribe(events.append)
    work = tmp_path / "work"
    work.mkdir()
    broker = SegmentBroker(
        JOB,
        plan_for(source, sum(lengths)),
        work,
        bus=bus,
        state=state,
        executor=executor,
        resources=ResourceManager(executor.capacity),
        flags=FlagSet(),
    )
    try:
        yield Job(broker, executor, state, work, events)
    finally:
        await state.release(JOB)
        store.close()


async def no_plan(planned: list[Segment]) -> None:
    return None


async def test_no_more_segments_run_than_the_executor_allows(tmp_path: Path) -> None:
    executor = FakeExecutor(capacity=2)
    segments = segments_of([10, 10, 10, 10, 10])
    async with job(tmp_path, executor, [10] * 5) as run:
        task = asyncio.create_task(run.broker.run(yielded(segments), no_plan))
        await until(lambda: len(executor.in_flight) == 2)
        await asyncio.sleep(0.05)  # free workers would have taken a third by now
        assert len(executor.in_flight) == 2
        for index in range(5):
            await until(lambda index=index: index in executor.in_flight)
            executor.finish(index)
        planned = await finished(task)
        stored = await run.state.segments(JOB)
    assert planned == segments
    assert executor.peak == 2
    assert sorted(e.index for e in run.of(SegmentDone)) == [0, 1, 2, 3, 4]
    for segment in segments:  # each named in place, with the frames it holds noted
        path = segment_file(run.work, segment)
        assert path.stat().st_size == segment.frame_count
        assert range_file(path).read_text().split() == [
            str(segment.start_frame),
            str(segment.end_frame),
        ]
    assert {i: r.state for i, r in stored.items()} == dict.fromkeys(range(5), SegmentState.DONE)
    assert len(executor.recorded) == 5


async def test_capacity_that_rises_mid_job_takes_its_waiting_segments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(broker_module, "CAPACITY_CHECK_S", 0.01)
    executor = FakeExecutor(capacity=1)
    segments = segments_of([10, 10, 10, 10])
    async with job(tmp_path, executor, [10] * 4) as run:
        task = asyncio.create_task(run.broker.run(yielded(segments), no_plan))
        await until(lambda: len(executor.in_flight) == 1)
        await asyncio.sleep(0.05)
        assert len(executor.in_flight) == 1
        executor.capacity = 3  # a worker joins, or --workers is raised
        await until(lambda: len(executor.in_flight) == 3)
        for index in range(4):
            executor.finish(index)
        await finished(task)
    assert executor.peak == 3
    assert len(run.of(SegmentDone)) == 4


async def test_the_longest_waiting_segment_starts_first_and_results_keep_plan_order(
    tmp_path: Path,
) -> None:
    executor = FakeExecutor(capacity=1)
    lengths = [5, 8, 20, 8, 12]
    segments = segments_of(lengths)
    planned_plans: list[list[Segment]] = []

    async def on_planned(planned: list[Segment]) -> None:
        planned_plans.append(planned)

    async with job(tmp_path, executor, lengths) as run:
        task = asyncio.create_task(run.broker.run(yielded(segments), on_planned))
        await until(lambda: executor.in_flight == {0})  # the only one planned yet
        await until(lambda: bool(run.of(SegmentsPlanned)))
        for _ in segments:
            await until(lambda: bool(executor.in_flight - executor.told))
            [index] = executor.in_flight - executor.told
            executor.finish(index)
        planned = await finished(task)
    # Then longest first; of equal lengths, the earlier one.
    assert executor.started == [0, 2, 4, 1, 3]
    assert planned == segments and planned_plans == [segments]
    assert [e.index for e in run.of(SegmentDone)] == [0, 2, 4, 1, 3]
    assert run.broker.segments_planned.is_set()


async def test_a_segment_that_fails_is_retried_and_its_attempts_counted(tmp_path: Path) -> None:
    failure = EncodeError("encoder exited 1", tmp_path / "source.mkv")
    executor = FakeExecutor(capacity=2, auto=True, failures={1: [failure, failure]})
    async with job(tmp_path, executor, [10, 10, 10]) as run:
        await run.broker.run(yielded(segments_of([10, 10, 10])), no_plan)
        stored = await run.state.segments(JOB)
    failed = run.of(SegmentFailed)
    assert [(e.index, e.attempt, e.will_retry) for e in failed] == [(1, 1, True), (1, 2, True)]
    done = {e.index: e for e in run.of(SegmentDone)}
    assert done[1].attempts == SEGMENT_ATTEMPTS and done[0].attempts == 1
    assert [e.attempt for e in run.of(SegmentStarted) if e.index == 1] == [1, 2, 3]
    assert stored[1].state is SegmentState.DONE


async def test_a_segment_that_fails_every_try_fails_the_job(tmp_path: Path) -> None:
    failures = [EncodeError(f"encoder exited {n}", tmp_path / "source.mkv") for n in (1, 2, 3)]
    executor = FakeExecutor(capacity=1, auto=True, failures={0: failures})
    async with job(tmp_path, executor, [10, 10]) as run:
        with pytest.raises(EncodeError, match="encoder exited 3"):
            await run.broker.run(yielded(segments_of([10, 10])), no_plan)
        assert (await run.state.segments(JOB))[0].state is SegmentState.FAILED
    failed = run.of(SegmentFailed)
    assert [(e.attempt, e.will_retry) for e in failed] == [(1, True), (2, True), (3, False)]
    assert not segment_file(run.work, segments_of([10])[0]).exists()


async def test_a_rejected_remote_try_is_free(tmp_path: Path) -> None:
    """A try that failed through no fault of the segment (its worker left, its job was
    rolled back) does not count against SEGMENT_ATTEMPTS."""
    rejected = [SegmentRejected("no worker left", tmp_path / "source.mkv") for _ in range(3)]
    failed = [EncodeError("encoder exited 1", tmp_path / "source.mkv") for _ in range(2)]
    executor = FakeExecutor(capacity=1, auto=True, failures={0: [*rejected, *failed]})
    async with job(tmp_path, executor, [10]) as run:
        await run.broker.run(yielded(segments_of([10])), no_plan)
    assert all(e.will_retry for e in run.of(SegmentFailed))
    [done] = run.of(SegmentDone)
    assert done.attempts == len(rejected) + SEGMENT_ATTEMPTS
