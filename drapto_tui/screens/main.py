"""The main screen: the queue with the chosen job's segments and the machine's load
under it, and tabs for resources, flags and the event log."""

from __future__ import annotations

from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Header, Static, Switch, TabbedContent, TabPane

from drapto_engine.core.api import JobView
from drapto_engine.core.jobs import EntryStatus
from drapto_tui import presentation
from drapto_tui.mirror import EngineMirror
from drapto_tui.widgets.event_log import EventLog
from drapto_tui.widgets.flags_panel import FlagsPanel
from drapto_tui.widgets.footer import KeyBar
from drapto_tui.widgets.queue_table import QueueTable
from drapto_tui.widgets.resource_strip import ResourceStrip
from drapto_tui.widgets.resources_panel import ResourcesPanel
from drapto_tui.widgets.segment_grid import CELL, SegmentGrid

MOVE = Binding.Group("Move", compact=True)
"""Up and down share one label in the key bar: at 80 columns every key fits."""
WIDE = (140, 40)
"""From this size on, the segment strip grows into the full grid and sparklines show."""


class KeyTabs(TabbedContent):
    """Tabs that change only by a key or a click. Textual's switch to the pane of a newly
    focused widget raced a quick key: the flags tab focuses its first switch after it is
    drawn, and a `2` pressed in between was undone when that focus arrived.

    Textual calls a message's handler in every class of the widget's MRO: `stop()` only
    keeps the message from the parent, `prevent_default()` keeps it from
    TabbedContent's own handler, the one that switches."""

    def _on_tab_pane_focused(self, event: TabPane.Focused) -> None:
        event.stop()
        event.prevent_default()


class MainScreen(Screen[None]):
    BINDINGS = [
        Binding("a", "app.add", "Add"),
        Binding("delete,x", "app.remove", "Remove", key_display="x"),
        Binding("shift+up,K", "app.move(-1)", "Up", key_display="⇧↑", group=MOVE),
        Binding("shift+down,J", "app.move(1)", "Down", key_display="⇧↓", group=MOVE),
        Binding("p", "app.toggle_pause", "Pause"),
        Binding("r", "app.retry", "Retry"),
        Binding("c", "app.cancel_entry", "Cancel"),
        Binding("C", "app.clear_finished", "Clear done"),
        Binding("plus,equals_sign", "app.workers(1)", "+Worker", show=False),
        Binding("minus", "app.workers(-1)", "-Worker", show=False),
        Binding("1", "tab('queue')", "Queue", show=False),
        Binding("2", "tab('resources')", "Resources", show=False),
        Binding("3", "tab('flags')", "Flags", show=False),
        Binding("4", "tab('log')", "Log", show=False),
        Binding("w", "app.library", "Watched", show=False),
    ]

    def __init__(self, mirror: EngineMirror) -> None:
        super().__init__()
        self.mirror = mirror
        self._counts: presentation.QueueCounts | None = None
        self._totals_text = ""
        self._strip_job: tuple[str | None, str] | None = None
        self._layout: tuple[object, ...] | None = None
        self._composed = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="totals")
        with KeyTabs(initial="queue"):
            with TabPane("Queue", id="queue"):
                yield QueueTable(id="queue-table")
                yield SegmentGrid(id="queue-segments", compact=True)
            with TabPane("Resources", id="resources"):
                yield ResourcesPanel(id="resources-panel")
            with TabPane("Flags", id="flags"):
                yield FlagsPanel(id="flags-panel")
            with TabPane("Log", id="log"):
                yield EventLog(id="event-log")
        yield ResourceStrip(id="resource-strip")
        yield KeyBar()

    def on_mount(self) -> None:
        self._composed = True
        # the strip follows the queue's cursor: focus (and the keys) stay on the queue
        self.query_one(SegmentGrid).can_focus = False
        self.refresh_from_engine()
        self.query_one(QueueTable).focus()

    def on_resize(self, event: events.Resize) -> None:
        wide = event.size.width >= WIDE[0] and event.size.height >= WIDE[1]
        self.set_class(wide, "-wide")
        self.query_one(ResourceStrip).sparklines = wide
        self.mirror.resources_dirty = True
        self._strip_job = None
        self._layout = None

    def lay_out(self, segments: int) -> None:
        """Share the queue tab between the table and the segments: the table gets the
        lines its rows need, leaving the strip (3 lines) at least; the segments get the
        rest, as the full grid where it fits. A tall, wide screen splits it in half and
        always shows the full grid (it scrolls)."""
        table = self.query_one(QueueTable)
        grid = self.query_one(SegmentGrid)
        size = self.size
        strip = 3 if self.has_class("-wide") else 1
        height = max(6, size.height - 5 - strip)  # header, totals, tabs, strip, keys
        layout = (size, table.row_count, segments)
        if layout == self._layout:
            return
        self._layout = layout
        per_line = max(1, (size.width - 1) // CELL)  # the grid's padding, less a gap
        full = 2 + -(-segments // per_line)  # its rule, title and cell lines
        if self.has_class("-wide"):
            rows = min(table.row_count + 1, height // 2)
            compact = False
        else:
            rows = min(table.row_count + 1, height - 4)
            compact = full > height - rows
            rows = rows if compact else max(rows, height - full)
        table.styles.height = max(2, rows)
        grid.styles.height = max(4, height - max(2, rows))
        grid.compact = compact

    @on(QueueTable.Selected)
    def open_detail(self) -> None:
        self.app.action_detail()  # type: ignore[attr-defined]

    def action_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab

    @property
    def active_tab(self) -> str:
        return self.query_one(TabbedContent).active

    @on(TabbedContent.TabActivated)
    def tab_shown(self) -> None:
        """A tab's panel is drawn from the mirror as it appears (keys or a click), and
        the keys go to what it shows."""
        self.mirror.resources_dirty = self.mirror.flags_dirty = True
        self.refresh_from_engine()
        self.call_after_refresh(self.focus_tab)
        if self.active_tab == "log":
            self.app.seen_log()  # type: ignore[attr-defined]

    def on_screen_resume(self) -> None:
        """Back from a dialog or the job screen: the keys act on the queue again."""
        self.call_after_refresh(self.focus_tab)

    def focus_tab(self) -> None:
        if self.active_tab == "queue":
            self.query_one(QueueTable).focus()
        elif self.active_tab == "flags":
            focused = self.focused
            if not isinstance(focused, Switch):
                switches = self.query_one(FlagsPanel).query(Switch)
                if switches:
                    switches.first().focus()
        elif self.active_tab == "log":
            self.query_one(EventLog).focus()

    def shown_job(self) -> tuple[JobView | None, str]:
        """The selected entry's job, or else the first running one's; and its name."""
        state = self.mirror.state
        selected = self.query_one(QueueTable).selected_entry
        entry = self.mirror.entry(selected) if selected is not None else None
        job = state.jobs.get(entry.job or "") if entry is not None else None
        if job is None or not job.segments:
            for candidate in state.entries:
                other = state.jobs.get(candidate.job or "")
                if candidate.status is EntryStatus.RUNNING and other and other.segments:
                    return other, self.mirror.label(candidate)
        return job, self.mirror.label(entry) if entry is not None else ""

    def refresh_from_engine(self) -> None:
        if not self._composed:  # a tick between push and mount: its parts are not there yet
            return
        mirror = self.mirror
        state = mirror.state
        rebuild, dirty = mirror.take_dirty()
        self.query_one(QueueTable).sync(state, rebuild, dirty)
        if mirror.entries_changed or self._counts is None:
            mirror.entries_changed = False
            run = self._counts.run if self._counts is not None else frozenset()
            self._counts = presentation.queue_counts(state, run)
        totals = presentation.queue_totals(state, self._counts, mirror.entry)
        room = self.size.width - 2  # its padding; the worker bound is in the strip below
        text = presentation.totals_line(totals, state.paused, room, mirror.saved)
        if text != self._totals_text:  # an unchanged line costs no redraw
            self._totals_text = text
            self.query_one("#totals", Static).update(text, layout=False)  # one line, always
        if self.active_tab == "queue":
            self._show_segments()
        if mirror.resources_dirty:
            mirror.resources_dirty = False
            self.query_one(ResourceStrip).show(state)
            if self.active_tab == "resources":
                self.query_one(ResourcesPanel).show(state, mirror.job_name)
        if mirror.flags_dirty:
            mirror.flags_dirty = False
            self.query_one(FlagsPanel).show(state.flags)

    def _show_segments(self) -> None:
        job, name = self.shown_job()
        key = (job.id if job is not None else None, name)
        touched = self.mirror.take_job_dirty(key[0])
        self.lay_out(len(job.segments) if job is not None else 0)
        if touched or key != self._strip_job:
            self._strip_job = key
            self.query_one(SegmentGrid).show(job, name)
