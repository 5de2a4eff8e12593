"""A job's work folder: its name, the files in it (segments, their range notes, the
stored plan) and partial files, named after the process writing them so that a later
run removes what a killed one left."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import av

from drapto_engine.core.models import Segment
from drapto_engine.infrastructure.extents import stream_extents
from drapto_engine.infrastructure.store import pid_alive
from drapto_engine.services.encoding.svt import SEGMENT_SUFFIX

WORK_PREFIX = ".drapto-work-"
WORK_PLAN = "plan.json"
"""The finished plan, kept in the work folder too: a lost state database costs nothing."""


def partial_file(path: Path) -> Path:
    """The name a work file (segment, audio) is written under by this process."""
    return path.with_name(f"{path.stem}.{os.getpid()}.partial{path.suffix}")


def scratch_of(partial: Path) -> Path:
    """A folder beside a partial file for the other files of its making (target
    quality's probes and measured encodes): a leftover, like the file, once its process
    is gone."""
    return partial.with_suffix(".quality")


def _abandoned(path: Path, pid: int | None) -> bool:
    """A partial file of this process, or of one that is gone (killed mid-write)."""
    return pid is None or pid == os.getpid() or not pid_alive(pid)


def leftovers(work: Path, output: Path) -> list[Path]:
    """Partial files (and scratch_of folders) that no live process is writing."""
    found: list[Path] = []
    if work.is_dir():
        for path in work.glob("*.partial.*"):
            pid = path.name.split(".")[-3] if path.name.count(".") >= 3 else ""
            if _abandoned(path, int(pid) if pid.isdigit() else None):
                found.append(path)
    prefix, suffix = f".{output.stem}.drapto-partial", output.suffix
    with contextlib.suppress(OSError):
        for path in output.parent.iterdir():
            name = path.name
            if name.startswith(prefix) and name.endswith(suffix):
                pid = name[len(prefix) : len(name) - len(suffix)].lstrip("-")
                if _abandoned(path, int(pid) if pid.isdigit() else None):
                    found.append(path)
    return found


def segment_file(work: Path, segment: Segment) -> Path:
    return work / f"segment-{segment.index:05d}{SEGMENT_SUFFIX}"


def range_file(path: Path) -> Path:
    return path.with_suffix(".range")


def put_in_place(partial: Path, path: Path, segment: Segment) -> None:
    """Name a finished segment, noting the frames it holds beside it: if the state
    database is lost, the file still says what it is."""
    range_file(path).write_text(f"{segment.start_frame} {segment.end_frame}\n", encoding="utf-8")
    os.replace(partial, path)


def made_for(path: Path, segment: Segment) -> bool:
    """Whether a segment file on disk was encoded for exactly this segment's frames."""
    try:
        noted = range_file(path).read_text(encoding="utf-8").split()
    except OSError:
        return False
    return path.exists() and noted == [str(segment.start_frame), str(segment.end_frame)]


def video_packets(path: Path) -> int:
    """Frames in an encoded segment; 0 for a file ffmpeg left empty or unreadable."""
    try:
        extents = stream_extents(path)
    except (av.error.FFmpegError, OSError):
        return 0
    return next(iter(extents.values())).packets if extents else 0
