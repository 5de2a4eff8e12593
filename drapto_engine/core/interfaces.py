"""Protocols the services implement; the orchestrator depends on these, not on modules."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from drapto_engine.core.models import Segment, SegmentState

if TYPE_CHECKING:
    from drapto_engine.core.state import JobRecord, SegmentRecord
    from drapto_engine.services.encoding.plan import VideoPlan


class IEncoder(Protocol):
    """Builds the ffmpeg command that encodes one segment for one dynamic range path."""

    name: str

    def segment_argv(
        self, plan: VideoPlan, segment: Segment, output: Path, threads: int
    ) -> list[str]: ...


class StoreLike(Protocol):
    """What the StateManager needs from a store (infrastructure/store.py implements it)."""

    def add_job(self, job: JobRecord) -> None: ...
    def job(self, job_id: str) -> JobRecord | None: ...
    def jobs_for_output(self, output: str) -> list[JobRecord]: ...
    def delete_job(self, job_id: str) -> None: ...
    def set_job(self, job_id: str, **fields: str | None) -> None: ...
    def acquire(self, job_id: str, pid: int) -> int | None: ...
    def heartbeat(self, job_id: str, pid: int) -> None: ...
    def release(self, job_id: str, pid: int) -> None: ...
    def segments(self, job_id: str) -> dict[int, SegmentRecord]: ...
    def put_segment(self, job_id: str, index: int, start_frame: int, end_frame: int) -> None: ...
    def set_segment(
        self, job_id: str, index: int, state: SegmentState, **fields: float | int | None
    ) -> None: ...
