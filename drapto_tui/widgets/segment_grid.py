"""Every segment of a job as a cell: pending, running (percent, fps), done (size, fps),
failed (attempts)."""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Static

from drapto_engine.core.api import JobView, SegmentView
from drapto_tui import format as fmt

CELL = 16


def cell(segment: SegmentView) -> str:
    i = f"#{segment.index:<3}"
    if segment.state == "running":
        return f"[$segment-running]{i} {segment.percent:3.0f}% {segment.fps:4.0f}f[/]"
    if segment.state == "done":
        mark = "↺" if segment.resumed else "✓"
        return f"[$segment-done]{i}{mark}{fmt.size(segment.size_bytes):>9}[/]"
    if segment.state == "failed":
        return f"[$error]{i} ✗ x{segment.attempts:<7}[/]"
    retry = f" retry {segment.attempts}" if segment.attempts else " ·"
    return f"[$text-muted]{i}{retry:<11}[/]"


class SegmentGrid(Static):
    """Wraps cells to the widget's width; redrawn from the job view on each tick."""

    def show(self, job: JobView | None) -> None:
        if job is None or not job.segments:
            self.update("no segments yet")
            return
        per_line = max(1, (self.size.width or 80) // (CELL + 1))
        cells = [cell(s) for s in sorted(job.segments.values(), key=lambda s: s.index)]
        lines = [" ".join(cells[i : i + per_line]) for i in range(0, len(cells), per_line)]
        counts: dict[str, int] = {}
        for segment in job.segments.values():
            counts[segment.state] = counts.get(segment.state, 0) + 1
        head = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
        self.update(Content.from_markup(f"{len(cells)} segments: {head}\n" + "\n".join(lines)))
