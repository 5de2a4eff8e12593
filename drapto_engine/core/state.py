"""Job and segment stages and the transitions between them (an illegal one is a bug)."""

from __future__ import annotations

import asyncio
import os
from enum import StrEnum
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from drapto_engine.core.errors import DraptoError
from drapto_engine.core.models import SegmentState

if TYPE_CHECKING:
    from drapto_engine.core.interfaces import StoreLike


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

    model_config = ConfigDict(frozen=True)

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
    """The finished segment plan and source timing (orchestrator.StoredPlan), for resume."""
    lock_pid: int | None = None
    lock_heartbeat: float | None = None


class SegmentRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

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


class IllegalTransition(RuntimeError):
    """A stage change the state machine does not allow: a bug, never a user error."""


def check_job(old: JobStage, new: JobStage) -> None:
    if new != old and new not in JOB_TRANSITIONS[old]:
        raise IllegalTransition(f"job stage {old.value} -> {new.value} is not allowed")


def check_segment(old: SegmentState, new: SegmentState) -> None:
    if new != old and new not in SEGMENT_TRANSITIONS[old]:
        raise IllegalTransition(f"segment state {old.value} -> {new.value} is not allowed")


HEARTBEAT_S = 2.0


class StateManager:
    """Every stage change goes through here: checked, then written before it is relied on."""

    def __init__(self, store: StoreLike, pid: int | None = None) -> None:
        self.store = store
        self.pid = pid or os.getpid()

    async def begin(self, job: JobRecord) -> tuple[JobRecord, list[JobRecord]]:
        """Take the job (refusing one another live process holds), recover it if a
        previous run was interrupted, and drop older jobs for the same output whose
        source or settings differ. Returns the job and the dropped jobs."""
        dropped = [
            other
            for other in await asyncio.to_thread(self.store.jobs_for_output, job.output)
            if other.id != job.id
        ]
        for other in dropped:
            await asyncio.to_thread(self.store.delete_job, other.id)
        await asyncio.to_thread(self.store.add_job, job)
        holder = await asyncio.to_thread(self.store.acquire, job.id, self.pid)
        if holder is not None:
            raise DraptoError(
                f"is being encoded by another drapto (process {holder})",
                job.input,
                hint="wait for it or stop it",
            )
        stored = await asyncio.to_thread(self.store.job, job.id)
        assert stored is not None
        if stored.stage is not JobStage.QUEUED:
            await self.set_stage(job.id, JobStage.QUEUED)  # interrupted, failed or redone
        for segment in (await asyncio.to_thread(self.store.segments, job.id)).values():
            if segment.state is SegmentState.RUNNING:
                await self.set_segment(job.id, segment.index, SegmentState.PENDING)
        refreshed = await asyncio.to_thread(self.store.job, job.id)
        assert refreshed is not None
        return refreshed, dropped

    async def set_stage(self, job_id: str, stage: JobStage, error: str | None = None) -> None:
        current = await asyncio.to_thread(self.store.job, job_id)
        if current is None:
            raise IllegalTransition(f"no job {job_id}")
        check_job(current.stage, stage)
        await asyncio.to_thread(self.store.set_job, job_id, stage=stage.value, error=error)

    async def save(self, job_id: str, **fields: str | None) -> None:
        await asyncio.to_thread(self.store.set_job, job_id, **fields)

    async def segments(self, job_id: str) -> dict[int, SegmentRecord]:
        return await asyncio.to_thread(self.store.segments, job_id)

    async def plan_segment(self, job_id: str, index: int, start_frame: int, end_frame: int) -> None:
        await asyncio.to_thread(self.store.put_segment, job_id, index, start_frame, end_frame)

    async def set_segment(
        self, job_id: str, index: int, state: SegmentState, **fields: float | int | None
    ) -> None:
        current = (await asyncio.to_thread(self.store.segments, job_id)).get(index)
        if current is None:
            raise IllegalTransition(f"no segment {index} in job {job_id}")
        check_segment(current.state, state)
        await asyncio.to_thread(self.store.set_segment, job_id, index, state, **fields)

    async def keep_alive(self, job_id: str) -> None:
        """Heartbeat the job's lock until cancelled."""
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            await asyncio.to_thread(self.store.heartbeat, job_id, self.pid)

    async def release(self, job_id: str) -> None:
        await asyncio.to_thread(self.store.release, job_id, self.pid)
