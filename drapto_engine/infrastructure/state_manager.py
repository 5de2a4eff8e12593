"""The StateManager: every change of a job's stage or a segment's state, checked and
written through the state store as the job's holder, and the heartbeat of its lock."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

from drapto_engine.core.errors import DraptoError
from drapto_engine.core.interfaces import JobStore
from drapto_engine.core.models import SegmentState
from drapto_engine.core.state import (
    JobRecord,
    JobStage,
    JobTakenOver,
    NotHolder,
    SegmentRecord,
    StateDamaged,
)

HEARTBEAT_S = 2.0


class StateManager:
    """Every stage change goes through here: checked, then written before it is relied on.

    Every write is made as the job's holder (this process): one to a job that another
    drapto has taken over raises JobTakenOver and changes nothing."""

    def __init__(self, store: JobStore, pid: int | None = None) -> None:
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

    async def set_probes(self, job_id: str, index: int, probes: str) -> None:
        await self._as_holder(
            job_id, lambda: self.store.set_probes(job_id, self.pid, index, probes)
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
