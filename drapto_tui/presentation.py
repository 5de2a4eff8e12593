"""What the TUI shows of an entry or a job, as plain values: pure, tested without a screen."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from drapto_engine.core.api import EngineSnapshot, JobView
from drapto_engine.core.jobs import EntryStatus, QueueEntry
from drapto_engine.core.savings import Totals, size_text

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


NO_PROGRESS = Progress(0.0, 0.0, 0, None, None)


def job_progress(entry: QueueEntry, job: JobView | None) -> Progress:
    """Done and skipped entries are whole; only a running one has figures of its own (a
    queued, failed or cancelled entry's job is an earlier run's, and shows nothing)."""
    if entry.status in (EntryStatus.DONE, EntryStatus.SKIPPED):
        s = entry.summary
        size = s.output_bytes if s else 0
        return Progress(1.0, s.encode_fps if s else 0.0, size, size or None, 0.0)
    if entry.status is not EntryStatus.RUNNING or job is None or not job.segments:
        return NO_PROGRESS
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


def reason(entry: QueueEntry) -> str:
    """Why an entry failed, without its own path (the screen names the file already)."""
    return (entry.error or "no reason given").removeprefix(f"{entry.input}: ")


def labels(entries: Iterable[QueueEntry]) -> dict[int, str]:
    """The entries whose file names repeat in the queue, by id: each as the fewest
    folders above its name that tell it apart from the others of that name."""
    by_name: dict[str, list[QueueEntry]] = {}
    for entry in entries:
        by_name.setdefault(Path(entry.input).name, []).append(entry)
    shown: dict[int, str] = {}
    for same in by_name.values():
        if len(same) < 2:
            continue
        parts = {e.id: Path(e.input).parent.parts for e in same}
        deepest = max(len(p) for p in parts.values())
        for depth in range(1, deepest + 1):
            tails = {i: p[-depth:] for i, p in parts.items()}
            if len(set(tails.values())) == len(tails) or depth == deepest:
                break
        for entry in same:
            folders = "/".join(tails[entry.id]).removeprefix("/")
            shown[entry.id] = f"{folders}/{Path(entry.input).name}"
    return shown


def fit(text: str, width: int) -> str:
    """`text` in `width` characters: the end is cut, with a mark."""
    return text if len(text) <= width else text[: width - 1] + "…"


def fit_middle(text: str, width: int) -> str:
    """`text` in `width` characters, its middle cut: a folder's start and a name's end stay."""
    if len(text) <= width:
        return text
    head = (width - 1) // 2
    return text[:head] + "…" + text[len(text) - (width - 1 - head) :]


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
    """Entries of this run that were done or skipped."""
    running: tuple[int, ...]
    active: int
    """Entries of this run: waiting, running, or done or skipped since the run began
    (one that failed or was cancelled is no work done, nor work left)."""
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
        elif entry.id in run and entry.status in (EntryStatus.DONE, EntryStatus.SKIPPED):
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
    """Whole-queue progress over the entries of this run (see QueueCounts): done and
    skipped ones count whole, failed and cancelled ones not at all, running ones by their frames, waiting ones nothing.
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


def saved_part(saved: Totals | None) -> str:
    """`saved 2.2 GB (54%)`: the space drapto saved (drapto stats), once it saved any."""
    if saved is None or not saved.files:
        return ""
    share = saved.bytes_saved / saved.bytes_before if saved.bytes_before else 0.0
    return f"saved {size_text(saved.bytes_saved)} ({share:.0%})"


def totals_line(
    totals: QueueTotals, paused: bool, width: int = 1000, saved: Totals | None = None
) -> str:
    """The whole queue in one line of at most `width` characters: where room is short,
    the speed goes first, then the ETA, then the bar narrows; the counts by status
    (a failure among them) always stay whole. The space saved ends the line where it
    fits beside all that."""
    order = ("running", "queued", "done", "failed", "skipped", "cancelled")
    counts = ", ".join(f"{totals.counts[s]} {s}" for s in order if totals.counts.get(s))
    eta = f"ETA {'≥' if totals.eta_at_least else ''}{duration(totals.eta_s)}"
    fps = f"{totals.fps:.1f} fps" if totals.fps else ""
    choices = [(16, eta, fps), (16, eta, ""), (10, eta, ""), (10, "", "")]
    for bar_width, eta_part, fps_part in choices:
        parts = [
            "paused" if paused else "",
            f"queue {bar(totals.fraction, bar_width)}",
            eta_part if totals.eta_s is not None else "",
            fps_part,
            counts or "empty",
        ]
        line = "  ".join(p for p in parts if p)
        if len(line) <= width:
            break
    extra = saved_part(saved)
    if extra and len(line) + 2 + len(extra) <= width:
        line = f"{line}  {extra}"
    return line.replace("paused", "[$warning]paused[/]", 1) if paused else line


def clock(at: float | None) -> str:
    return time.strftime("%H:%M:%S", time.localtime(at)) if at else "-"
