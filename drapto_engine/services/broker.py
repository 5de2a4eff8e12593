"""The segment pool: segments are encoded as segmentation yields them, by as many
workers as the executor can run at once (counted again while the job runs), each
segment tried up to SEGMENT_ATTEMPTS times. Where a segment runs is the executor's
business (services/executors); what a finished segment is called and recorded as is
the work folder's (workdir.py) and the state store's."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from drapto_engine.core.errors import DraptoError, EncodeError
from drapto_engine.core.events import (
    EventBus,
    RolledBack,
    SegmentDone,
    SegmentFailed,
    SegmentPlanned,
    SegmentProgress,
    SegmentsPlanned,
    SegmentStarted,
    WarningEvent,
)
from drapto_engine.core.flags import TARGET_QUALITY, FlagSet
from drapto_engine.core.metrics import SegmentQuality
from drapto_engine.core.models import Segment, SegmentState
from drapto_engine.core.state import JobStage
from drapto_engine.infrastructure.ffmpeg.progress import Progress
from drapto_engine.infrastructure.source_identity import SourceIdentity, check_unchanged
from drapto_engine.infrastructure.state_manager import StateManager
from drapto_engine.infrastructure.workers import cpu_count, threads_per_worker
from drapto_engine.services.encoding.plan import VideoPlan
from drapto_engine.services.executors import (
    SegmentExecutor,
    SegmentRejected,
    SegmentRun,
    SegmentWork,
)
from drapto_engine.services.quality.runner import FALLBACK, MET
from drapto_engine.services.quality.search import learned_offset, learned_start, residual
from drapto_engine.services.resume import reuse
from drapto_engine.services.workdir import partial_file, put_in_place, segment_file

log = logging.getLogger(__name__)

SEGMENT_ATTEMPTS = 3  # the first try and two retries
CAPACITY_CHECK_S = 1.0
"""How often a running job looks for capacity that appeared (cluster workers, --workers)."""


class Slots(Protocol):
    """What the broker reads of the engine's ResourceManager: the local worker bound and
    whether other jobs' encoders wait for a slot."""

    @property
    def limit(self) -> int: ...

    @property
    def waiting(self) -> int: ...


class SegmentBroker:
    """Encodes one job's segments into its work folder.

    `resources` is the engine's ResourceManager (its worker bound sets each encoder's
    thread share); `flags` is read live (`tail_threads`); `source`, when given, is the
    source file and its identity, checked before every segment; `segments_planned` is
    set once segmentation has handed out every segment; `on_first_segment` runs before
    the first segment is recorded (the job's stage becomes encoding).
    """

    def __init__(
        self,
        job: str,
        plan: VideoPlan,
        work: Path,
        *,
        bus: EventBus,
        state: StateManager,
        executor: SegmentExecutor,
        resources: Slots,
        flags: FlagSet,
        priority: int = 0,
        source: tuple[Path, SourceIdentity] | None = None,
        segments_planned: asyncio.Event | None = None,
        on_first_segment: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.job = job
        self.plan = plan
        self.work = work
        self.bus = bus
        self.state = state
        self.executor = executor
        self.resources = resources
        self.flags = flags
        self.priority = priority
        self.source = source
        self.segments_planned = segments_planned or asyncio.Event()
        self.on_first_segment = on_first_segment
        self.quality: dict[int, SegmentQuality] = {}
        """Each finished segment's CRF and score (resumed ones too), for the summary."""
        self._residuals: list[float] = []
        """Each measured final's score less its probes' line at its CRF (search.residual)."""
        self._kept_crfs: list[int] = []
        """Each measured final's CRF (search.learned_start)."""

    async def run(
        self,
        segments: AsyncIterator[Segment],
        on_planned: Callable[[list[Segment]], Awaitable[None]],
    ) -> list[Segment]:
        """Encode segments as segmentation yields them, longest waiting segment first;
        `on_planned` gets the whole plan once segmentation ends. Returns the plan.

        Starting while scene detection still runs, and finishing on short segments,
        keeps every worker busy: the idle tail of the last long segment is what
        parallel encoding otherwise loses.
        """
        job = self.job
        slots = self.resources
        limit = self.executor.concurrency()
        pending: list[Segment] = []
        planned_at: dict[int, float] = {}
        planned: list[Segment] = []
        more = asyncio.Event()
        finished_planning = False

        async def plan_all() -> None:
            nonlocal finished_planning
            try:
                async for segment in segments:
                    if not planned and self.on_first_segment is not None:
                        await self.on_first_segment()
                    await self.state.plan_segment(
                        job, segment.index, segment.start_frame, segment.end_frame
                    )
                    planned.append(segment)
                    pending.append(segment)
                    planned_at[segment.index] = time.monotonic()
                    self.bus.emit(
                        SegmentPlanned(
                            job=job,
                            index=segment.index,
                            start_frame=segment.start_frame,
                            frames=segment.frame_count,
                        )
                    )
                    more.set()
                self.bus.emit(
                    SegmentsPlanned(
                        job=job, count=len(planned), frames=[s.frame_count for s in planned]
                    )
                )
                await on_planned(list(planned))
            finally:
                finished_planning = True
                self.segments_planned.set()
                more.set()

        drained = asyncio.Event()
        """Planning has finished and every segment is taken: no more workers are needed."""

        async def worker() -> None:
            while True:
                while not pending and not finished_planning:
                    more.clear()
                    await more.wait()
                if not pending:
                    drained.set()
                    return
                segment = max(pending, key=lambda s: (s.frame_count, -s.index))
                pending.remove(segment)
                # The last segment to start would otherwise run on one core's share
                # while the others' cores fall idle as they finish (unless another
                # job's encoders are waiting for them).
                last = finished_planning and not pending and slots.waiting == 0
                tail = last and self.flags.enabled("tail_threads")
                share = cpu_count() if tail else threads_per_worker(slots.limit)
                await self._encode_segment(segment, share, planned_at[segment.index])

        executor = self.executor
        started = 0

        async def grow(group: asyncio.TaskGroup) -> None:
            """One worker per segment the executor can run at once, counted again while
            the job runs: a cluster worker that joins or a raised worker count takes
            segments of this job, not only of the next one."""
            nonlocal started
            while not drained.is_set():
                while started < max(1, limit, executor.concurrency()):
                    group.create_task(worker())
                    started += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(drained.wait(), CAPACITY_CHECK_S)

        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(plan_all())
                group.create_task(grow(group))
        except BaseExceptionGroup as group_error:
            raise first_error(group_error) from None
        return planned

    async def _reuse(self, segment: Segment, path: Path) -> bool:
        record = await reuse(self.state, self.job, segment, path)
        if record is None:
            return False
        self._segment_done(
            segment,
            path,
            record.fps or 0.0,
            record.wall_s or 0.0,
            resumed=True,
            host=record.host or "",
            remote=record.remote,
            crf=record.crf,
            vmaf=record.vmaf,
            vmaf_low5=record.vmaf_low5,
            probes=stored_probes(record.probes),
            target=record.target,
        )
        return True

    def _segment_done(
        self,
        segment: Segment,
        path: Path,
        fps: float,
        wall: float,
        resumed: bool = False,
        **measured: Any,
    ) -> None:
        self.quality[segment.index] = SegmentQuality(
            index=segment.index,
            **{k: measured.get(k) for k in ("crf", "vmaf", "vmaf_low5", "target")},
        )
        crf, vmaf, probes = measured.get("crf"), measured.get("vmaf"), measured.get("probes")
        if isinstance(crf, int) and isinstance(vmaf, float) and probes:
            self._kept_crfs.append(crf)
            learned = residual(probes, crf, vmaf)
            if learned is not None:
                self._residuals.append(learned)
        self.bus.emit(
            SegmentDone(
                job=self.job,
                index=segment.index,
                frames=segment.frame_count,
                size_bytes=path.stat().st_size,
                fps=fps,
                wall_s=wall,
                resumed=resumed,
                **measured,
            )
        )

    async def _encode_segment(self, segment: Segment, threads: int, planned_at: float) -> None:
        job, plan = self.job, self.plan
        path = segment_file(self.work, segment)
        if await self._reuse(segment, path):
            return
        partial = partial_file(path)
        tries = SEGMENT_ATTEMPTS
        attempt = 0
        while attempt < tries:
            attempt += 1
            async with self.executor.slot(job, plan, segment, self.priority) as slot:
                started = time.monotonic()
                await self.state.set_segment(job, segment.index, SegmentState.RUNNING)

                def on_started(
                    host: str, attempt: int = attempt, remote: bool = slot.remote
                ) -> None:
                    self.bus.emit(
                        SegmentStarted(
                            job=job,
                            index=segment.index,
                            attempt=attempt,
                            threads=threads,
                            host=host,
                            remote=remote,
                        )
                    )

                work = SegmentWork(
                    job=job,
                    plan=self._learned(plan),
                    segment=segment,
                    partial=partial,
                    threads=threads,
                    on_started=on_started,
                    on_progress=self._progress_reporter(segment),
                    source=self.source[1] if self.source is not None else None,
                    known_probes=await self._known_probes(segment),
                    on_probe=self._probe_keeper(segment),
                )
                if self.source is not None:  # a stat: cheap before every segment
                    await asyncio.to_thread(check_unchanged, *self.source, content=False)
                try:
                    run = await slot.encode(work)
                except EncodeError as exc:
                    if isinstance(exc, SegmentRejected):  # not the segment's fault: a free try
                        tries += 1
                    retry = attempt < tries
                    await self.state.set_segment(job, segment.index, SegmentState.FAILED)
                    self.bus.emit(
                        SegmentFailed(
                            job=job,
                            index=segment.index,
                            attempt=attempt,
                            error=exc.problem,
                            will_retry=retry,
                            host=slot.host,
                        )
                    )
                    log.warning("segment %d attempt %d failed: %s", segment.index, attempt, exc)
                    if retry:
                        continue
                    raise
                self.executor.record(plan, run)
                wall = time.monotonic() - started
                fps = run.frames / wall if wall > 0 else 0.0
                # named only while this process still holds the job
                await self.state.set_segment(
                    job,
                    segment.index,
                    SegmentState.DONE,
                    before=lambda: put_in_place(partial, path, segment),
                    size_bytes=partial.stat().st_size,
                    fps=fps,
                    wall_s=wall,
                    host=run.host,
                    remote=int(run.remote),
                    **self._quality_fields(run),
                )
                self._quality_warning(segment, run)
                self._segment_done(
                    segment,
                    path,
                    fps,
                    wall,
                    peak_rss_bytes=run.peak_rss_bytes,
                    cpu_percent=run.cpu_percent,
                    queue_wait_s=started - planned_at,
                    attempts=attempt,
                    host=run.host,
                    remote=run.remote,
                    shipped_bytes=run.shipped_bytes,
                    runs=run.runs,
                    **self._quality_event(run),
                )
                return

    def _learned(self, plan: VideoPlan) -> VideoPlan:
        """The plan a segment is encoded by: with a target, what the job's finished
        segments learned of their finals against their probes (search.learned_offset) and
        the CRF they were kept at (search.learned_start)."""
        if plan.target_vmaf is None or not self._kept_crfs:
            return plan
        return dataclasses.replace(
            plan,
            vmaf_offset=learned_offset(self._residuals),
            vmaf_start=learned_start(self._kept_crfs),
        )

    async def _known_probes(self, segment: Segment) -> tuple[tuple[int, float], ...]:
        """Probes an earlier run measured for this segment (kept as each finished)."""
        if self.plan.target_vmaf is None:
            return ()
        record = (await self.state.segments(self.job)).get(segment.index)
        return tuple(stored_probes(record.probes if record else None))

    def _probe_keeper(self, segment: Segment) -> Callable[[list[list[float]]], Awaitable[None]]:
        async def keep(probes: list[list[float]]) -> None:
            await self.state.set_probes(self.job, segment.index, json.dumps(probes))

        return keep

    def _quality_fields(self, run: SegmentRun) -> dict[str, Any]:
        """The state store's columns of a finished segment's CRF and score."""
        fields = self._quality_event(run)
        if "probes" in fields:
            fields["probes"] = json.dumps(fields["probes"])
        return fields

    def _quality_event(self, run: SegmentRun) -> dict[str, Any]:
        """A finished segment's CRF and score, as its segment_done event carries them."""
        quality = run.quality
        if quality is None:
            return {"crf": self.plan.crf}
        return {
            "crf": quality.crf,
            "vmaf": quality.vmaf,
            "vmaf_low5": quality.vmaf_low5,
            "probes": [(int(c), float(v)) for c, v in quality.probes],
            "target": quality.status,
        }

    def _quality_warning(self, segment: Segment, run: SegmentRun) -> None:
        """A segment off its target says why; a measurement that failed turns the
        search off for the rest of the job (the target_quality rollback, which the
        engine counts towards turning the flag off for the session)."""
        quality = run.quality
        if quality is None or quality.status == MET:
            return
        if quality.status == FALLBACK and self.plan.target_vmaf is not None:
            self.plan = dataclasses.replace(self.plan, target_vmaf=None)
            message = (
                f"segment {segment.index}: target_quality rolled back to the fixed CRF "
                f"{quality.crf} for the rest of the job: {quality.note}"
            )
            self.bus.emit(
                RolledBack(
                    job=self.job,
                    flag=TARGET_QUALITY,
                    stage=JobStage.ENCODING.value,
                    error=quality.note or "VMAF measurement failed",
                )
            )
        else:
            message = f"segment {segment.index}: {quality.note}"
        log.warning("%s", message)
        self.bus.emit(WarningEvent(job=self.job, message=message))

    def _progress_reporter(self, segment: Segment) -> Callable[[Progress], None]:
        def report(progress: Progress) -> None:
            frames = segment.frame_count
            self.bus.emit(
                SegmentProgress(
                    job=self.job,
                    index=segment.index,
                    frame=progress.frame,
                    frames=frames,
                    fps=progress.fps,
                    percent=min(100.0, 100.0 * progress.frame / frames) if frames else 100.0,
                )
            )

        return report


def stored_probes(text: str | None) -> list[tuple[int, float]]:
    """The probes a segment's row keeps (JSON [[crf, vmaf], ...]); unreadable: none."""
    try:
        data = json.loads(text) if text else []
        return [(int(c), float(v)) for c, v in data]
    except (ValueError, TypeError):
        return []


def first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error a person should see from a task group: a DraptoError if there is one."""
    leaves: list[BaseException] = []

    def walk(error: BaseException) -> None:
        if isinstance(error, BaseExceptionGroup):
            for inner in error.exceptions:
                walk(inner)
        else:
            leaves.append(error)

    walk(group)
    return next((e for e in leaves if isinstance(e, DraptoError)), leaves[0])
