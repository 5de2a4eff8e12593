"""One file end to end: detection -> segmentation -> encode + audio -> mux -> validation."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import shutil
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from drapto_engine.core.errors import (
    DiskFull,
    DraptoError,
    MediaError,
    ValidationError,
)
from drapto_engine.core.events import (
    AnalysisReady,
    AudioDone,
    EventBus,
    JobFailed,
    JobFinished,
    JobSummary,
    StageChanged,
    WarningEvent,
)
from drapto_engine.core.flags import FlagSet
from drapto_engine.core.metrics import JobMetrics, QualitySummary
from drapto_engine.core.models import (
    AudioStream,
    EncodeSettings,
    MediaInfo,
    Segment,
    VideoAnalysis,
)
from drapto_engine.core.state import (
    JobRecord,
    JobStage,
    JobTakenOver,
    StateDamaged,
)
from drapto_engine.core.text import model_json
from drapto_engine.infrastructure.disk import check_disk, estimated_output_bytes
from drapto_engine.infrastructure.extents import Extent, stream_extents
from drapto_engine.infrastructure.ffmpeg.runner import run_checked
from drapto_engine.infrastructure.prefetch import Prefetch
from drapto_engine.infrastructure.probe import probe
from drapto_engine.infrastructure.resources import ResourceManager
from drapto_engine.infrastructure.source_identity import (
    SourceIdentity,
    check_unchanged,
    identify,
)
from drapto_engine.infrastructure.state_manager import StateManager
from drapto_engine.services.broker import SegmentBroker
from drapto_engine.services.detection import analyze_media
from drapto_engine.services.encoding.audio import audio_argv, bitrate_kbps, output_channels
from drapto_engine.services.encoding.plan import VideoPlan, orientation, segments_video
from drapto_engine.services.encoding.svt import (
    container_problem,
    encoder_for,
    size_problem,
)
from drapto_engine.services.executors import SegmentExecutor
from drapto_engine.services.executors.local import LocalExecutor
from drapto_engine.services.expected import expected_output
from drapto_engine.services.join import join
from drapto_engine.services.outputs import check_free, check_output_path, partial_name
from drapto_engine.services.resume import Prior, StoredPlan
from drapto_engine.services.segmentation import stream_segments
from drapto_engine.services.segmentation.timestamps import frame_times
from drapto_engine.services.shadow import crop_discrepancy, scene_discrepancy
from drapto_engine.services.validation import check_output, source_frame_times
from drapto_engine.services.workdir import (
    WORK_PREFIX,
    leftovers,
    partial_file,
    segment_file,
)

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class EncodeRequest:
    input: Path
    output: Path
    settings: EncodeSettings = field(default_factory=EncodeSettings)
    overwrite: bool = False
    keep_work: bool = False
    work_root: Path | None = None
    """Where the job's work directory goes; default: beside the output."""
    shadow: frozenset[str] = frozenset()
    """Flags in shadow state: their other strategy's analysis runs too (see flags.py)."""
    priority: int = 0
    """Admission priority of this job's encoders among all jobs' (lower goes first)."""
    replaces: frozenset[str] = frozenset()
    """Jobs this one knowingly replaces (an earlier try of the same entry, rolled back):
    dropping them is no news."""


def job_record(request: EncodeRequest) -> JobRecord:
    """A job is its input file (path, size, mtime) and the settings that shape its output."""
    stat = request.input.stat()
    # without a target the target fields shape nothing: a fixed-CRF job keeps its id
    unused = {"target_vmaf", "crf_range", "target_quality"}
    settings = model_json(
        request.settings, exclude=unused if request.settings.target_vmaf is None else None
    )
    source = request.input.resolve()
    key = f"{source}|{stat.st_size}|{stat.st_mtime_ns}|{settings}"
    return JobRecord(
        id=hashlib.sha256(os.fsencode(key)).hexdigest()[:12],
        input=str(source),
        input_size=stat.st_size,
        input_mtime_ns=stat.st_mtime_ns,
        output=str(request.output.resolve()),
        settings=settings,
    )


def preflight(request: EncodeRequest) -> None:
    """Checks that cost nothing and must fail before any encoding: the rules every entry
    point checks (services/outputs.py), again as the job starts."""
    check_output_path(request.output, request.input)
    check_free(request.output, request.overwrite)


class JobMonitor(Protocol):
    """What a job needs of the engine's monitor (monitoring.Monitor): its figures."""

    def metrics(self, job_id: str) -> JobMetrics: ...

    def forget(self, job_id: str) -> None: ...


def _check_encodable(media: MediaInfo, source: Path) -> None:
    """Refusals that need only the probe, before any work."""
    too_small = size_problem(media.video.width, media.video.height)
    if too_small is not None:  # the encoder would fail every try
        raise MediaError(too_small, source)
    untimed = container_problem(media.container)
    if untimed is not None:  # a segment would start a frame off
        raise MediaError(untimed, source)
    orientation(media.video.display_matrix, source)  # a turn it cannot do


@dataclass(frozen=True)
class _Run:
    """One run of a job, as prepared before the job is held: what its stages read."""

    request: EncodeRequest
    record: JobRecord
    identity: SourceIdentity
    """The source as analysed: every step that reads it checks it is still this file."""
    work_root: Path
    work: Path
    """The job's work folder (workdir.py)."""
    prior: Prior
    """What an unfinished run of the job left (resume.py)."""
    media: MediaInfo
    partial: Path
    """The name the output is written under until it validates."""

    @property
    def job(self) -> str:
        return self.record.id

    @property
    def resume(self) -> StoredPlan | None:
        """The stored plan this run resumes with; None: it analyses and plans afresh."""
        return self.prior.plan


@dataclass
class _Beside:
    """Work running beside the stages (the source's frame times and extents, the scene
    scan ahead, the audio); `stop` ends what still runs, however the stages end."""

    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    scan_ahead: Prefetch[Segment] | None = None
    times: asyncio.Task[list[float]] | None = None
    extents: asyncio.Task[dict[int, Extent]] | None = None

    def start(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = asyncio.create_task(work)
        self.tasks.append(task)
        return task

    def source_times(self) -> asyncio.Task[list[float]]:
        if self.times is None:
            raise RuntimeError("the source's frame times are read only by a run that analyses")
        return self.times

    def source_extents(self) -> asyncio.Task[dict[int, Extent]]:
        if self.extents is None:
            raise RuntimeError("the source's extents are read only by a run that analyses")
        return self.extents

    async def stop_scan(self) -> None:
        if self.scan_ahead is not None:
            await self.scan_ahead.aclose()
            self.scan_ahead = None

    async def stop(self) -> None:
        await self.stop_scan()
        for task in self.tasks:
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task


class Orchestrator:
    """Runs one encode job, emitting an event for every stage and segment.

    `resources` is shared by every job of an engine, so that its worker bound holds
    across them. `flags` is read live for flags whose scope is the next segment;
    `monitor` (the engine's Monitor) supplies the job's metrics. `executor`
    says where a segment is encoded (services/executors): this machine under
    `resources` unless the engine passes another (its cluster).
    """

    def __init__(
        self,
        ffmpeg: str,
        bus: EventBus,
        state: StateManager,
        *,
        resources: ResourceManager,
        monitor: JobMonitor,
        flags: FlagSet | None = None,
        executor: SegmentExecutor | None = None,
    ) -> None:
        self.ffmpeg = ffmpeg
        self.bus = bus
        self.state = state
        self.resources = resources
        self.flags = flags or FlagSet()
        self.monitor = monitor
        self.executor: SegmentExecutor = executor or LocalExecutor(resources)
        """Where segments run; by default this machine, under `resources`."""
        self.stage = JobStage.QUEUED
        self.plan: VideoPlan | None = None
        self.job: str | None = None
        self.on_job: Callable[[str], None] | None = None
        """Called with the job id as soon as it is known."""
        self.quality: QualitySummary | None = None
        """A target-quality job's segments and scores, once encoded."""
        self.segments_planned = asyncio.Event()
        """Set once segmentation has handed out every segment (a queue may start the next job)."""
        self.source: tuple[Path, SourceIdentity] | None = None
        """The job's source and its identity as analysed (source_identity.py)."""

    async def encode(self, request: EncodeRequest) -> JobSummary:
        """Run one job to its end, resuming what an interrupted run of it left.

        The order of a job: prepare (checks, identity, probe) before it is held; hold it;
        reconcile what an earlier run left; then the pipeline while it is held."""
        run = await self._prepare(request)
        _, dropped = await self.state.begin(run.record)
        # This run's figures only: an earlier run of the job in this engine (interrupted,
        # then retried) left its segments in the monitor.
        self.monitor.forget(run.job)
        await self._reconcile_prior(run, dropped)
        self.stage = JobStage.QUEUED
        return await self._run_held(run)

    async def _pipeline(self, run: _Run) -> JobSummary:
        """The stages of a held job, in order."""
        started = time.monotonic()
        beside = _Beside()
        try:
            analysis = await self._analyse(run, beside)
            plan = self._plan(run, analysis)
            self._check_disk(run.request, analysis, run.work)
            run.work.mkdir(parents=True, exist_ok=True)
            audio_task = beside.start(self._encode_audio(run.job, run.media, run.work))
            planned, saved_plan = await self._encode_segments(run, plan, analysis, beside)
            audio = await audio_task
        finally:
            await beside.stop()
        if saved_plan is None:  # the broker hands every plan it ran to save_plan
            raise RuntimeError(f"job {run.job}: segments were encoded with no plan saved")
        await self._shadow_scenes(run, plan, planned, beside)
        await self._join_and_validate(run, plan, planned, saved_plan, audio)
        metrics = await self._save_metrics(run.job)
        await self._put_output_in_place(run)
        summary = self._summary(
            run.request, run.media, len(planned), time.monotonic() - started, metrics
        )
        self.bus.emit(JobFinished(job=run.job, summary=summary))
        return summary

    async def _prepare(self, request: EncodeRequest) -> _Run:
        """What comes before the job is held: the checks that cost nothing, the job's id,
        the source's identity, what an earlier run left, the probe (or the stored one) and
        the refusals that need only the probe."""
        preflight(request)
        record = await asyncio.to_thread(job_record, request)
        # The source as analysed: every step that reads it checks it is still this file.
        identity = await asyncio.to_thread(identify, request.input)
        self.source = (request.input, identity)
        work_root = request.work_root or request.output.parent
        work = work_root / f"{WORK_PREFIX}{record.id}"
        stored = await asyncio.to_thread(self.state.store.job, record.id)
        prior = await asyncio.to_thread(Prior.of, stored, work, record.id, identity)
        if prior.plan is not None:
            media = prior.plan.analysis.media
        else:
            media = await asyncio.to_thread(probe, request.input, self.ffmpeg)
        _check_encodable(media, request.input)
        self.job = record.id
        if self.on_job is not None:
            self.on_job(record.id)
        return _Run(
            request=request,
            record=record,
            identity=identity,
            work_root=work_root,
            work=work,
            prior=prior,
            media=media,
            partial=partial_name(request.output),
        )

    async def _reconcile_prior(self, run: _Run, dropped: list[JobRecord]) -> None:
        """Once the job is held: remove the work of dropped jobs (other settings or an
        older source), of an unfinished run whose source was replaced or whose plan another
        drapto made, and the leftovers of interrupted runs."""
        request, job, work = run.request, run.job, run.work
        for old in dropped:
            if old.id not in request.replaces:
                self.bus.emit(
                    WarningEvent(
                        job=job,
                        message=f"{request.input}: an unfinished run with other settings (or "
                        "an older source) is dropped; starting afresh",
                    )
                )
            await asyncio.to_thread(shutil.rmtree, run.work_root / f"{WORK_PREFIX}{old.id}", True)
        if run.prior.replaced:
            self.bus.emit(
                WarningEvent(
                    job=job,
                    message=f"{request.input}: the source is not the file the unfinished run "
                    f"encoded ({'; '.join(run.prior.replaced)}); starting afresh",
                )
            )
            await self.state.forget_work(job)
            await asyncio.to_thread(shutil.rmtree, work, True)
        elif run.prior.stale:
            await self.state.forget_work(job)
            await asyncio.to_thread(shutil.rmtree, work, True)
        for leftover in await asyncio.to_thread(leftovers, work, request.output):
            if leftover.is_dir():
                await asyncio.to_thread(shutil.rmtree, leftover, True)
            else:
                leftover.unlink(missing_ok=True)

    async def _run_held(self, run: _Run) -> JobSummary:
        """The pipeline while this process holds the job: the heartbeat, and what each way
        of ending leaves (failed, taken over, interrupted) and releases."""
        job, work, partial = run.job, run.work, run.partial
        this_task = asyncio.current_task()
        taken_over_by: DraptoError | None = None  # why another drapto holds the job now
        running = True

        def on_lost(exc: DraptoError) -> None:
            # Another drapto has the job now: stop the encoders at once, write nothing.
            nonlocal taken_over_by
            taken_over_by = taken_over_by or exc
            if running and this_task is not None:
                this_task.cancel()

        heartbeat = asyncio.create_task(self.state.keep_alive(job, on_lost))
        keep_work = run.request.keep_work
        still_ours = True  # whether the job's state and work folder are still this run's
        try:
            try:
                return await self._pipeline(run)
            finally:
                running = False
        except (JobTakenOver, StateDamaged) as exc:
            # Nothing more is written: the job and its work folder are another's, or
            # the database cannot take it; finished segments stay for the next run.
            still_ours = False
            keep_work = True
            self.bus.emit(JobFailed(job=job, stage=self.stage.value, error=exc.one_line()))
            raise
        except DraptoError as exc:
            if isinstance(exc, DiskFull):
                keep_work = True  # every encoded segment stays for the rerun
            self.bus.emit(JobFailed(job=job, stage=self.stage.value, error=exc.one_line()))
            try:
                await self._save_metrics(job)
                await self.state.set_stage(job, JobStage.FAILED, exc.one_line())
            except StateDamaged:
                keep_work = True
            raise
        except asyncio.CancelledError:
            keep_work = True
            if taken_over_by is not None and this_task is not None:
                still_ours = False
                this_task.uncancel()
                error = taken_over_by.one_line()
                self.bus.emit(JobFailed(job=job, stage=self.stage.value, error=error))
                raise taken_over_by from None
            # Interrupted: finished segments stay for the next run; in-flight ones go.
            await asyncio.shield(self._interrupted(job, work))
            raise
        finally:
            self.segments_planned.set()
            heartbeat.cancel()
            partial.unlink(missing_ok=True)
            if still_ours and job in self.state.held:  # not taken over meanwhile
                if not keep_work:
                    await asyncio.to_thread(shutil.rmtree, work, True)
                with contextlib.suppress(StateDamaged):
                    await asyncio.shield(self.state.release(job))

    async def _interrupted(self, job: str, work: Path) -> None:
        for leftover in work.glob(f"*.{os.getpid()}.partial.*"):
            leftover.unlink(missing_ok=True)
        with contextlib.suppress(JobTakenOver, StateDamaged):
            await self.state.set_stage(job, JobStage.QUEUED, "interrupted")

    async def _set_stage(
        self, job: str, stage: JobStage, before: Callable[[], None] | None = None
    ) -> None:
        await self.state.set_stage(job, stage, before=before)
        self.stage = stage
        self.bus.emit(StageChanged(job=job, stage=stage.value))

    async def _analyse(self, run: _Run, beside: _Beside) -> VideoAnalysis:
        """The analysis, stored; a resumed run has it from its stored plan. The source's
        frame times, its extents and (when the job will scan for cuts) the scene scan
        start beside it."""
        job, request, media = run.job, run.request, run.media
        await self._set_stage(job, JobStage.ANALYZING)
        if run.resume is not None:
            return run.resume.analysis  # the same source and settings: the same answer
        beside.times = times_task = beside.start(asyncio.to_thread(frame_times, media.path))
        beside.extents = beside.start(asyncio.to_thread(stream_extents, media.path))
        if scans_for_cuts(request.settings, media):
            # The scene scan needs nothing that analysis finds, so it runs
            # beside it on the core that analysis leaves idle.
            beside.scan_ahead = Prefetch(
                self._stream_segments(request.settings, True, media, times_task)
            )
        shadow_crop = "crop_detection" in request.shadow
        analysis = await asyncio.to_thread(
            analyze_media, media, crop_detection=request.settings.crop or shadow_crop
        )
        await self.state.save(job, analysis=model_json(analysis))
        return analysis

    def _plan(self, run: _Run, analysis: VideoAnalysis) -> VideoPlan:
        """The video plan from the analysis, announced with its warnings (and the crop
        shadow check)."""
        plan = self.plan = VideoPlan.make(self.ffmpeg, analysis, run.request.settings)
        self._emit_analysis(run.job, plan)
        if "crop_detection" in run.request.shadow:
            self.bus.emit(crop_discrepancy(run.job, plan, analysis))
        for message in plan.warnings:
            self.bus.emit(WarningEvent(job=run.job, message=message))
        return plan

    async def _encode_segments(
        self, run: _Run, plan: VideoPlan, analysis: VideoAnalysis, beside: _Beside
    ) -> tuple[list[Segment], StoredPlan | None]:
        """Segmentation (the stored plan's segments, the scan ahead or a scan now) into the
        broker's pool; the plan is saved once it is whole. Returns the segments encoded and
        the saved plan."""
        job, request, media, resume = run.job, run.request, run.media, run.resume
        await self._set_stage(job, JobStage.SEGMENTING)
        if not plan.segmented:
            await beside.stop_scan()  # Dolby Vision encoded whole after all: stop the scan now
        segments: AsyncIterator[Segment]
        if resume is not None:
            segments = _iterate(resume.segments)
        elif beside.scan_ahead is not None:
            segments = beside.scan_ahead
        else:  # not scanned early, or not segmented
            segments = self._stream_segments(
                request.settings, plan.segmented, media, beside.source_times()
            )
        saved_plan: StoredPlan | None = resume

        async def save_plan(planned: list[Segment]) -> None:
            # Stored once the plan is whole: a resumed run skips analysis,
            # segmentation and both scans of the source.
            nonlocal saved_plan
            if resume is None:
                saved_plan = StoredPlan.measure(
                    analysis,
                    planned,
                    media,
                    await beside.source_times(),
                    await beside.source_extents(),
                    run.identity,
                )
                await self.state.save(job, plan=model_json(saved_plan, exclude={"analysis"}))
                await asyncio.to_thread(saved_plan.write_to, run.work, job)

        broker = SegmentBroker(
            job,
            plan,
            run.work,
            bus=self.bus,
            state=self.state,
            executor=self.executor,
            resources=self.resources,
            flags=self.flags,
            priority=request.priority,
            source=self.source,
            segments_planned=self.segments_planned,
            on_first_segment=lambda: self._set_stage(job, JobStage.ENCODING),
        )
        planned = await broker.run(segments, save_plan)
        if request.settings.target_vmaf is not None and plan.target_vmaf is not None:
            self.quality = QualitySummary.of(
                request.settings.target_vmaf, list(broker.quality.values())
            )
        return planned, saved_plan

    async def _shadow_scenes(
        self, run: _Run, plan: VideoPlan, planned: list[Segment], beside: _Beside
    ) -> None:
        """The scene segmentation shadow check, on a run that scanned the source."""
        if "scene_segmentation" in run.request.shadow and plan.segmented and run.resume is None:
            times = await beside.source_times()
            self.bus.emit(scene_discrepancy(run.job, planned, times, run.request.settings))

    async def _join_and_validate(
        self,
        run: _Run,
        plan: VideoPlan,
        planned: list[Segment],
        timing: StoredPlan,
        audio: list[tuple[AudioStream, Path]],
    ) -> None:
        """Join and mux the segments into the partial output and validate it against what
        it must be; the source must still be the one analysed before and after."""
        job, request, media, identity = run.job, run.request, run.media, run.identity
        await self._set_stage(job, JobStage.MUXING)
        files = [segment_file(run.work, s) for s in planned]
        extents = timing.extent_map()
        await asyncio.to_thread(check_unchanged, request.input, identity)
        await join(self.ffmpeg, media, files, timing, audio, run.work, run.partial)
        await self._set_stage(job, JobStage.VALIDATING)
        source_times = await asyncio.to_thread(source_frame_times, media.path, media.video.index)
        expected = expected_output(plan, media, extents, source_times)
        failures = await asyncio.to_thread(check_output, run.partial, expected, self.ffmpeg)
        if failures:
            raise ValidationError(request.input, failures)
        # The join and validation read the source too: it must still be the one analysed.
        await asyncio.to_thread(check_unchanged, request.input, identity)

    async def _put_output_in_place(self, run: _Run) -> None:
        """The validated partial output takes the output's name, only while this process
        still holds the job (in the same step that records it DONE)."""
        await self._set_stage(
            run.job, JobStage.DONE, before=lambda: os.replace(run.partial, run.request.output)
        )

    def _emit_analysis(self, job: str, plan: VideoPlan) -> None:
        a = plan.analysis
        self.bus.emit(
            AnalysisReady(
                job=job,
                dynamic_range=a.dynamic_range.value,
                dolby_vision_profile=a.dolby_vision.profile if a.dolby_vision else None,
                crop=plan.crop.filter() if plan.crop else None,
                width=plan.width,
                height=plan.height,
                frames=a.media.video.frame_count,
                frame_rate=float(a.media.video.frame_rate),
                crf=plan.crf,
                encoder=encoder_for(plan).name,
                segmented=plan.segmented,
                deinterlace=plan.interlace.describe() if plan.interlace else None,
                target_vmaf=plan.target_vmaf,
                crf_range=plan.crf_range if plan.target_vmaf is not None else None,
            )
        )

    async def _save_metrics(self, job: str) -> JobMetrics:
        metrics = self.monitor.metrics(job)
        await self.state.save(job, metrics=model_json(metrics))
        return metrics

    def _check_disk(self, request: EncodeRequest, analysis: VideoAnalysis, work: Path) -> None:
        media = analysis.media
        estimate = estimated_output_bytes(
            analysis.resolution_class, media.duration_s, media.size_bytes
        )
        work_parent = work.parent if work.parent.exists() else request.output.parent
        if os.stat(work_parent).st_dev == os.stat(request.output.parent).st_dev:
            check_disk(request.output.parent, 2 * estimate)
        else:
            check_disk(work_parent, estimate)
            check_disk(request.output.parent, estimate)

    def _stream_segments(
        self,
        settings: EncodeSettings,
        segmented: bool,
        media: MediaInfo,
        times: asyncio.Task[list[float]],
    ) -> AsyncIterator[Segment]:
        if not segmented:
            return stream_segments(
                media.path, min_s=1e9, max_s=1e9, scene_detection=False, times=times
            )
        return stream_segments(
            media.path,
            min_s=settings.min_segment_s,
            max_s=settings.max_segment_s,
            scene_detection=settings.scene_detection,
            times=times,
        )

    async def _encode_audio(
        self, job: str, media: MediaInfo, work: Path
    ) -> list[tuple[AudioStream, Path]]:
        async def one(stream: AudioStream) -> tuple[AudioStream, Path]:
            path = work / f"audio-{stream.index}.mka"
            started = time.monotonic()
            if not path.exists():  # present only when an earlier run of this job finished it
                partial = partial_file(path)
                await run_checked(
                    audio_argv(self.ffmpeg, media.path, stream, partial),
                    f"audio #{stream.index} encode",
                    media.path,
                )
                os.replace(partial, path)
            channels = output_channels(stream)
            self.bus.emit(
                AudioDone(
                    job=job,
                    stream=stream.index,
                    channels=channels,
                    bitrate_kbps=bitrate_kbps(channels),
                    wall_s=time.monotonic() - started,
                )
            )
            return stream, path

        return list(await asyncio.gather(*(one(s) for s in media.audio)))

    def _summary(
        self,
        request: EncodeRequest,
        media: MediaInfo,
        segments: int,
        wall: float,
        metrics: JobMetrics,
    ) -> JobSummary:
        out_bytes = request.output.stat().st_size
        frames = media.video.frame_count
        # After a resume the kept segments' frames cost this run nothing: the job's
        # rate is over the frames it encoded itself.
        encoded = sum(s.frames for s in metrics.segments) if metrics.resumed_segments else frames
        return JobSummary(
            input=str(request.input),
            output=str(request.output),
            input_bytes=media.size_bytes,
            output_bytes=out_bytes,
            reduction_percent=100.0 * (1 - out_bytes / media.size_bytes)
            if media.size_bytes
            else 0.0,
            wall_s=wall,
            frames=frames,
            encode_fps=encoded / wall if wall > 0 else 0.0,
            segments=segments,
            metrics=metrics,
            not_kept=tuple(extra.describe() for extra in media.extra_video),
            quality=self.quality,
        )


def scans_for_cuts(settings: EncodeSettings, media: MediaInfo) -> bool:
    """Whether the job will scan for scene cuts, as far as the probe can tell.

    Dolby Vision sources are left to the plan (whether it is kept decides). A file whose
    RPUs only analysis finds (no configuration record) is then encoded whole, and its
    early scan is stopped unused."""
    return settings.scene_detection and segments_video(settings, media.dolby_vision is not None)


async def _iterate(segments: list[Segment]) -> AsyncIterator[Segment]:
    for segment in segments:
        yield segment
