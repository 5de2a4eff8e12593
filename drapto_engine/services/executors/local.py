"""Segments on this machine: ffmpeg under the engine's ResourceManager (memory-aware
admission, sampling, suspension), exactly as the orchestrator always ran them."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import shutil
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from drapto_engine.core.errors import EncodeError
from drapto_engine.core.models import Segment
from drapto_engine.infrastructure.ffmpeg.progress import Progress
from drapto_engine.infrastructure.ffmpeg.runner import run_checked
from drapto_engine.infrastructure.processes import Admission
from drapto_engine.infrastructure.resources import ResourceManager
from drapto_engine.services.encoding.plan import VideoPlan
from drapto_engine.services.encoding.svt import encoder_for
from drapto_engine.services.executors import SegmentRun, SegmentWork
from drapto_engine.services.quality.runner import Machine, Outcome, reach_target, target_of
from drapto_engine.services.workdir import scratch_of, video_packets

EARLY_SAMPLES_AT_S = (0.1, 0.2, 0.4, 0.8, 1.4, 2.0)
"""When an encoder is sampled after it starts, before the shared 1 s sampler's period
matters: dense at first (a short encoder's CPU and memory), sparse after (every sample
reads /proc for the whole tree; ten a second cost ~1% of a light job's CPU)."""
HOST = socket.gethostname()


@dataclass
class LocalSlot:
    ticket: Admission
    host: str = HOST
    remote: bool = False

    async def encode(self, work: SegmentWork) -> SegmentRun:
        plan, segment, ticket = work.plan, work.segment, self.ticket

        def report(progress: Progress) -> None:
            if progress.ended:
                ticket.measure(0, final=True)  # the last look at it: exits next
            work.on_progress(progress)

        work.on_started(self.host)
        quality = None
        async with sampled_early(ticket):
            if plan.target_vmaf is None:
                await run_checked(
                    encoder_for(plan).segment_argv(plan, segment, work.partial, work.threads),
                    f"segment {segment.index} encode",
                    plan.source,
                    on_progress=report,
                    on_start=ticket.track,
                )
            else:
                quality = await self._reach_target(work, report)
        frames = await asyncio.to_thread(video_packets, work.partial)
        check_frames(frames, plan, segment)
        return SegmentRun(
            frames=frames,
            host=self.host,
            peak_rss_bytes=ticket.peak_rss_bytes,
            cpu_percent=ticket.mean_cpu_percent,
            quality=quality,
        )

    async def _reach_target(self, work: SegmentWork, report: Callable[[Progress], None]) -> Outcome:
        """The segment searched, encoded, measured and corrected here (services/quality),
        in a scratch folder beside its partial file; the kept encode becomes the partial."""
        plan, segment, threads, ticket = work.plan, work.segment, work.threads, self.ticket
        target = target_of(plan)
        assert target is not None
        encoder = encoder_for(plan)

        def argv_at(crf: int, preset: int, output: Path) -> list[str]:
            at = dataclasses.replace(plan, crf=crf, preset=preset)
            return encoder.segment_argv(at, segment, output, threads)

        async def run(argv: list[str]) -> None:
            await run_checked(
                argv,
                f"segment {segment.index} encode",
                plan.source,
                on_progress=report,
                on_start=ticket.track,
            )

        scratch = scratch_of(work.partial)
        await asyncio.to_thread(shutil.rmtree, scratch, True)
        scratch.mkdir()
        try:
            return await reach_target(
                target,
                preset=plan.preset,
                fallback_crf=plan.crf,
                frames=segment.frame_count,
                machine=Machine(
                    argv_at, run, threads, plan.source, on_start=ticket.track, on_progress=report
                ),
                output=work.partial,
                scratch=scratch,
                known_probes=work.known_probes,
                on_probe=work.on_probe,
            )
        finally:
            await asyncio.to_thread(shutil.rmtree, scratch, True)


class LocalExecutor:
    def __init__(self, resources: ResourceManager) -> None:
        self.resources = resources

    def concurrency(self) -> int:
        return self.resources.limit

    def free(self) -> bool:
        """Whether a segment asking now would get a slot at once (memory aside)."""
        return self.resources.running < self.resources.limit and self.resources.waiting == 0

    @contextlib.asynccontextmanager
    async def slot(
        self, job: str, plan: VideoPlan, segment: Segment, priority: int
    ) -> AsyncIterator[LocalSlot]:
        estimate = self.resources.estimate(plan.analysis.resolution_class)
        async with self.resources.admit(
            estimate, segment=segment.index, job=job, priority=priority
        ) as ticket:
            yield LocalSlot(ticket)

    def record(self, plan: VideoPlan, run: SegmentRun) -> None:
        if not run.remote:
            self.resources.record_peak(plan.analysis.resolution_class, run.peak_rss_bytes)


def check_frames(frames: int, plan: VideoPlan, segment: Segment) -> None:
    if frames != segment.frame_count:
        raise EncodeError(
            f"segment {segment.index} has {frames} frames, planned {segment.frame_count}",
            plan.source,
        )


@contextlib.asynccontextmanager
async def sampled_early(ticket: Admission) -> AsyncIterator[None]:
    """Sample an encoder at EARLY_SAMPLES_AT_S after it starts. The shared sampler's
    1 s period misses an encoder that ends sooner (a short whole-file encode, Dolby
    Vision's among them), whose metrics would then read 0 MiB and 0% CPU; with the
    sample at its last progress report even a 0.2 s encoder is measured."""

    async def sample() -> None:
        previous = 0.0
        for number, at in enumerate(EARLY_SAMPLES_AT_S):
            await asyncio.sleep(at - previous)
            previous = at
            ticket.measure(number)

    task = asyncio.create_task(sample())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
