"""The queue as a virtual table: one line an entry, drawn only where it is visible.

A library queue can hold tens of thousands of entries. Rows are not stored in the
widget: each visible line is formatted from the engine mirror when it is drawn, so
start-up, scrolling and a progress update cost the same for 10 entries or 10,000,
and an event redraws only the line of the entry it touched.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from drapto_engine.core.api import EngineSnapshot
from drapto_engine.core.jobs import QueueEntry
from drapto_tui import presentation

Column = tuple[str, str, int]
COLUMNS: tuple[Column, ...] = (
    ("name", "Name", 28),
    ("status", "Status", 10),
    ("dr", "DR", 5),
    ("progress", "Progress", 15),
    ("fps", "fps", 6),
    ("size", "Size", 9),
    ("estimate", "Est.", 9),
    ("eta", "ETA", 8),
)
# Narrower than this, the table drops sizes (the job screen has them) and narrows the
# name, so that progress, fps and ETA stay on an 80x24 screen.
COMPACT_BELOW = 100
COMPACT: tuple[Column, ...] = (
    ("name", "Name", 20),
    ("status", "Status", 10),
    ("dr", "DR", 5),
    ("progress", "Progress", 15),
    ("fps", "fps", 5),
    ("eta", "ETA", 7),
)


BADGE_CLASSES = {
    "SDR": "queue-table--badge-sdr",
    "HDR10": "queue-table--badge-hdr",
    "HLG": "queue-table--badge-hdr",
    "DV": "queue-table--badge-dv",
}


def row(
    entry: QueueEntry,
    snapshot: EngineSnapshot,
    columns: tuple[Column, ...],
    label: str | None = None,
) -> tuple[str, ...]:
    """`label`: the name with the folders that tell it apart, where names repeat (cut
    in the middle, so that both the folder and the name's end show)."""
    job = snapshot.jobs.get(entry.job or "")
    progress = presentation.job_progress(entry, job)
    width = columns[0][2]
    name = (
        presentation.fit_middle(label, width)
        if label
        else presentation.fit(presentation.name(entry), width)
    )
    values = {
        "name": name,
        "status": presentation.status_text(entry),
        "dr": presentation.badge(job, entry),
        "progress": presentation.bar(progress.fraction),
        "fps": f"{progress.fps:.1f}" if progress.fps else "-",
        "size": presentation.size(progress.size_bytes or None),
        "estimate": presentation.size(progress.estimated_bytes),
        "eta": presentation.duration(progress.eta_s) if entry.status.value == "running" else "-",
    }
    return tuple(values[key] for key, _, _ in columns)


def line(cells: tuple[str, ...], columns: tuple[Column, ...]) -> str:
    return " " + " ".join(
        cell[:width].ljust(width) for cell, (_, _, width) in zip(cells, columns, strict=True)
    )


class QueueTable(ScrollView, can_focus=True):
    """A cursor moves over the entries; enter (or a click on the selected row) opens it."""

    COMPONENT_CLASSES = {
        "queue-table--badge-sdr",
        "queue-table--badge-hdr",
        "queue-table--badge-dv",
        "queue-table--header",
        "queue-table--cursor",
        "queue-table--odd",
        "queue-table--failed",
        "queue-table--done",
        "queue-table--running",
    }
    BINDINGS = [
        Binding("up,k", "cursor(-1)", "Up", show=False),
        Binding("down,j", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", show=False),
        Binding("pagedown", "page(1)", show=False),
        Binding("home", "edge(0)", show=False),
        Binding("end", "edge(1)", show=False),
        Binding("enter", "select", "Detail", show=False),  # a click opens it too
    ]

    cursor_row: reactive[int] = reactive(0)

    @dataclass
    class Selected(Message):
        """The user opened an entry."""

        entry_id: int

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.snapshot = EngineSnapshot()
        self._rows: dict[int, int] = {}
        """Entry id -> row."""
        self._labels: dict[int, str] = {}
        """Entry id -> its name and folders, for the entries whose names repeat."""

    @property
    def columns(self) -> tuple[Column, ...]:
        return COMPACT if self.size.width < COMPACT_BELOW else COLUMNS

    @property
    def row_count(self) -> int:
        return len(self.snapshot.entries)

    @property
    def selected_entry(self) -> int | None:
        entries = self.snapshot.entries
        return entries[self.cursor_row].id if 0 <= self.cursor_row < len(entries) else None

    def row_text(self, index: int) -> str:
        """The cells of a row as shown (for tests and the tmux check)."""
        entry = self.snapshot.entries[index]
        cells = row(entry, self.snapshot, self.columns, self._labels.get(entry.id))
        return line(cells, self.columns)

    # -- data --

    def sync(self, snapshot: EngineSnapshot, rebuild: bool, dirty: set[int]) -> None:
        selected = self.selected_entry
        self.snapshot = snapshot
        if rebuild or len(self._rows) != len(snapshot.entries):
            self._rows = {e.id: i for i, e in enumerate(snapshot.entries)}
            self._labels = presentation.labels(snapshot.entries)
            self.virtual_size = Size(
                self.scrollable_content_region.width, len(snapshot.entries) + 1
            )
            if selected is not None and selected in self._rows:
                self.cursor_row = self._rows[selected]
            self.cursor_row = min(self.cursor_row, max(0, len(snapshot.entries) - 1))
            self.refresh()
            return
        for entry_id in dirty:
            index = self._rows.get(entry_id)
            if index is not None:
                self.refresh_line(index + 1)

    def select_entry(self, entry_id: int) -> None:
        if entry_id in self._rows:
            self.cursor_row = self._rows[entry_id]

    # -- drawing --

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        columns = self.columns
        if y == 0:  # the header stays put while rows scroll under it
            header = line(tuple(label for _, label, _ in columns), columns)
            style = self.get_component_rich_style("queue-table--header")
            return Strip([Segment(header.ljust(width)[:width], style)])
        index = y - 1 + self.scroll_offset.y
        entries = self.snapshot.entries
        if index >= len(entries):
            return Strip.blank(width, self.rich_style)
        entry = entries[index]
        cells = row(entry, self.snapshot, columns, self._labels.get(entry.id))
        style = self.rich_style + self._row_style(entry, index)
        segments = [Segment(" ", style)]
        for (key, _, cell_width), value in zip(columns, cells, strict=True):
            text = value[:cell_width].ljust(cell_width) + " "
            badge = BADGE_CLASSES.get(value) if key == "dr" else None
            cell_style = style + self.get_component_rich_style(badge) if badge else style
            segments.append(Segment(text, cell_style))
        return Strip(segments).adjust_cell_length(width, style)

    def _row_style(self, entry: QueueEntry, index: int) -> Style:
        if index == self.cursor_row:
            return self.get_component_rich_style("queue-table--cursor")
        kind = {"failed": "failed", "done": "done", "running": "running"}.get(entry.status.value)
        style = self.get_component_rich_style(f"queue-table--{kind}") if kind else Style()
        if index % 2:
            style = self.get_component_rich_style("queue-table--odd") + style
        return style

    def watch_cursor_row(self, old: int, new: int) -> None:
        # refresh_line takes virtual lines: row i is line i + 1 (line 0 is the header)
        for index in (old, new):
            self.refresh_line(index + 1)
        top = self.scroll_offset.y
        visible = max(1, self.size.height - 1)
        if new < top:
            self.scroll_to(y=new, animate=False)
        elif new >= top + visible:
            self.scroll_to(y=new - visible + 1, animate=False)

    def on_resize(self) -> None:
        self.virtual_size = Size(
            self.scrollable_content_region.width, len(self.snapshot.entries) + 1
        )
        self.refresh()

    # -- input --

    def action_cursor(self, delta: int) -> None:
        self.cursor_row = max(0, min(self.row_count - 1, self.cursor_row + delta))

    def action_page(self, direction: int) -> None:
        self.action_cursor(direction * max(1, self.size.height - 2))

    def action_edge(self, end: int) -> None:
        self.cursor_row = max(0, self.row_count - 1) if end else 0

    def action_select(self) -> None:
        entry = self.selected_entry
        if entry is not None:
            self.post_message(self.Selected(entry))

    def on_click(self, event: events.Click) -> None:
        if event.y == 0:
            return
        index = event.y - 1 + self.scroll_offset.y
        if 0 <= index < self.row_count:
            if index == self.cursor_row or event.chain > 1:
                self.action_select()
            self.cursor_row = index
