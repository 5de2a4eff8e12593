"""The space drapto saved: one record per encoded file, and `drapto stats`'s report."""

from __future__ import annotations

import time
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

OTHER = "other"
"""The folder of the report's files that no watched folder or trash folder names."""


class SavingState(StrEnum):
    ENCODED = "encoded"
    """The AV1 file was written beside (or away from) its source, which stays."""
    REPLACED = "replaced"
    """The AV1 file took the source's place; the original is in the trash."""
    EMPTIED = "emptied"
    """Replaced, and the original deleted from the trash after keep_days."""
    RESTORED = "restored"
    """Replaced, then `drapto restore` put the original back: nothing is saved."""


COUNTED = (SavingState.ENCODED, SavingState.REPLACED, SavingState.EMPTIED)
"""The records the report counts: a restored original saved nothing."""


class Saving(BaseModel):
    """One encoded file: its source, sizes before and after, and (for a replace) where the
    original waits in the trash and until when."""

    model_config = ConfigDict(defer_build=True, frozen=True, extra="forbid")

    key: str
    """Unique per encode (the job's or the replace's id): a record is written once."""
    path: str
    """The source's path (the original's, for a replace)."""
    output: str
    """The AV1 file's path."""
    root: str | None = None
    """The watched folder (the trash folder's parent) it belongs to; None: none."""
    bytes_before: int = Field(ge=0)
    bytes_after: int = Field(ge=0)
    time: float = Field(default_factory=time.time)
    state: SavingState = SavingState.ENCODED
    trash: str | None = None
    """Where the original is while it is in the trash."""
    keep_until: float | None = None
    """When the original is deleted from the trash."""


class Totals(BaseModel):
    """Files and bytes, as `drapto stats --json` prints them."""

    model_config = ConfigDict(defer_build=True, frozen=True, extra="forbid")

    files: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    bytes_saved: int = 0

    def plus(self, before: int, after: int, files: int = 1) -> Totals:
        return Totals(
            files=self.files + files,
            bytes_before=self.bytes_before + before,
            bytes_after=self.bytes_after + after,
            bytes_saved=self.bytes_saved + before - after,
        )


class SavingsReport(BaseModel):
    """`drapto stats`: in total, per watched folder (`other` for the rest) and per day
    (UTC, `YYYY-MM-DD`, the day the file was encoded)."""

    model_config = ConfigDict(defer_build=True, frozen=True, extra="forbid")

    total: Totals = Totals()
    folders: dict[str, Totals] = Field(default_factory=dict)
    days: dict[str, Totals] = Field(default_factory=dict)


def day_of(stamp: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(stamp))


def size_text(count: int) -> str:
    """1.2 GB, 340 MB, 12 kB, 512 B (powers of 1000, as file managers show sizes)."""
    value = float(count)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def saved_text(totals: Totals) -> str:
    """`3 files, 4.1 GB -> 1.9 GB, saved 2.2 GB (54%)`."""
    share = totals.bytes_saved / totals.bytes_before if totals.bytes_before else 0.0
    files = "1 file" if totals.files == 1 else f"{totals.files} files"
    return (
        f"{files}, {size_text(totals.bytes_before)} -> {size_text(totals.bytes_after)},"
        f" saved {size_text(totals.bytes_saved)} ({share:.0%})"
    )
