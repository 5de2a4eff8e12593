"""The typed events the engine emits: one discriminated union, serialisable as JSON lines."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from drapto_engine.core.flags import FlagState, FlagView
from drapto_engine.core.jobs import QueueEntry
from drapto_engine.core.metrics import ClusterWorker, JobSummary, ResourceSnapshot
from drapto_engine.core.schedule import ScheduleView
from drapto_engine.core.watching import WatchView

__all__ = ["JobSummary"]

log = logging.getLogger(__name__)


class _Event(BaseModel):
    model_config = ConfigDict(defer_build=True, frozen=True, extra="forbid")

    job: str = ""
    """The job's id (stable for an input and its output-shaping settings); empty for
    engine-wide events (flags, queue, resources)."""
    at: float = Field(default_factory=time.time)
    """Unix time the event was made."""


class StageChanged(_Event):
    type: Literal["stage"] = "stage"
    stage: str
    detail: str | None = None


class AnalysisReady(_Event):
    type: Literal["analysis"] = "analysis"
    dynamic_range: str
    dolby_vision_profile: int | None = None
    crop: str | None = None
    width: int
    height: int
    frames: int
    frame_rate: float = 0.0
    crf: int
    """The fixed CRF; with a target, the CRF a segment falls back to."""
    encoder: str
    segmented: bool = True
    deinterlace: str | None = None  # how and why, when the video is deinterlaced
    target_vmaf: float | None = None
    """The VMAF each segment's CRF is searched for (None: every segment at `crf`)."""
    crf_range: tuple[int, int] | None = None
    """With a target: the CRFs searched."""


class SegmentPlanned(_Event):
    """A segment became certain (segmentation streams them while detection runs)."""

    type: Literal["segment_planned"] = "segment_planned"
    index: int
    start_frame: int
    frames: int


class SegmentsPlanned(_Event):
    """Segmentation finished: the whole plan."""

    type: Literal["segments_planned"] = "segments_planned"
    count: int
    frames: list[int]
    """Frame count of each segment, in order."""


class SegmentStarted(_Event):
    type: Literal["segment_started"] = "segment_started"
    index: int
    attempt: int = 1
    threads: int
    host: str = ""
    """The machine encoding it ("" in events from before hosts were recorded)."""
    remote: bool = False
    """Encoded by a cluster worker rather than the engine's machine."""


class SegmentProgress(_Event):
    type: Literal["segment_progress"] = "segment_progress"
    index: int
    frame: int
    frames: int
    fps: float
    percent: float


class SegmentDone(_Event):
    type: Literal["segment_done"] = "segment_done"
    index: int
    frames: int
    size_bytes: int
    fps: float
    wall_s: float
    resumed: bool = False
    """Finished by an earlier, interrupted run and kept."""
    peak_rss_bytes: int = 0
    """The encoder's largest sampled resident memory (0: never sampled)."""
    cpu_percent: float = 0.0
    """The encoder's mean CPU use, percent of one core."""
    queue_wait_s: float = 0.0
    """From the segment being planned to its encoder starting."""
    attempts: int = 1
    host: str = ""
    """The machine that encoded it (for a resumed one as the state store kept it; ""
    when recorded before hosts were kept)."""
    remote: bool = False
    shipped_bytes: int = 0
    """Source and encoded bytes sent to and from a remote worker."""
    runs: int = 1
    """Encoders started for the last attempt (more than 1: a worker was lost)."""
    crf: int | None = None
    """The CRF the segment was encoded at (None: recorded before CRFs were kept)."""
    vmaf: float | None = None
    """With a target VMAF: the kept encode's measured mean VMAF (None in CRF mode)."""
    vmaf_low5: float | None = None
    """Its 5% low: the mean of the worst 5% of its frames' scores."""
    probes: list[tuple[int, float]] = Field(default_factory=list)
    """The search's probes, [CRF, VMAF] in the order they ran."""
    target: str | None = None
    """With a target: met (in the band), missed (outside it after the correction), bound
    (the CRF range's bound could not reach it), fallback (measuring failed: the fixed
    CRF) or short (too few frames to measure: the fixed CRF)."""


class SegmentFailed(_Event):
    type: Literal["segment_failed"] = "segment_failed"
    index: int
    attempt: int
    error: str
    will_retry: bool
    host: str = ""


class AudioDone(_Event):
    type: Literal["audio_done"] = "audio_done"
    stream: int
    channels: int
    bitrate_kbps: int
    wall_s: float


class WarningEvent(_Event):
    """Something a person should know that fails nothing (its wire type is "warning")."""

    type: Literal["warning"] = "warning"
    message: str


class JobFinished(_Event):
    type: Literal["job_finished"] = "job_finished"
    summary: JobSummary


class JobFailed(_Event):
    type: Literal["job_failed"] = "job_failed"
    stage: str
    error: str


class FlagChanged(_Event):
    type: Literal["flag"] = "flag"
    flag: FlagView
    previous: FlagState
    reason: str | None = None


class RolledBack(_Event):
    """A job failed at a stage a flag's strategy owns and is retried with the flag off."""

    type: Literal["rollback"] = "rollback"
    flag: str
    stage: str
    error: str
    entry: int | None = None


class Discrepancy(_Event):
    """A shadowed flag's two strategies disagreed (or agreed: metric 0) on a job."""

    type: Literal["discrepancy"] = "discrepancy"
    flag: str
    metric: float
    """0 when the strategies agree; see docs/configuration.md for each flag's measure."""
    used: str
    """What the strategy in use decided."""
    shadow: str
    """What the shadowed strategy would have decided."""


class Alert(_Event):
    """A monitoring threshold crossed."""

    type: Literal["alert"] = "alert"
    kind: Literal["memory_pressure", "slow_encoder", "stalled"]
    index: int | None = None
    message: str


class EntryChanged(_Event):
    type: Literal["entry"] = "entry"
    entry: QueueEntry


class EntryRemoved(_Event):
    type: Literal["entry_removed"] = "entry_removed"
    entry_id: int


class QueueStateChanged(_Event):
    type: Literal["queue_state"] = "queue_state"
    paused: bool
    workers: int


class ResourcesSampled(_Event):
    type: Literal["resources"] = "resources"
    snapshot: ResourceSnapshot


class ClusterSampled(_Event):
    """The engine's cluster workers, sent with each resource sample while it hosts one."""

    type: Literal["cluster"] = "cluster"
    address: str
    workers: tuple[ClusterWorker, ...]
    local_slots: bool = True
    """False when the engine encodes here only while no worker is usable (`--workers 0`)."""


class WatchChanged(_Event):
    """A watched folder was added, or how its watching goes changed (missing, a rescan,
    files settling or queued)."""

    type: Literal["watch"] = "watch"
    view: WatchView


class WatchRemoved(_Event):
    type: Literal["watch_removed"] = "watch_removed"
    path: str


class ScheduleChanged(_Event):
    """The schedule's state changed: a window opened or closed, the override, yielding."""

    type: Literal["schedule"] = "schedule"
    view: ScheduleView


Event = Annotated[
    StageChanged
    | AnalysisReady
    | SegmentPlanned
    | SegmentsPlanned
    | SegmentStarted
    | SegmentProgress
    | SegmentDone
    | SegmentFailed
    | AudioDone
    | WarningEvent
    | JobFinished
    | JobFailed
    | FlagChanged
    | RolledBack
    | Discrepancy
    | Alert
    | EntryChanged
    | EntryRemoved
    | QueueStateChanged
    | ResourcesSampled
    | ClusterSampled
    | WatchChanged
    | WatchRemoved
    | ScheduleChanged,
    Field(discriminator="type"),
]
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event, config=ConfigDict(defer_build=True))

Subscriber = Callable[[Event], None]


class EventBus:
    """Engine -> subscribers, one way. A failing subscriber never stops the engine."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        self._subscribers.append(subscriber)
        return lambda: self._subscribers.remove(subscriber)

    def emit(self, event: Event) -> None:
        for subscriber in list(self._subscribers):
            try:
                subscriber(event)
            except Exception:
                log.exception("event subscriber failed on %s", event.type)
