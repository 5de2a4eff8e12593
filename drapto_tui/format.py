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
    done_frames = sum(s.frames for s in job.segments.values() if s.state == "done")
    size = sum(s.size_bytes or 0 for s in job.segments.values() if s.state == "done")
    fraction = min(1.0, job.frames_done / total) if total else 0.0
    # a segment that has just started has no speed yet: it counts at the last one's
    finished = [s for s in job.segments.values() if s.state == "done" and s.fps > 0]
    recent = max(finished, key=lambda s: s.index).fps if finished else 0.0
    fps = sum(s.fps or recent for s in job.segments.values() if s.state == "running")
    estimate = int(size * total / done_frames) if done_frames else None
    remaining = total * (1 - fraction)
    eta = remaining / fps if fps > 0 else None
    return Progress(fraction, fps, size, estimate, eta)


def badge(job: JobView | None) -> str:
    if job is None or job.analysis is None:
        return ""
    return BADGES.get(job.analysis.dynamic_range, job.analysis.dynamic_range.upper())


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


@dataclass(frozen=True)
class QueueCounts:
    """What only entry changes alter: counts by status and the running entries."""

    counts: dict[str, int]
    finished: int
    running: tuple[int, ...]
    active: int
    mean_job_s: float | None = None
    """Mean wall time of the jobs finished in this queue (what a queued one may take)."""


def queue_counts(snapshot: EngineSnapshot) -> QueueCounts:
    """One pass over the whole queue; redo it only when an entry changed."""
    counts: dict[str, int] = {}
    running: list[int] = []
    walls: list[float] = []
    for entry in snapshot.entries:
        counts[entry.status.value] = counts.get(entry.status.value, 0) + 1
        if entry.status is EntryStatus.RUNNING:
            running.append(entry.id)
        elif entry.status is EntryStatus.DONE and entry.summary and entry.summary.wall_s > 0:
            walls.append(entry.summary.wall_s)
    finished = sum(counts.get(s, 0) for s in ("done", "skipped", "failed"))
    active = len(snapshot.entries) - counts.get("cancelled", 0)
    mean = sum(walls) / len(walls) if walls else None
    return QueueCounts(counts, finished, tuple(running), active, mean)


def queue_totals(
    snapshot: EngineSnapshot,
    counts: QueueCounts | None = None,
    lookup: Callable[[int], QueueEntry | None] | None = None,
) -> QueueTotals:
    """Whole-queue progress: finished entries count whole, running ones by their frames.
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
