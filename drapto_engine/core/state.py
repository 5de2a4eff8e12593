"""Job and segment stages and the transitions between them (an illegal one is a bug)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
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
    """The finished segment plan and source timing (orchestrator.StoredPlan), for resume."""
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


HEARTBEAT_S = 2.0


class StateManager:
    """Every stage change goes through here: checked, then written before it is relied on.

    Every write is made as the job's holder (this process): one to a job that another
    drapto has taken over raises JobTakenOver and changes nothing."""

    def __init__(self, store: StoreLike, pid: int | None = None) -> None:
        self.store = store
        self.pid = pid or os.getpid()
        self.held: dict[str, str] = {}
        """The jobs this process holds: id -> input."""
        self._inputs: dict[str, str] = {}
        """Every job this process began: id -> input (for messages after a takeover)."""

    async def begin(self, job: JobRecord) -> tuple[JobRecord, list[JobRecord]]:
        """Take the job (refusing one that a live process holds, or whose output a live
        process is writing for another job), recover it if a previous run was
        interrupted, and drop older jobs for the same output whose source or settings
        differ. Returns the job and the dropped jobs."""
        claim = await asyncio.to_thread(self.store.claim, job, self.pid, set(self.held))
        if claim.holder is not None:
            who = (
                "this drapto"
                if claim.holder == self.pid
                else f"another drapto (process {claim.holder})"
            )
            blocker = claim.blocker
            if blocker is None or blocker.input == job.input:
                raise DraptoError(
                    f"is being encoded by {who}", job.input, hint="wait for it or stop it"
                )
            origin = (
                f"from {blocker.input}"
                if claim.holder == self.pid
                else f"process {claim.holder}, from {blocker.input}"
            )
            raise DraptoError(
                f"its output {job.output} is being written by "
                + ("this drapto" if claim.holder == self.pid else "another drapto")
                + f" ({origin})",
                job.input,
                hint="wait for it or stop it",
            )
        self.held[job.id] = self._inputs[job.id] = job.input
        stored = await asyncio.to_thread(self.store.job, job.id)
        assert stored is not None
        if stored.stage is not JobStage.QUEUED:
            await self.set_stage(job.id, JobStage.QUEUED)  # interrupted, failed or redone
        for segment in (await asyncio.to_thread(self.store.segments, job.id)).values():
            if segment.state is SegmentState.RUNNING:
                await self.set_segment(job.id, segment.index, SegmentState.PENDING)
        refreshed = await asyncio.to_thread(self.store.job, job.id)
        assert refreshed is not None
        return refreshed, claim.dropped

    async def _as_holder(self, job_id: str, call: Callable[[], None]) -> None:
        try:
            await asyncio.to_thread(call)
        except NotHolder as exc:
            self.held.pop(job_id, None)
            raise JobTakenOver(self._inputs.get(job_id, job_id), exc.holder) from None

    async def set_stage(
        self,
        job_id: str,
        stage: JobStage,
        error: str | None = None,
        *,
        before: Callable[[], None] | None = None,
    ) -> None:
        """`before` runs once this process is known to hold the job, in the same
        transaction as the change (a rename that must not follow a takeover)."""
        await self._as_holder(
            job_id,
            lambda: self.store.set_stage(job_id, self.pid, stage, error, before=before),
        )

    async def set_unheld_stage(self, job_id: str, stage: JobStage, error: str | None) -> None:
        """A change to a job no process holds any more (the engine cancelling a job its
        orchestrator has let go of); refused, like any write, once another holds it."""
        await self._as_holder(
            job_id, lambda: self.store.set_stage(job_id, self.pid, stage, error, unheld=True)
        )

    async def save(self, job_id: str, **fields: str | None) -> None:
        await self._as_holder(job_id, lambda: self.store.set_job(job_id, self.pid, **fields))

    async def forget_work(self, job_id: str) -> None:
        """Start the job again from its source: its analysis, plan and segments go."""
        await self._as_holder(job_id, lambda: self.store.forget_work(job_id, self.pid))

    async def segments(self, job_id: str) -> dict[int, SegmentRecord]:
        return await asyncio.to_thread(self.store.segments, job_id)

    async def plan_segment(self, job_id: str, index: int, start_frame: int, end_frame: int) -> None:
        await self._as_holder(
            job_id,
            lambda: self.store.put_segment(job_id, self.pid, index, start_frame, end_frame),
        )

    async def set_segment(
        self,
        job_id: str,
        index: int,
        state: SegmentState,
        *,
        before: Callable[[], None] | None = None,
        **fields: float | int | str | None,
    ) -> None:
        await self._as_holder(
            job_id,
            lambda: self.store.set_segment(job_id, self.pid, index, state, before=before, **fields),
        )

    async def keep_alive(self, job_id: str, on_lost: Callable[[DraptoError], None]) -> None:
        """Heartbeat the job's lock until cancelled; `on_lost` hears of a takeover (or of
        a database that can no longer be written)."""
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            try:
                await self._as_holder(job_id, lambda: self.store.heartbeat(job_id, self.pid))
            except (JobTakenOver, StateDamaged) as exc:
                on_lost(exc)
                return

    async def release(self, job_id: str) -> None:
        self.held.pop(job_id, None)
        self._inputs.pop(job_id, None)
        await asyncio.to_thread(self.store.release, job_id, self.pid)
