"""The Monitor's figures and thresholds, fed the events an orchestrator emits."""

from __future__ import annotations

from drapto_engine.core.events import (
    Alert,
    AnalysisReady,
    Event,
    EventBus,
    ResourcesSampled,
    SegmentDone,
    SegmentProgress,
    SegmentStarted,
    StageChanged,
)
from drapto_engine.core.metrics import EncoderSample, ResourceSnapshot
from drapto_engine.monitoring import JOB_GRACE_S, Monitor


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def setup() -> tuple[Monitor, Clock, list[Event]]:
    bus, clock, seen = EventBus(), Clock(), []
    bus.subscribe(seen.append)
    monitor = Monitor(bus, stall_s=60, slow_ratio=3, clock=clock)
    bus.emit(
        AnalysisReady(
            job="j", dynamic_range="sdr", width=64, height=64, frames=300,
            frame_rate=25.0, crf=30, encoder="svt-av1",
        )
    )  # fmt: skip
    return monitor, clock, seen


def done(bus: EventBus, index: int, fps: float, **extra: float) -> None:
    bus.emit(
        SegmentDone(
            job="j", index=index, frames=100, size_bytes=1000, fps=fps, wall_s=100 / fps,
            **extra,  # type: ignore[arg-type]
        )
    )  # fmt: skip


def test_job_metrics_aggregate_segment_figures() -> None:
    monitor, clock, _ = setup()
    bus = monitor.bus
    bus.emit(StageChanged(job="j", stage="encoding"))
    for index, fps in enumerate([50.0, 100.0, 75.0]):
        bus.emit(SegmentStarted(job="j", index=index, threads=1))
        done(
            bus, index, fps, peak_rss_bytes=1000 * (index + 1), cpu_percent=90.0, queue_wait_s=index
        )
    bus.emit(SegmentDone(job="j", index=3, frames=100, size_bytes=1, fps=0, wall_s=0, resumed=True))
    clock.now += 12
    m = monitor.metrics("j")
    assert [s.index for s in m.segments] == [0, 1, 2]
    assert (m.encoded_segments, m.resumed_segments) == (3, 1)
    assert m.median_fps == 75.0 and m.median_speed == 3.0  # 75 fps of 25 fps video
    assert m.peak_rss_bytes == 3000 and m.mean_cpu_percent == 90.0
    assert m.mean_queue_wait_s == 1.0
    assert m.stage_s == {"encoding": 12.0}


def test_an_encoder_far_slower_than_the_median_raises_one_alert() -> None:
    monitor, clock, seen = setup()
    bus = monitor.bus
    for index in range(3):
        done(bus, index, 90.0)
    clock.now += JOB_GRACE_S
    bus.emit(SegmentStarted(job="j", index=5, threads=1))
    clock.now += 5  # too early to judge ffmpeg's running average
    bus.emit(SegmentProgress(job="j", index=5, frame=50, frames=100, fps=10.0, percent=50))
    assert not [e for e in seen if isinstance(e, Alert)]
    clock.now += 10
    for _ in range(2):
        bus.emit(SegmentProgress(job="j", index=5, frame=60, frames=100, fps=20.0, percent=60))
    alerts = [e for e in seen if isinstance(e, Alert)]
    assert [(a.kind, a.index) for a in alerts] == [("slow_encoder", 5)]
    assert monitor.metrics("j").alerts == {"slow_encoder": 1}
    bus.emit(SegmentProgress(job="j", index=5, frame=70, frames=100, fps=40.0, percent=70))
    assert len([e for e in seen if isinstance(e, Alert)]) == 1  # 40 fps is within 3x


def load(bus: EventBus, cpu_percent: float, encoder_percent: float) -> None:
    """A resource sample: the machine's CPU, and one encoder's (percent of one core)."""
    encoder = EncoderSample(
        pid=1, segment=5, job="j", cpu_percent=encoder_percent, rss_bytes=1, suspended=False
    )
    snapshot = ResourceSnapshot(
        time=0, cpu_percent=cpu_percent, memory_total=8, memory_available=4,
        reserve_bytes=1, workers=2, running=1, suspended=0, encoders=(encoder,),
    )  # fmt: skip
    bus.emit(ResourcesSampled(snapshot=snapshot))


def slow_segment(
    monitor: Monitor, clock: Clock, after_s: float, machine: tuple[float, float] | None = None
) -> list[Alert]:
    """Three segments at 90 fps, then one at 10 fps judged `after_s` into the job, with
    `machine` (CPU, encoder's CPU) sampled just before."""
    bus = monitor.bus
    seen: list[Alert] = []
    bus.subscribe(lambda e: seen.append(e) if isinstance(e, Alert) else None)
    for index in range(3):
        done(bus, index, 90.0)
    clock.now += after_s
    bus.emit(SegmentStarted(job="j", index=5, threads=1))
    clock.now += 15
    if machine is not None:
        load(bus, *machine)
    bus.emit(SegmentProgress(job="j", index=5, frame=60, frames=100, fps=10.0, percent=60))
    return seen


class TestSlowEncoderRule:
    """slow_encoder: slow against its own job's segments, after the job's first 30 s,
    and never while other programs load the machine."""

    def test_never_in_a_jobs_first_30_seconds(self) -> None:
        monitor, clock, _ = setup()  # a 24 s clip is over before the rule applies
        assert slow_segment(monitor, clock, after_s=0) == []

    def test_fires_on_a_quiet_machine_once_the_job_has_run_a_while(self) -> None:
        monitor, clock, _ = setup()
        monitor.cores = 2
        # 55% of 2 cores, 50% of them the encoder's: others take 5%
        alerts = slow_segment(monitor, clock, after_s=JOB_GRACE_S, machine=(55, 100))
        assert [(a.kind, a.index) for a in alerts] == [("slow_encoder", 5)]

    def test_not_while_another_program_shares_the_cores(self) -> None:
        monitor, clock, _ = setup()
        monitor.cores = 2
        # the machine is full, the encoder has half of it: others take 50%
        alerts = slow_segment(monitor, clock, after_s=JOB_GRACE_S, machine=(100, 100))
        assert alerts == []
        assert monitor.others_busy(clock.now)

    def test_a_stale_load_sample_says_nothing(self) -> None:
        monitor, clock, _ = setup()
        monitor.cores = 2
        load(monitor.bus, cpu_percent=100, encoder_percent=0)
        alerts = slow_segment(monitor, clock, after_s=JOB_GRACE_S)  # the sample is 45 s old
        assert [a.kind for a in alerts] == ["slow_encoder"]

    def test_not_against_too_few_finished_segments(self) -> None:
        monitor, clock, seen = setup()
        bus = monitor.bus
        done(bus, 0, 90.0)
        clock.now += JOB_GRACE_S
        bus.emit(SegmentStarted(job="j", index=5, threads=1))
        clock.now += 15
        bus.emit(SegmentProgress(job="j", index=5, frame=60, frames=100, fps=10.0, percent=60))
        assert not [e for e in seen if isinstance(e, Alert)]


def test_an_encoder_without_progress_for_the_stall_time_raises_one_alert() -> None:
    monitor, clock, seen = setup()
    bus = monitor.bus
    bus.emit(SegmentStarted(job="j", index=0, threads=1))
    bus.emit(SegmentStarted(job="j", index=1, threads=1))
    clock.now += 30
    bus.emit(SegmentProgress(job="j", index=1, frame=5, frames=100, fps=1.0, percent=5))
    clock.now += 31
    monitor.check_stalls()
    monitor.check_stalls()
    alerts = [e for e in seen if isinstance(e, Alert)]
    assert [(a.kind, a.index) for a in alerts] == [("stalled", 0)]
    clock.now += 30
    monitor.check_stalls()
    assert [a.index for a in seen if isinstance(a, Alert)] == [0, 1]


def test_rollback_picks_the_flag_whose_strategy_owns_the_failed_stage() -> None:
    from drapto_engine.core.models import EncodeSettings
    from drapto_engine.monitoring import rollback_flag

    settings = EncodeSettings()
    assert rollback_flag("encoding", None, settings) == "segmented_encoding"
    assert rollback_flag("segmenting", None, settings) == "scene_segmentation"
    assert rollback_flag("analyzing", None, settings) is None
    whole = settings.model_copy(update={"segmented": False, "scene_detection": False})
    assert rollback_flag("encoding", None, whole) is None


def test_a_run_that_ended_leaves_no_encoder_to_call_stalled() -> None:
    """Cancelled, interrupted or failed: its encoders are gone, so none of them stalls."""
    from drapto_engine.core.events import EntryChanged, JobFailed
    from drapto_engine.core.jobs import EntryStatus, QueueEntry

    monitor, clock, seen = setup()
    bus = monitor.bus
    entry = QueueEntry(id=1, input="/f/a.mkv", output="/f/a.av1.mkv", position=0, job="j")
    for status in (EntryStatus.CANCELLED, EntryStatus.QUEUED, EntryStatus.FAILED):
        bus.emit(EntryChanged(entry=entry.model_copy(update={"status": EntryStatus.RUNNING})))
        bus.emit(SegmentStarted(job="j", index=0, threads=1))
        bus.emit(SegmentStarted(job="j", index=1, threads=1))
        bus.emit(EntryChanged(entry=entry.model_copy(update={"status": status})))
        clock.now += 120
        monitor.check_stalls()
    bus.emit(SegmentStarted(job="j", index=2, threads=1))  # a rolled-back try failed
    bus.emit(JobFailed(job="j", stage="encoding", error="svt failed"))
    clock.now += 120
    monitor.check_stalls()
    assert not [e for e in seen if isinstance(e, Alert)]


async def test_time_the_engine_did_not_run_is_no_encoder_s_stall() -> None:
    """A stopped engine (SIGSTOP, a suspended machine, a blocked loop) reads no progress:
    once it runs again, its watchdog does not blame the encoders for that time."""
    import asyncio
    import time

    bus, seen = EventBus(), []
    bus.subscribe(seen.append)
    monitor = Monitor(bus, stall_s=0.4)
    monitor.start()
    try:
        bus.emit(SegmentStarted(job="j", index=0, threads=1))
        await asyncio.sleep(0.15)
        bus.emit(SegmentProgress(job="j", index=0, frame=5, frames=100, fps=1.0, percent=5))
        time.sleep(1.0)  # the whole process stands still, as under SIGSTOP
        await asyncio.sleep(0.2)
        bus.emit(SegmentProgress(job="j", index=0, frame=9, frames=100, fps=1.0, percent=9))
        assert not [e for e in seen if isinstance(e, Alert)]
        deadline = time.monotonic() + 5  # running, and silent for longer than the stall time
        while not seen[-1:] or not isinstance(seen[-1], Alert):
            assert time.monotonic() < deadline, "no stalled alert"
            await asyncio.sleep(0.05)
        assert [(e.kind, e.index) for e in seen if isinstance(e, Alert)] == [("stalled", 0)]
    finally:
        await monitor.stop()
