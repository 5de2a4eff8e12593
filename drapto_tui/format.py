"""What the TUI shows of an entry or a job, as plain values: pure, tested without a screen."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from drapto_engine.core.api import EngineSnapshot, JobView
from drapto_engine.core.jobs import EntryStatus, QueueEntry

BADGES = {"sdr": "SDR", "hdr10": "HDR10", "hlg": "HLG", "dolby_vision": "DV"}


@dataclass(frozen=True)
class Progress:
    """How far a job is, from its segments."""

    fraction: float
    """0..1 of the job's frames encoded."""
    fps: float
    """Frames per second of its encoders right now (done: the whole job's)."""
    size_bytes: int
    """Bytes of finished segments."""
    estimated_bytes: int | None
    eta_s: float | None


def job_progress(entry: QueueEntry, job: JobView | None) -> Progress:
    if entry.status in (EntryStatus.DONE, EntryStatus.SKIPPED):
        s = entry.summary
        size = s.output_bytes if s else 0
        return Progress(1.0, s.encode_fps if s else 0.0, size, size or None, 0.0)
    if job is None or not job.segments:
        return Progress(0.0, 0.0, 0, None, None)
    total = job.analysis.frames if job.analysis else sum(s.frames for s in job.segments.values())
    size = sum(s.size_bytes or 0 for s in job.segments.values() if s.state == "done")
    fraction = min(1.0, job.frames_done / total) if total else 0.0
    # a segment that has just started has no speed yet: it counts at the last one's
    finished = [s for s in job.segments.values() if s.state == "done" and s.fps > 0]
    recent = max(finished, key=lambda s: s.index).fps if finished else 0.0
    fps = sum(s.fps or recent for s in job.segments.values() if s.state == "running")
    estimate = estimated_bytes(job, total)
    remaining = total * (1 - fraction)
    eta = remaining / fps if fps > 0 else None
    return Progress(fraction, fps, size, estimate, eta)


ESTIMATE_AFTER = 2
"""Finished segments a size estimate waits for (one segment alone misleads)."""


def estimated_bytes(job: JobView, total_frames: int) -> int | None:
    """The output's size at the bytes per frame of every segment encoded so far."""
    measured = [
        s for s in job.segments.values() if s.state == "done" and s.size_bytes and s.frames > 0
    ]
    if not measured or len(measured) < min(ESTIMATE_AFTER, len(job.segments)):
        return None
    frames = sum(s.frames for s in measured)
    size = sum(s.size_bytes or 0 for s in measured)
    return round(size / frames * total_frames)


def badge(job: JobView | None, entry: QueueEntry | None = None) -> str:
    """The dynamic range: from the job's analysis, or what the entry kept of it."""
    found = job.analysis.dynamic_range if job is not None and job.analysis is not None else None
    found = found or (entry.dynamic_range if entry is not None else None)
    return BADGES.get(found, found.upper()) if found else ""


def status_text(entry: QueueEntry) -> str:
    if entry.status is EntryStatus.RUNNING and entry.stage:
        return entry.stage
    return entry.status.value


def size(value: int | None) -> str:
    if value is None:
        return "-"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if value >= scale:
            return f"{value / scale:.1f} {unit}"
    return f"{value} B"


def short_size(value: int | None) -> str:
    """A size in at most 5 characters (a segment cell): 912, 271k, 1.4M, 12M, 3.1G."""
    if value is None:
        return "-"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale * 0.9995:
            scaled = value / scale
            return f"{scaled:.1f}{unit}" if scaled < 9.95 else f"{scaled:.0f}{unit}"
    return str(value)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def bar(fraction: float, width: int = 10) -> str:
    """A text progress bar: it fits a table cell and every terminal."""
    filled = round(max(0.0, min(1.0, fraction)) * width)
    return "█" * filled + "░" * (width - filled) + f" {fraction * 100:3.0f}%"


def name(entry: QueueEntry) -> str:
    return Path(entry.input).name


@dataclass(frozen=True)
class QueueTotals:
    counts: dict[str, int]
    fraction: float
    fps: float
    eta_s: float | None
    eta_at_least: bool = False
    """The ETA leaves out queued entries (nothing finished yet to time them by)."""


WAITING = (EntryStatus.QUEUED, EntryStatus.RUNNING)


@dataclass(frozen=True)
class QueueCounts:
    """What only entry changes alter: counts by status and the running entries."""

    counts: dict[str, int]
    finished: int
    """Entries of this run that ended (done, skipped, failed or cancelled)."""
    running: tuple[int, ...]
    active: int
    """Entries of this run: waiting, running, or ended since the run began."""
    mean_job_s: float | None = None
    """Mean wall time of the jobs finished in this queue (what a queued one may take)."""
    run: frozenset[int] = frozenset()
    """Entries waiting or running since the queue was last idle: the queue's progress
    counts only these (entries that ended before, or were cleared, do not)."""


def queue_counts(snapshot: EngineSnapshot, run: frozenset[int] = frozenset()) -> QueueCounts:
    """One pass over the whole queue; redo it only when an entry changed. `run` is the
    previous call's: entries join it while waiting or running, and it ends (empties)
    when nothing waits or runs."""
    counts: dict[str, int] = {}
    running: list[int] = []
    walls: list[float] = []
    waiting: set[int] = set()
    ended = 0
    for entry in snapshot.entries:
        counts[entry.status.value] = counts.get(entry.status.value, 0) + 1
        if entry.status in WAITING:
            waiting.add(entry.id)
            if entry.status is EntryStatus.RUNNING:
                running.append(entry.id)
        elif entry.id in run:
            ended += 1
        if entry.status is EntryStatus.DONE and entry.summary and entry.summary.wall_s > 0:
            walls.append(entry.summary.wall_s)
    mean = sum(walls) / len(walls) if walls else None
    if not waiting:
        return QueueCounts(counts, 0, (), 0, mean)
    return QueueCounts(
        counts, ended, tuple(running), len(waiting) + ended, mean, run | frozenset(waiting)
    )


def queue_totals(
    snapshot: EngineSnapshot,
    counts: QueueCounts | None = None,
    lookup: Callable[[int], QueueEntry | None] | None = None,
) -> QueueTotals:
    """Whole-queue progress over the entries of this run (see QueueCounts): ended ones
    count whole, running ones by their frames, waiting ones nothing.
    The ETA is the running jobs' frames left at their speed now, plus the queued
    entries at the mean time of the jobs finished so far, as many at once as run now.
    With cached `counts` and an indexed `lookup` it costs only the running entries."""
    counts = counts or queue_counts(snapshot)
    if lookup is None:
        lookup = {e.id: e for e in snapshot.entries}.get
    done = float(counts.finished)
    fps = 0.0
    remaining_frames = 0.0
    unknown = False
    for entry_id in counts.running:
        entry = lookup(entry_id)
        if entry is None:
            continue
        job = snapshot.jobs.get(entry.job or "")
        progress = job_progress(entry, job)
        done += progress.fraction
        fps += progress.fps
        if job is not None and job.analysis is not None:
            remaining_frames += job.analysis.frames * (1 - progress.fraction)
        else:
            unknown = True
    fraction = done / counts.active if counts.active else 0.0
    waiting = counts.counts.get("queued", 0)
    eta: float | None = remaining_frames / fps if fps > 0 else None
    at_least = unknown
    if waiting:
        if counts.mean_job_s is not None:
            queued_s = waiting * counts.mean_job_s / max(1, len(counts.running))
            eta = (eta or 0.0) + queued_s
        else:
            at_least = True
    if eta is None and not (waiting and counts.mean_job_s is not None):
        at_least = False
    return QueueTotals(counts.counts, fraction, fps, eta, at_least)


def totals_line(totals: QueueTotals, paused: bool) -> str:
    """The whole queue in one line, most important first (a narrow screen cuts the end)."""
    parts = ["[$warning]paused[/]" if paused else "", f"queue {bar(totals.fraction, 16)}"]
    if totals.eta_s is not None:
        parts.append(f"ETA {'≥' if totals.eta_at_least else ''}{duration(totals.eta_s)}")
    if totals.fps:
        parts.append(f"{totals.fps:.1f} fps")
    order = ("running", "queued", "done", "failed", "skipped", "cancelled")
    counts = ", ".join(f"{totals.counts[s]} {s}" for s in order if totals.counts.get(s))
    parts.append(counts or "empty")
    return "  ".join(p for p in parts if p)


def clock(at: float | None) -> str:
    return time.strftime("%H:%M:%S", time.localtime(at)) if at else "-"
