"""Metrics per segment and per job, threshold alerts, and which flag a failure rolls back.

The Monitor only listens to events: the orchestrator puts what it measured (peak
memory, CPU, queue wait) into them, so every client sees the same figures.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from drapto_engine.core.errors import DraptoError
from drapto_engine.core.events import (
    Alert,
    AnalysisReady,
    EntryChanged,
    EntryRemoved,
    Event,
    EventBus,
    JobFailed,
    JobFinished,
    ResourcesSampled,
    SegmentDone,
    SegmentFailed,
    SegmentProgress,
    SegmentStarted,
    StageChanged,
)
from drapto_engine.core.flags import BY_NAME
from drapto_engine.core.jobs import FINAL_STATUSES, EntryStatus
from drapto_engine.core.metrics import JobMetrics, ResourceSnapshot, SegmentMetrics
from drapto_engine.core.models import EncodeSettings
from drapto_engine.infrastructure.background import BackgroundTask
from drapto_engine.services.encoding.plan import VideoPlan

# ffmpeg's fps is an average since the start: too noisy to judge in an encoder's first seconds.
SLOW_AFTER_S = 10.0
JOB_GRACE_S = 30.0
"""No slow_encoder alert in a job's first seconds (a short clip is over before its
segments' speeds mean anything)."""
SLOW_MIN_DONE = 3
"""Finished segments of the same job an encoder is judged against."""
OTHERS_BUSY_PERCENT = 25.0
"""Other processes taking this much of the machine's CPU (percent of all cores) make a
slow encoder their doing, not the encoder's: no alert."""
LOAD_FRESH_S = 10.0
"""A load sample older than this says nothing about now."""


@dataclass
class _Running:
    started: float
    last_progress: float
    fps: float = 0.0
    alerted: set[str] = field(default_factory=set)


@dataclass
class _Job:
    first_seen: float = 0.0
    frame_rate: float = 0.0
    running: dict[int, _Running] = field(default_factory=dict)
    done: list[SegmentMetrics] = field(default_factory=list)
    resumed: int = 0
    alerts: dict[str, int] = field(default_factory=dict)
    stage: str | None = None
    stage_since: float = 0.0
    stage_s: dict[str, float] = field(default_factory=dict)


class Monitor:
    """Collects metrics from the event stream and raises threshold alerts.

    It holds a job's figures only while its queue entry is unfinished: the orchestrator
    saves them with the job before the entry ends, and then they are forgotten, so a
    service that runs for months holds the figures of its running jobs only."""

    def __init__(
        self,
        bus: EventBus,
        *,
        stall_s: float = 60.0,
        slow_ratio: float = 3.0,
        clock: Callable[[], float] = time.monotonic,
        cores: int | None = None,
    ) -> None:
        self.bus = bus
        self.cores = cores or os.cpu_count() or 1
        self._others: tuple[float, float] | None = None
        """(when, percent of the machine's CPU other processes than encoders took)."""
        self.stall_s = stall_s
        self.slow_ratio = slow_ratio
        self.clock = clock
        self._jobs: dict[str, _Job] = {}
        self._entry_jobs: dict[int, set[str]] = {}
        """Entry id -> the jobs its tries ran (a flag's rollback runs another job)."""
        self._watchdog = BackgroundTask(self._watch, "stall-watchdog")
        bus.subscribe(self.handle)

    # -- events in --

    def handle(self, event: Event) -> None:
        now = self.clock()
        if isinstance(event, ResourcesSampled):
            self._sampled(event.snapshot, now)
        if isinstance(event, EntryChanged):
            self._entry_changed(event)
        elif isinstance(event, EntryRemoved):
            self._forget_entry(event.entry_id)
        if not event.job:
            return
        job = self._jobs.get(event.job)
        if job is None:
            job = self._jobs[event.job] = _Job(first_seen=now)
        if isinstance(event, StageChanged):
            if job.stage is not None:
                job.stage_s[job.stage] = job.stage_s.get(job.stage, 0.0) + now - job.stage_since
            job.stage, job.stage_since = event.stage, now
        elif isinstance(event, AnalysisReady):
            job.frame_rate = event.frame_rate
        elif isinstance(event, SegmentStarted):
            job.running[event.index] = _Running(started=now, last_progress=now)
        elif isinstance(event, SegmentProgress):
            self._progress(event, job, now)
        elif isinstance(event, SegmentDone):
            job.running.pop(event.index, None)
            if event.resumed:
                job.resumed += 1
            else:
                job.done.append(self._segment_metrics(event, job))
        elif isinstance(event, SegmentFailed):
            job.running.pop(event.index, None)
        elif isinstance(event, JobFailed | JobFinished):
            job.running.clear()  # a failed try's other encoders were stopped with it
        elif isinstance(event, Alert):
            job.alerts[event.kind] = job.alerts.get(event.kind, 0) + 1

    def _entry_changed(self, event: EntryChanged) -> None:
        """An entry that is not running has no encoders (a cancel or an interrupt stops
        them without a segment event): none of its job's segments is watched any more.
        A finished entry's jobs are forgotten."""
        entry = event.entry
        if entry.job:
            self._entry_jobs.setdefault(entry.id, set()).add(entry.job)
        if entry.status in FINAL_STATUSES:
            self._forget_entry(entry.id)
            return
        job = self._jobs.get(entry.job or "")
        if job is not None and entry.status is not EntryStatus.RUNNING:
            job.running.clear()

    def _forget_entry(self, entry_id: int) -> None:
        for job_id in self._entry_jobs.pop(entry_id, ()):
            self.forget(job_id)

    def _progress(self, event: SegmentProgress, job: _Job, now: float) -> None:
        running = job.running.get(event.index)
        if running is None:
            return
        if event.frame > 0:
            running.last_progress = now
        running.fps = event.fps
        median = self._median_fps(job)
        slow = self.slow(job, running, event.fps, median, now)
        if slow and "slow_encoder" not in running.alerted:
            running.alerted.add("slow_encoder")
            self._alert(
                event.job,
                "slow_encoder",
                event.index,
                f"segment {event.index} encodes at {event.fps:.1f} fps, "
                f"under 1/{self.slow_ratio:g} of the job's median {median:.1f} fps",
            )

    def _sampled(self, sample: ResourceSnapshot, now: float) -> None:
        encoders = sum(e.cpu_percent for e in sample.encoders) / self.cores
        self._others = (now, max(0.0, sample.cpu_percent - encoders))

    def others_busy(self, now: float) -> bool:
        """Whether other programs than the encoders load the machine now."""
        if self._others is None or now - self._others[0] > LOAD_FRESH_S:
            return False
        return self._others[1] >= OTHERS_BUSY_PERCENT

    def slow(self, job: _Job, running: _Running, fps: float, median: float, now: float) -> bool:
        """An encoder is slow against its own job's finished segments, judged only once
        the job and the encoder have run a while, and never while other programs
        share the cores (then everything is slow, and nothing is wrong with it)."""
        judged = sum(1 for s in job.done if s.fps > 0) >= SLOW_MIN_DONE
        return (
            judged
            and median > 0
            and now - job.first_seen >= JOB_GRACE_S
            and now - running.started >= SLOW_AFTER_S
            and 0 < fps * self.slow_ratio < median
            and not self.others_busy(now)
        )

    @staticmethod
    def _segment_metrics(event: SegmentDone, job: _Job) -> SegmentMetrics:
        return SegmentMetrics(
            index=event.index,
            frames=event.frames,
            wall_s=event.wall_s,
            fps=event.fps,
            speed=event.fps / job.frame_rate if job.frame_rate else 0.0,
            peak_rss_bytes=event.peak_rss_bytes,
            cpu_percent=event.cpu_percent,
            queue_wait_s=event.queue_wait_s,
            attempts=event.attempts,
            host=event.host,
            remote=event.remote,
            shipped_bytes=event.shipped_bytes,
        )

    @staticmethod
    def _median_fps(job: _Job) -> float:
        rates = [s.fps for s in job.done if s.fps > 0]
        return statistics.median(rates) if rates else 0.0

    def _alert(self, job: str, kind: str, index: int | None, message: str) -> None:
        assert kind in ("memory_pressure", "slow_encoder", "stalled")
        self.bus.emit(Alert(job=job, kind=kind, index=index, message=message))

    # -- the stall watchdog --

    def check_stalls(self) -> None:
        now = self.clock()
        for job_id, job in list(self._jobs.items()):
            for index, running in list(job.running.items()):
                idle = now - running.last_progress
                if idle >= self.stall_s and "stalled" not in running.alerted:
                    running.alerted.add("stalled")
                    self._alert(
                        job_id,
                        "stalled",
                        index,
                        f"segment {index}'s encoder made no progress for {idle:.0f} s",
                    )

    def start(self) -> None:
        self._watchdog.start()

    async def stop(self) -> None:
        await self._watchdog.stop()

    def stood_still(self, seconds: float) -> None:
        """The engine did not run for `seconds` (stopped by SIGSTOP, a suspended machine,
        a blocked loop): it read no progress then, so that time is no encoder's stall."""
        for job in self._jobs.values():
            for running in job.running.values():
                running.last_progress += seconds

    async def _watch(self) -> None:
        interval = min(1.0, self.stall_s / 4)
        last = self.clock()
        while True:
            await asyncio.sleep(interval)
            now = self.clock()
            late = now - last - interval
            if late > interval:  # the watchdog itself was not run meanwhile
                self.stood_still(late)
            last = now
            self.check_stalls()

    # -- figures out --

    def metrics(self, job_id: str) -> JobMetrics:
        job = self._jobs.get(job_id, _Job())
        done = job.done
        stage_s = dict(job.stage_s)
        if job.stage is not None:
            stage_s[job.stage] = stage_s.get(job.stage, 0.0) + self.clock() - job.stage_since
        here = [s for s in done if not s.remote]  # a worker's encoder is not sampled
        return JobMetrics(
            segments=sorted(done, key=lambda s: s.index),
            encoded_segments=len(done),
            resumed_segments=job.resumed,
            remote_segments=len(done) - len(here),
            median_fps=statistics.median([s.fps for s in done]) if done else 0.0,
            median_speed=statistics.median([s.speed for s in done]) if done else 0.0,
            peak_rss_bytes=max((s.peak_rss_bytes for s in here), default=0),
            mean_cpu_percent=statistics.fmean([s.cpu_percent for s in here]) if here else 0.0,
            mean_queue_wait_s=statistics.fmean([s.queue_wait_s for s in done]) if done else 0.0,
            alerts=dict(job.alerts),
            stage_s=stage_s,
        )

    @property
    def jobs(self) -> set[str]:
        """The jobs whose figures it holds now."""
        return set(self._jobs)

    def forget(self, job_id: str) -> None:
        self._jobs.pop(job_id, None)


def _could_cause(flag: str, error: DraptoError | None) -> bool:
    """Whether the flag's strategy could have caused `error` (a retry without it could
    help): a validation failure only of checks the strategy cannot fail could not."""
    checks = [getattr(f, "check", None) for f in getattr(error, "failures", None) or []]
    if not checks or None in checks:
        return True
    return not set(checks) <= BY_NAME[flag].cannot_fail


def rollback_flag(
    stage: str,
    plan: VideoPlan | None,
    settings: EncodeSettings,
    error: DraptoError | None = None,
) -> str | None:
    """The flag whose strategy owns a failure at `stage`, if it was on for the job and
    could have caused `error`."""
    candidates: list[str] = []
    if plan is not None and plan.dolby_vision:
        if settings.segmented_dolby_vision and plan.segmented:
            candidates.append("segmented_dolby_vision")
        if settings.dolby_vision_crop and plan.crop is not None:
            candidates.append("dolby_vision_crop")
    elif settings.segmented and (plan is None or plan.segmented):
        candidates.append("segmented_encoding")
    if settings.scene_detection and (plan is None or plan.segmented):
        candidates.append("scene_segmentation")
    if settings.crop and plan is not None and plan.crop is not None and not plan.dolby_vision:
        candidates.append("crop_detection")
    return next(
        (name for name in candidates if stage in BY_NAME[name].owns and _could_cause(name, error)),
        None,
    )
