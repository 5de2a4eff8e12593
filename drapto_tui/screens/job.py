"""One job: its stage timeline, what analysis found, and a live grid of its segments."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.markup import escape
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from drapto_engine.core.api import JobView
from drapto_tui import format as fmt
from drapto_tui.link import EngineLink
from drapto_tui.widgets.segment_grid import SegmentGrid

STAGES = ("analyzing", "segmenting", "encoding", "muxing", "validating", "done")


def timeline(job: JobView | None) -> str:
    if job is None:
        return "not started"
    parts = []
    times = job.stages
    for i, stage in enumerate(STAGES):
        at = times.get(stage)
        if at is None:
            parts.append(f"[$text-muted]{stage}[/]")
            continue
        following = [times[s] for s in STAGES[i + 1 :] if s in times]
        took = f" {fmt.duration(following[0] - at)}" if following else ""
        mark = "[$success]✓[/]" if following or stage == "done" else "[$accent]▶[/]"
        parts.append(f"{mark} {stage} {fmt.clock(at)}{took}")
    if job.error:
        parts.append(f"[$error]failed: {escape(job.error)}[/]")
    return "  ".join(parts)


def analysis(job: JobView | None) -> str:
    if job is None or job.analysis is None:
        return "analysis: pending"
    a = job.analysis
    dv = f" profile {a.dolby_vision_profile}" if a.dolby_vision_profile else ""
    lines = [
        f"{fmt.BADGES.get(a.dynamic_range, a.dynamic_range)}{dv}, {a.width}x{a.height}, "
        f"{a.frames} frames at {a.frame_rate:.3f} fps",
        f"crop {a.crop or 'none'}, CRF {a.crf}, {a.encoder}, "
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

    def __init__(self, link: EngineLink, entry_id: int) -> None:
        super().__init__()
        self.link = link
        self.entry_id = entry_id

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll():
            yield Static(id="job-title")
            yield Static(id="timeline")
            yield Static(id="analysis")
            yield SegmentGrid(id="segments")
        yield Footer()

    def on_mount(self) -> None:
        self.refresh_from_engine()

    def job(self) -> JobView | None:
        entry = self.link.entry(self.entry_id)
        return self.link.state.jobs.get(entry.job or "") if entry else None

    def refresh_from_engine(self) -> None:
        entry = self.link.entry(self.entry_id)
        if entry is None:
            self.query_one("#job-title", Static).update("this entry was removed")
            return
        job = self.job()
        progress = fmt.job_progress(entry, job)
        self.query_one("#job-title", Static).update(
            f"[b]{escape(fmt.name(entry))}[/b]  {fmt.status_text(entry)}  {fmt.bar(progress.fraction, 20)}"
            f"  {progress.fps:.1f} fps  {fmt.size(progress.size_bytes or None)}"
            f" of ~{fmt.size(progress.estimated_bytes)}\n[$text-muted]{escape(entry.output)}[/]"
        )
        self.query_one("#timeline", Static).update(timeline(job))
        self.query_one("#analysis", Static).update(analysis(job))
        self.query_one(SegmentGrid).show(job)

    async def action_cancel(self) -> None:
        await self.app.run_action(f"cancel_entry({self.entry_id})")

    async def action_retry(self) -> None:
        await self.app.run_action(f"retry({self.entry_id})")
