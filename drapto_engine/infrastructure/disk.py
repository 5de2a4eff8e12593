"""Free disk: the output size a job is expected to reach, and the check that a folder's
filesystem can hold it before anything is written."""

from __future__ import annotations

import shutil
from pathlib import Path

from drapto_engine.core.errors import DraptoError
from drapto_engine.core.models import ResolutionClass

GIB = 1 << 30
# Output bitrate guesses (bits/s) for the disk estimate; the source size caps them.
OUTPUT_BITRATE = {ResolutionClass.SD: 3e6, ResolutionClass.HD: 10e6, ResolutionClass.UHD: 30e6}
DISK_MARGIN = 256 << 20


def estimated_output_bytes(
    resolution: ResolutionClass, duration_s: float, source_bytes: int
) -> int:
    return int(min(source_bytes, OUTPUT_BITRATE[resolution] * duration_s / 8))


def check_disk(folder: Path, needed: int) -> None:
    """Refuse up front when a folder's filesystem cannot hold `needed` bytes."""
    free = shutil.disk_usage(folder).free
    if free < needed + DISK_MARGIN:
        raise DraptoError(
            f"not enough free disk: {free / GIB:.1f} GiB free, about "
            f"{(needed + DISK_MARGIN) / GIB:.1f} GiB needed for segments and output",
            folder,
            hint="free some space or choose another --work-dir / output",
        )
