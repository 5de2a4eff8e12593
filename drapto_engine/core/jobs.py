"""Queue entries and the per-job options a user may set (queue.toml, config defaults, the API)."""

from __future__ import annotations

import math
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StrictBool,
    StrictInt,
    ValidationInfo,
    field_validator,
    model_validator,
)

from drapto_engine.core.metrics import JobSummary
from drapto_engine.core.problems import shown

PRESET_MIN, PRESET_MAX = -2, 13
"""SVT-AV1 4.2's presets (`ffmpeg -h encoder=libsvtav1`: "from -2 to 13")."""
CRF_MIN, CRF_MAX = 1, 63
"""SVT-AV1's CRF range (ffmpeg's 0 means "unset", which would silently take the default)."""

Seconds = Annotated[float, Strict(), Field(gt=0, allow_inf_nan=False)]
"""A finite positive number of seconds; a whole number (5) is one, true is not."""


def _path_text(value: object) -> object:
    """A path as a settings file writes it: text naming something, or a Path."""
    if isinstance(value, Path):
        return value
    if not isinstance(value, str):
        raise ValueError(f"must be a path (text in quotes), not {shown(value)}")
    if not value.strip():
        raise ValueError("must not be empty")
    if "\0" in value:
        raise ValueError("must not contain a NUL character")
    return value


SettingPath = Annotated[Path, BeforeValidator(_path_text)]
"""A folder or file named in a settings file (strict: text, never a number)."""

TARGET_VMAF_MIN, TARGET_VMAF_MAX = 50.0, 99.0
"""The target VMAF a job may ask for (a mean over a segment's frames)."""
DEFAULT_CRF_RANGE = (10, 63)
"""The CRFs a target-quality search may choose from, unless crf_range says otherwise:
SVT-AV1's whole range above 10. On the 1080p benchmark file a target of 93 needed more
than CRF 55 in two of nine segments, and on the 360p file CRF 50 and more in easy
scenes (bench/README.md); CRF 15 scores above 97 on all content measured."""


def parse_crf_range(text: str) -> tuple[int, int]:
    """`MIN-MAX` as a person writes it (`20-40`, `20 - 40`); ValueError if not."""
    low, sep, high = text.partition("-")
    if not (sep and low.strip().isdecimal() and high.strip().isdecimal()):
        raise ValueError(f"must be MIN-MAX, two whole CRFs (e.g. 15-50), not {text!r}")
    return int(low), int(high)


def _crf_range(value: object) -> object:
    """`"20-40"` (text) or `[20, 40]` (two whole numbers), checked against CRF_MIN..CRF_MAX."""
    if isinstance(value, str):
        low, high = parse_crf_range(value)
    elif (
        isinstance(value, list | tuple)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        low, high = value
    else:
        raise ValueError(f'must be "MIN-MAX" (e.g. "15-50") or [MIN, MAX], not {shown(value)}')
    if not CRF_MIN <= low < high <= CRF_MAX:
        raise ValueError(
            f"must be two CRFs from {CRF_MIN} to {CRF_MAX}, the first lower, not {low}-{high}"
        )
    return (low, high)


CrfRange = Annotated[tuple[int, int], BeforeValidator(_crf_range)]
"""The CRF bounds of a target-quality search."""
TargetVmaf = Annotated[
    float, Strict(), Field(ge=TARGET_VMAF_MIN, le=TARGET_VMAF_MAX, allow_inf_nan=False)
]


class JobOptions(BaseModel):
    """Options of one job; None means "take it from the next layer down" (defaults, config).

    Types are strict (`crf = true` is refused, not read as 1), numbers finite, and
    min_segment_s may not be more than max_segment_s. These fields and ranges are the one
    definition the queue file, the config file and the command line's options share.
    """

    model_config = ConfigDict(defer_build=True, frozen=True, extra="forbid")

    preset: StrictInt | None = Field(default=None, ge=PRESET_MIN, le=PRESET_MAX)
    """SVT-AV1 preset (default 6)."""
    crf: StrictInt | None = Field(default=None, ge=CRF_MIN, le=CRF_MAX)
    """CRF; unset takes the resolution class default."""
    target_vmaf: TargetVmaf | None = None
    """Choose each segment's CRF so that its measured mean VMAF lands on this (50-99);
    not with crf."""
    crf_range: CrfRange | None = None
    """The CRFs target_vmaf may choose from, "MIN-MAX" (default 10-63)."""
    min_segment_s: Seconds | None = None
    """Shortest segment in seconds."""
    max_segment_s: Seconds | None = None
    """Longest segment in seconds."""
    hdr10_fallback: StrictBool | None = None
    """Encode a Dolby Vision profile that cannot be kept as plain HDR10 instead of failing."""
    output_dir: SettingPath | None = None
    """Folder outputs go to, mirroring the input's folder structure; unset: beside the input."""
    overwrite: StrictBool | None = None
    """Replace an existing output that is not a finished drapto encode of the same input."""
    keep_work: StrictBool | None = None
    """Keep the work directory of a failed job."""
    work_dir: SettingPath | None = None
    """Where work directories go; unset: beside the output."""
    force: StrictBool | None = None
    """Encode a source that is already AV1 (by default it is skipped, or refused)."""
    replace: StrictBool | None = None
    """Put the encode in the source's place once it validates; the original goes to the trash."""
    min_saving: float | None = Field(default=None, ge=0.0, lt=1.0)
    """With replace: the least saving (0.10 = 10% smaller) for which the original is replaced."""
    keep_days: StrictInt | None = Field(default=None, ge=0)
    """With replace: days an original stays in the trash before it is deleted."""
    trash_dir: SettingPath | None = None
    """With replace: the trash folder; unset: `.drapto-trash` in the source's folder."""

    @model_validator(mode="after")
    def _one_way_to_choose_crf(self) -> JobOptions:
        if self.crf is not None and self.target_vmaf is not None:
            raise ValueError(CRF_AND_TARGET)
        return self

    @field_validator("max_segment_s")
    @classmethod
    def _not_below_min(cls, value: float | None, info: ValidationInfo) -> float | None:
        low = info.data.get("min_segment_s")
        if value is not None and low is not None and value < low:
            raise ValueError(segment_problem(low, value))
        return value

    @field_validator("min_saving", mode="before")
    @classmethod
    def _strict_number(cls, value: object) -> object:
        """min_saving as strict as the other numbers: never true or "0.1"; finite."""
        if value is None:
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"must be a number, not {shown(value)}")
        if not math.isfinite(value):
            raise ValueError(f"must be a finite number, not {shown(value)}")
        return value

    def segment_problem(self) -> str | None:
        """Why min_segment_s and max_segment_s do not go together, if they do not (for
        options put together from layers, which `over` does not check)."""
        low, high = self.min_segment_s, self.max_segment_s
        if low is not None and high is not None and high < low:
            return segment_problem(low, high)
        return None

    def over(self, base: JobOptions) -> JobOptions:
        """These options with every unset one taken from `base`."""
        mine = self.model_dump(exclude_none=True)
        # a fixed CRF and a target are two ways to choose it: the upper layer's way wins
        if "crf" in mine:
            mine["target_vmaf"] = None
        elif "target_vmaf" in mine:
            mine["crf"] = None
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

    model_config = ConfigDict(defer_build=True, frozen=True, extra="forbid")

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
    """Flags turned off for this job after a failure (see docs/configuration.md, rollback)."""


CRF_AND_TARGET = "crf and target_vmaf do not go together: a fixed CRF or a target, not both"


def segment_problem(low: float, high: float) -> str:
    """The message for a max_segment_s below min_segment_s."""
    return f"must be at least min_segment_s ({low:g}), not {high:g}"
