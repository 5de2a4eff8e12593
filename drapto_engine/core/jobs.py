"""Queue entries and the per-job options a user may set (queue.toml, config defaults, the API)."""

from __future__ import annotations

import time
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from drapto_engine.core.metrics import JobSummary


class JobOptions(BaseModel):
    """Options of one job; None means "take it from the next layer down" (defaults, config)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    preset: int | None = Field(default=None, ge=-1, le=13)
    """SVT-AV1 preset (default 6)."""
    crf: int | None = Field(default=None, ge=0, le=63)
    """CRF; unset takes the resolution class default."""
    min_segment_s: float | None = Field(default=None, gt=0)
    """Shortest segment in seconds."""
    max_segment_s: float | None = Field(default=None, gt=0)
    """Longest segment in seconds."""
    hdr10_fallback: bool | None = None
    """Encode a Dolby Vision profile that cannot be kept as plain HDR10 instead of failing."""
    output_dir: Path | None = None
    """Folder outputs go to, mirroring the input's folder structure; unset: beside the input."""
    overwrite: bool | None = None
    """Replace an existing output that is not a finished drapto encode of the same input."""
    keep_work: bool | None = None
    """Keep the work directory of a failed job."""
    work_dir: Path | None = None
    """Where work directories go; unset: beside the output."""
    force: bool | None = None
    """Encode a source that is already AV1 (by default it is skipped, or refused)."""

    def over(self, base: JobOptions) -> JobOptions:
        """These options with every unset one taken from `base`."""
        mine = self.model_dump(exclude_none=True)
        return base.model_copy(update=mine)


class EntryStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    SKIPPED = "skipped"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL_STATUSES = frozenset(
    {EntryStatus.DONE, EntryStatus.SKIPPED, EntryStatus.FAILED, EntryStatus.CANCELLED}
)


class QueueEntry(BaseModel):
    """One file in the library queue; its job (once started) has the segment detail."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: int
    input: str
    output: str
    position: int
    status: EntryStatus = EntryStatus.QUEUED
    options: JobOptions = JobOptions()
    flags: dict[str, str] = Field(default_factory=dict)
    """Flag states for this job only (a batch's [flags] table), over the engine's."""
    batch: str | None = None
    """The batch (queue file run) that added it, if any."""
    job: str | None = None
    """The job id once the entry started."""
    stage: str | None = None
    """The job's stage while it runs."""
    error: str | None = None
    """Why it failed."""
    note: str | None = None
    """Why it was skipped, or what else a person should know."""
    summary: JobSummary | None = None
    added: float = Field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    dynamic_range: str | None = None
    """What analysis found (sdr, hdr10, hlg, dolby_vision), kept for finished entries."""
    rollbacks: list[str] = Field(default_factory=list)
    """Flags turned off for this job after a failure (see the README's rollback rules)."""
