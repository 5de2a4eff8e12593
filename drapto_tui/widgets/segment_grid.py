"""Every segment of a job: as a cell (pending, running with percent and fps, done with
size and fps, or with its CRF and VMAF score under a target VMAF, failed with attempts), or, where room is short, as one character each.

A film can have a thousand segments: the grid draws only the lines on screen, from
the job view, so a redraw costs the same for 10 segments or 1,000.
"""

from __future__ import annotations

from rich.segment import Segment
from textual.geometry import Size
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from drapto_engine.core.api import JobView, SegmentView
from drapto_engine.core.metrics import counted
from drapto_tui import presentation

CELL = 19
"""Characters a cell takes, the space after it included."""
GLYPHS = {"pending": "·", "running": "▶", "done": "█", "failed": "✗"}
"""A segment as one character (the strip)."""
STRIP_CELL = 6
"""The most characters a segment takes in the strip."""
RANK = {"pending": 0, "done": 1, "running": 2, "failed": 3}
"""Which state a character standing for several segments shows."""
REMOTE_RUNNING, REMOTE_DONE = "⇢", "⇄"
"""The marks of a segment a cluster worker encodes or encoded (the title names them)."""


def cell(segment: SegmentView) -> str:
    """18 characters at most, whatever the figures (a 4-digit index, 1234 fps)."""
    i = f"#{segment.index:<4}"
    running = REMOTE_RUNNING if segment.remote else "▶"
    if segment.state == "running" and not (segment.percent or segment.fps):
        text = f"{i}{running} starting"
    elif segment.state == "running":
        text = f"{i}{running}{segment.percent:4.0f}% {min(segment.fps, 9999):4.0f}f"
    elif segment.state == "done":
        mark = "↺" if segment.resumed else REMOTE_DONE if segment.remote else "✓"
        size = presentation.short_size(segment.size_bytes)
        if segment.vmaf is not None:  # a target VMAF: the CRF it chose and the score
            text = f"{i}{mark} crf{segment.crf or 0:<2} {min(segment.vmaf, 99.9):4.1f}"
        else:
            text = f"{i}{mark} {size:>5} {min(segment.fps, 9999):4.0f}f"
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
    text = f"{counted(len(job.segments), 'segment')}: " + ", ".join(
        f"{counts[s]} {s}" for s in order if counts.get(s)
    )
    hosts: dict[str, int] = {}
    for segment in job.segments.values():
        if segment.remote and segment.state in ("running", "done"):
            hosts[segment.host] = hosts.get(segment.host, 0) + 1
    if hosts:
        text += f"; {REMOTE_DONE} remote: " + ", ".join(
            f"{h} {n}" for h, n in sorted(hosts.items())
        )
    return text


def glyph(state: str, width: int) -> str:
    """A segment in the strip, `width` characters: a gap after it from 3 on."""
    mark = GLYPHS.get(state, "?")
    return mark * (width - 1) + " " if width >= 3 else mark * width


def strip_states(states: list[str], width: int, lines: int) -> list[str]:
    """The segments' states as at most `width * lines` characters: when there are more
    segments, each character stands for a run of them and shows the most telling state."""
    room = max(1, width * lines)
    if len(states) <= room:
        return states
    per = -(-len(states) // room)
    return [max(states[i : i + per], key=RANK.__getitem__) for i in range(0, len(states), per)]


class SegmentGrid(ScrollView):
    """Line 0 is the title (what `label` says, then the counts by state); the cells
    wrap to the widget's width. `compact` draws one character a segment instead."""

    COMPONENT_CLASSES = {
        "segment-grid--pending",
        "segment-grid--running",
        "segment-grid--done",
        "segment-grid--failed",
    }

    compact: reactive[bool] = reactive(False)

    def __init__(self, *, id: str | None = None, compact: bool = False) -> None:
        super().__init__(id=id)
        self.job: JobView | None = None
        self.label = ""
        """Said before the counts (the strip names the job's file)."""
        self._order: list[int] = []
        self.set_reactive(SegmentGrid.compact, compact)

    @property
    def width(self) -> int:
        return self.scrollable_content_region.width

    @property
    def glyph_width(self) -> int:
        """Characters a segment takes in the strip: more when there are few."""
        count = max(1, len(self._order))
        return max(1, min(STRIP_CELL, self.width // count))

    @property
    def per_line(self) -> int:
        if self.compact:
            return max(1, self.width // self.glyph_width)
        return max(1, (self.width + 1) // CELL)

    def show(self, job: JobView | None, label: str = "") -> None:
        self.job, self.label = job, label
        self._order = sorted(job.segments) if job is not None else []
        self._resize()
        self.refresh()

    def watch_compact(self) -> None:
        self._resize()
        self.refresh()

    def _states(self) -> list[str]:
        job = self.job
        states = [job.segments[i].state for i in self._order] if job is not None else []
        if not self.compact:
            return states
        return strip_states(states, self.per_line, max(1, self.size.height - 1))

    def _resize(self) -> None:
        count = len(self._states()) if self.compact else len(self._order)
        lines = -(-count // self.per_line)
        self.virtual_size = Size(self.width, 1 + lines)

    def on_resize(self) -> None:
        self._resize()
        self.refresh()

    def title(self) -> str:
        text = summary(self.job)
        return f"{self.label}: {text}" if self.label else text

    def text(self) -> str:
        """Every line as shown, for tests."""
        lines = [self.title()]
        for line in range(1, self.virtual_size.height):
            gap = "" if self.compact else " "
            lines.append(gap.join(text for text, _ in self._line_cells(line)).rstrip())
        return "\n".join(lines)

    def _line_cells(self, line: int) -> list[tuple[str, str]]:
        start = (line - 1) * self.per_line
        if self.compact:
            states = self._states()[start : start + self.per_line]
            k = self.glyph_width
            return [(glyph(state, k), state) for state in states]
        job = self.job
        if job is None:
            return []
        indexes = self._order[start : start + self.per_line]
        return [(cell(job.segments[i]), job.segments[i].state) for i in indexes]

    def render_line(self, y: int) -> Strip:
        width = self.width
        line = y + self.scroll_offset.y
        if line == 0:
            return Strip([Segment(self.title().ljust(width)[:width], self.rich_style)])
        cells = self._line_cells(line)
        if not cells:
            return Strip.blank(width, self.rich_style)
        segments: list[Segment] = []
        for text, state in cells:
            style = self.rich_style + self.get_component_rich_style(f"segment-grid--{state}")
            segments.append(Segment(text, style))
            if not self.compact:
                segments.append(Segment(" ", self.rich_style))
        return Strip(segments).adjust_cell_length(width, self.rich_style)
