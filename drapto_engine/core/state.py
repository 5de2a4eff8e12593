"""Job and segment stages and the transitions between them (an illegal one is a bug),
and the records the state store keeps of them. The StateManager that writes them lives
in infrastructure/state_manager.py."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from drapto_engine.core.errors import DraptoError
from drapto_engine.core.models import SegmentState


class JobStage(StrEnum):
    QUEUED = "queued"
    ANALYZING = "analyzing"
    SEGMENTING = "segmenting"
    ENCODING = "encoding"
    MUXING = "muxing"
    VALIDATING = "validating"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE = frozenset(
    {
        JobStage.ANALYZING,
        JobStage.SEGMENTING,
        JobStage.ENCODING,
        JobStage.MUXING,
        JobStage.VALIDATING,
    }
)

# Any active stage may also go back to QUEUED: the job was interrupted (Ctrl-C,
# SIGTERM, a crash found on the next start) and will resume from its stored state.
JOB_TRANSITIONS: dict[JobStage, frozenset[JobStage]] = {
    JobStage.QUEUED: frozenset({JobStage.ANALYZING, JobStage.CANCELLED}),
    JobStage.ANALYZING: frozenset(
        {JobStage.SEGMENTING, JobStage.FAILED, JobStage.CANCELLED, JobStage.QUEUED}
    ),
    JobStage.SEGMENTING: frozenset(
        {JobStage.ENCODING, JobStage.FAILED, JobStage.CANCELLED, JobStage.QUEUED}
    ),
    JobStage.ENCODING: frozenset(
        {JobStage.MUXING, JobStage.FAILED, JobStage.CANCELLED, JobStage.QUEUED}
    ),
    JobStage.MUXING: frozenset(
        {JobStage.VALIDATING, JobStage.FAILED, JobStage.CANCELLED, JobStage.QUEUED}
    ),
    JobStage.VALIDATING: frozenset(
        {JobStage.DONE, JobStage.FAILED, JobStage.CANCELLED, JobStage.QUEUED}
    ),
    JobStage.DONE: frozenset({JobStage.QUEUED}),  # the output was removed: encode again
    JobStage.FAILED: frozenset({JobStage.QUEUED}),  # retry
    JobStage.CANCELLED: frozenset({JobStage.QUEUED}),
}

SEGMENT_TRANSITIONS: dict[SegmentState, frozenset[SegmentState]] = {
    SegmentState.PENDING: frozenset({SegmentState.RUNNING}),
    SegmentState.RUNNING: frozenset({SegmentState.DONE, SegmentState.FAILED, SegmentState.PENDING}),
    SegmentState.FAILED: frozenset({SegmentState.RUNNING, SegmentState.PENDING}),
    # a finished segment whose file is missing or damaged on resume is redone
    SegmentState.DONE: frozenset({SegmentState.PENDING}),
}


class JobRecord(BaseModel):
    """A job as stored: identity, stage, and what was learnt about it."""

    model_config = ConfigDict(defer_build=True, frozen=True)

    id: str
    input: str
    input_size: int
    input_mtime_ns: int
    output: str
    settings: str
    stage: JobStage = JobStage.QUEUED
    error: str | None = None
    analysis: str | None = None
    metrics: str | None = None
    plan: str | None = None
    """The finished segment plan and source timing (services/resume.py: StoredPlan), for resume."""
    lock_pid: int | None = None
    lock_heartbeat: float | None = None


class SegmentRecord(BaseModel):
    model_config = ConfigDict(defer_build=True, frozen=True)

    index: int
    start_frame: int
    end_frame: int
    state: SegmentState
    attempts: int = 0
    encodes: int = 0
    """How many times an encoder was started for this segment, over all runs."""
    size_bytes: int | None = None
    fps: float | None = None
    wall_s: float | None = None
    host: str | None = None
    """The machine that encoded it (None: recorded before hosts were kept)."""
    remote: bool = False
    """Encoded by a cluster worker rather than the engine's machine."""
    crf: int | None = None
    vmaf: float | None = None
    vmaf_low5: float | None = None
    probes: str | None = None
    """JSON [[crf, vmaf], ...]: the target search's probes, kept as they finish."""
    target: str | None = None


class IllegalTransition(RuntimeError):
    """A stage change the state machine does not allow: a bug, never a user error."""


class NotHolder(RuntimeError):
    """A write to a job this process no longer holds (the store raises it)."""

    def __init__(self, job_id: str, holder: int | None) -> None:
        self.job_id = job_id
        self.holder = holder
        super().__init__(f"job {job_id} is held by {holder}")


class JobTakenOver(DraptoError):
    """Another drapto took this job over (its lock went stale): stop, touch nothing."""

    def __init__(self, path: str, holder: int | None) -> None:
        self.holder = holder
        who = f"process {holder}" if holder is not None else "another drapto"
        super().__init__(f"job taken over by {who}", path)


class StateDamaged(DraptoError):
    """The state database is damaged or unusable (found after it was opened)."""


def check_job(old: JobStage, new: JobStage) -> None:
    if new != old and new not in JOB_TRANSITIONS[old]:
        raise IllegalTransition(f"job stage {old.value} -> {new.value} is not allowed")


def check_segment(old: SegmentState, new: SegmentState) -> None:
    if new != old and new not in SEGMENT_TRANSITIONS[old]:
        raise IllegalTransition(f"segment state {old.value} -> {new.value} is not allowed")
