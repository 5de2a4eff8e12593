"""Protocols the lower layers implement for the core (the state store).

Protocols that name service types (the encoder, the segment executor) live with those
services: the core imports nothing above itself (the import-linter contracts in
pyproject.toml)."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Protocol

from drapto_engine.core.models import SegmentState
from drapto_engine.core.state import JobRecord, JobStage, SegmentRecord


class JobStore(Protocol):
    """What the StateManager needs from a store (infrastructure/store.py implements it).

    Every write names the writing process (`pid`) and raises state.NotHolder when that
    process does not hold the job."""

    def job(self, job_id: str) -> JobRecord | None: ...
    def claim(self, job: JobRecord, pid: int, mine: Collection[str] = ()) -> ClaimAnswer: ...
    def set_job(self, job_id: str, pid: int, **fields: str | None) -> None: ...
    def set_stage(
        self,
        job_id: str,
        pid: int,
        stage: JobStage,
        error: str | None = None,
        *,
        unheld: bool = False,
        before: Callable[[], None] | None = None,
    ) -> None: ...
    def heartbeat(self, job_id: str, pid: int) -> None: ...
    def release(self, job_id: str, pid: int) -> None: ...
    def forget_work(self, job_id: str, pid: int) -> None: ...
    def segments(self, job_id: str) -> dict[int, SegmentRecord]: ...
    def put_segment(
        self, job_id: str, pid: int, index: int, start_frame: int, end_frame: int
    ) -> None: ...
    def set_segment(
        self,
        job_id: str,
        pid: int,
        index: int,
        state: SegmentState,
        *,
        before: Callable[[], None] | None = None,
        **fields: float | int | str | None,
    ) -> None: ...
    def set_probes(self, job_id: str, pid: int, index: int, probes: str) -> None: ...


class ClaimAnswer(Protocol):
    """The answer of JobStore.claim: a live holder refusing it, or the dropped jobs."""

    @property
    def holder(self) -> int | None: ...
    @property
    def blocker(self) -> JobRecord | None: ...
    @property
    def dropped(self) -> list[JobRecord]: ...
