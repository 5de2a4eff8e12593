"""The typed events the engine emits: one discriminated union, serialisable as JSON lines."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

log = logging.getLogger(__name__)


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    job: str
    """The job's id (stable for an input and its output-shaping settings)."""
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
    crf: int
    encoder: str


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


class SegmentFailed(_Event):
    type: Literal["segment_failed"] = "segment_failed"
    index: int
    attempt: int
    error: str
    will_retry: bool


class AudioDone(_Event):
    type: Literal["audio_done"] = "audio_done"
    stream: int
    channels: int
    bitrate_kbps: int
    wall_s: float


class Warning(_Event):
    type: Literal["warning"] = "warning"
    message: str


class JobSummary(BaseModel):
    """The closing figures of one encode."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input: str
    output: str
    input_bytes: int
    output_bytes: int
    reduction_percent: float
    wall_s: float
    frames: int
    encode_fps: float
    segments: int


class JobFinished(_Event):
    type: Literal["job_finished"] = "job_finished"
    summary: JobSummary


class JobFailed(_Event):
    type: Literal["job_failed"] = "job_failed"
    stage: str
    error: str


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
    | Warning
    | JobFinished
    | JobFailed,
    Field(discriminator="type"),
]
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)

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
