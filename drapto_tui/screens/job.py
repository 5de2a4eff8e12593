"""One job: its stage timeline, what analysis found, and a live grid of its segments."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.markup import escape
from textual.screen import Screen
from textual.widgets import Header, Static

from drapto_engine.core.api import JobView
from drapto_engine.core.jobs import EntryStatus, QueueEntry
from drapto_tui import presentation
from drapto_tui.mirror import EngineMirror
from drapto_tui.widgets.footer import KeyBar
from drapto_tui.widgets.segment_grid import SegmentGrid

STAGES = ("analyzing", "segmenting", "encoding", "muxing", "validating", "done")
BADGE_VARIABLES = {
    "sdr": "$badge-sdr",
    "hdr10": "$badge-hdr",
    "hlg": "$badge-hdr",
    "dolby_vision": "$badge-dv",
}


ENDED = {
    EntryStatus.FAILED: "failed",
    EntryStatus.CANCELLED: "cancelled",
    EntryStatus.SKIPPED: "skipped",
}


def ending(entry: QueueEntry) -> str:
    """How an entry that ended without an output ended, and why."""
    if entry.status is EntryStatus.FAILED:
        return f"[$error]failed: {escape(presentation.reason(entry))}[/]"
    why = f": {escape(entry.note)}" if entry.note else ""
    return f"[$warning]{ENDED[entry.status]}{why}[/]"


def timeline(job: JobView | None, entry: QueueEntry | None = None) -> str:
    """The stages the entry's job went through; an entry that failed, was cancelled or
    skipped says so and why, whether or not its job had started."""
    ended = entry is not None and entry.status in ENDED
    if job is None or not job.stages:
        return ending(entry) if entry is not None and ended else "not started"
    parts = []
    times = job.stages
    for i, stage in enumerate(STAGES):
        at = times.get(stage)
        if at is None:
            if not ended:
                parts.append(f"[$text-muted]{stage}[/]")
            continue
        following = [times[s] for s in STAGES[i + 1 :] if s in times]
        took = f" {presentation.duration(following[0] - at)}" if following else ""
        done = following or stage == "done"
        mark = "[$success]✓[/]" if done else "[$error]✗[/]" if ended else "[$accent]▶[/]"
        parts.append(f"{mark} {stage} {presentation.clock(at)}{took}")
    if entry is not None and ended:
        parts.append(ending(entry))
    elif job.error:
        parts.append(f"[$error]failed: {escape(job.error)}[/]")
    return "  ".join(parts)


def analysis(job: JobView | None, entry: QueueEntry | None = None) -> str:
    if job is None or job.analysis is None:
        waiting = entry is None or entry.status in (EntryStatus.QUEUED, EntryStatus.RUNNING)
        return "analysis: pending" if waiting else "analysis: none (the job ended before it)"
    a = job.analysis
    dv = f" profile {a.dolby_vision_profile}" if a.dolby_vision_profile else ""
    colour = BADGE_VARIABLES.get(a.dynamic_range, "$foreground")
    badge = presentation.BADGES.get(a.dynamic_range, a.dynamic_range)
    rate = f"CRF {a.crf}"
    if a.target_vmaf is not None and a.crf_range is not None:
        rate = f"target VMAF {a.target_vmaf:g} (CRF {a.crf_range[0]}-{a.crf_range[1]})"
    lines = [
        f"[b {colour}]{badge}{dv}[/], {a.width}x{a.height}, "
        f"{a.frames} frames at {a.frame_rate:.3f} fps",
        f"crop {a.crop or 'none'}, {rate}, {a.encoder}, "
        f"{'segmented' if a.segmented else 'whole file'}",
    ]
    if job.audio:
        lines.append("audio " + "; ".join(job.audio))
    if job.rollbacks:
        lines.append(f"[$warning]rolled back: {', '.join(job.rollbacks)} off[/]")
    return "\n".join(lines)


class JobScreen(Screen[None]):
    BINDINGS = [
        Binding("escape,backspace", "app.pop_screen", "Back"),
        Binding("c", "cancel", "Cancel job"),
        Binding("r", "retry", "Retry"),
    ]

    def __init__(self, mirror: EngineMirror, entry_id: int) -> None:
        super().__init__()
        self.mirror = mirror
        self.entry_id = entry_id
        self._shown: QueueEntry | None = None
        self._texts: dict[str, str] = {}
        self._composed = False

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="job-info"):
            yield Static(id="job-title")
            yield Static(id="job-progress")
            yield Static(id="timeline")
            yield Static(id="analysis")
        yield SegmentGrid(id="segments")
        yield KeyBar()

    def on_mount(self) -> None:
        self._composed = True
        self.refresh_from_engine(force=True)

    def job(self) -> JobView | None:
        entry = self.mirror.entry(self.entry_id)
        return self.mirror.state.jobs.get(entry.job or "") if entry else None

    def refresh_from_engine(self, force: bool = False) -> None:
        """Redraw when events touched this job or its entry (a tick otherwise costs nothing)."""
        if not self._composed:  # a tick between push and mount: its parts are not there yet
            return
        entry = self.mirror.entry(self.entry_id)
        job = self.job()
        touched = self.mirror.take_job_dirty(entry.job if entry else None)
        if not (force or touched or entry is not self._shown):
            return
        self._shown = entry
        if entry is None:
            self.query_one("#job-title", Static).update("this entry was removed")
            return
        progress = presentation.job_progress(entry, job)
        running = entry.status is EntryStatus.RUNNING
        eta = f"  ETA {presentation.duration(progress.eta_s)}" if running else ""
        self._show(
            "#job-title",
            f"[b]{escape(self.mirror.label(entry))}[/b]  [$text-muted]{escape(entry.output)}[/]",
        )
        progress_line = (
            f"{presentation.status_text(entry)}  {presentation.bar(progress.fraction, 20)}  {progress.fps:.1f} fps  "
            f"{presentation.size(progress.size_bytes or None)} of ~{presentation.size(progress.estimated_bytes)}{eta}"
        )
        self._show("#job-progress", progress_line, layout=False)  # one line, always
        self._show("#timeline", timeline(job, entry))
        self._show("#analysis", analysis(job, entry))
        self.query_one(SegmentGrid).show(job)

    def _show(self, selector: str, text: str, layout: bool = True) -> None:
        """Update a part only when its text changed (an update lays the screen out again)."""
        if self._texts.get(selector) != text:
            self._texts[selector] = text
            self.query_one(selector, Static).update(text, layout=layout)

    async def action_cancel(self) -> None:
        await self.app.run_action(f"cancel_entry({self.entry_id})")

    async def action_retry(self) -> None:
        await self.app.run_action(f"retry({self.entry_id})")
