"""Every segment of a job as a cell: pending, running (percent, fps), done (size, fps),
failed (attempts).

A film can have a thousand segments: the grid draws only the lines on screen, from
the job view, so a redraw costs the same for 10 segments or 1,000.
"""

from __future__ import annotations

from rich.segment import Segment
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from drapto_engine.core.api import JobView, SegmentView
from drapto_tui import format as fmt

CELL = 19
"""Characters a cell takes, the space after it included."""


def cell(segment: SegmentView) -> str:
    i = f"#{segment.index:<4}"
    if segment.state == "running" and not (segment.percent or segment.fps):
        text = f"{i}▶ starting"
    elif segment.state == "running":
        text = f"{i}▶{segment.percent:4.0f}%{segment.fps:5.0f}f"
    elif segment.state == "done":
        mark = "↺" if segment.resumed else "✓"
        text = f"{i}{mark}{fmt.size(segment.size_bytes):>7}{segment.fps:4.0f}f"
    elif segment.state == "failed":
        text = f"{i}✗ failed x{segment.attempts}"
    else:
        text = f"{i}· retry {segment.attempts}" if segment.attempts else f"{i}·"
    return text[: CELL - 1].ljust(CELL - 1)


def summary(job: JobView | None) -> str:
    if job is None or not job.segments:
        return "no segments yet"
    counts: dict[str, int] = {}
    for segment in job.segments.values():
        counts[segment.state] = counts.get(segment.state, 0) + 1
    order = ("running", "pending", "done", "failed")
    return f"{len(job.segments)} segments: " + ", ".join(
        f"{counts[s]} {s}" for s in order if counts.get(s)
    )


class SegmentGrid(ScrollView):
    """Line 0 counts the segments by state; the cells wrap to the widget's width."""

    COMPONENT_CLASSES = {
        "segment-grid--pending",
        "segment-grid--running",
        "segment-grid--done",
        "segment-grid--failed",
    }

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.job: JobView | None = None
        self._order: list[int] = []

    @property
    def per_line(self) -> int:
        return max(1, (self.scrollable_content_region.width + 1) // CELL)

    def show(self, job: JobView | None) -> None:
        self.job = job
        self._order = sorted(job.segments) if job is not None else []
        self._resize()
        self.refresh()

    def _resize(self) -> None:
        lines = -(-len(self._order) // self.per_line)
        self.virtual_size = Size(self.scrollable_content_region.width, 1 + lines)

    def on_resize(self) -> None:
        self._resize()
        self.refresh()

    def text(self) -> str:
        """Every line as shown, for tests."""
        lines = [summary(self.job)]
        for start in range(0, len(self._order), self.per_line):
            cells = self._cells(start)
            lines.append(" ".join(text for text, _ in cells))
        return "\n".join(lines)

    def _cells(self, start: int) -> list[tuple[str, str]]:
        job = self.job
        if job is None:
            return []
        indexes = self._order[start : start + self.per_line]
        return [(cell(job.segments[i]), job.segments[i].state) for i in indexes]

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        line = y + self.scroll_offset.y
        if line == 0:
            return Strip([Segment(summary(self.job).ljust(width)[:width], self.rich_style)])
        cells = self._cells((line - 1) * self.per_line)
        if not cells:
            return Strip.blank(width, self.rich_style)
        segments: list[Segment] = []
        for text, state in cells:
            style = self.rich_style + self.get_component_rich_style(f"segment-grid--{state}")
            segments += [Segment(text, style), Segment(" ", self.rich_style)]
        return Strip(segments).adjust_cell_length(width, self.rich_style)
