"""The main screen: the queue, and tabs for resources, flags and the event log."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Header, Static, TabbedContent, TabPane

from drapto_tui import format as fmt
from drapto_tui.link import EngineLink
from drapto_tui.widgets.event_log import EventLog
from drapto_tui.widgets.flags_panel import FlagsPanel
from drapto_tui.widgets.footer import KeyBar
from drapto_tui.widgets.queue_table import QueueTable
from drapto_tui.widgets.resources_panel import ResourcesPanel


class MainScreen(Screen[None]):
    BINDINGS = [
        Binding("a", "app.add", "Add"),
        Binding("delete,x", "app.remove", "Remove"),
        Binding("shift+up,K", "app.move(-1)", "Up", key_display="⇧↑"),
        Binding("shift+down,J", "app.move(1)", "Down", key_display="⇧↓"),
        Binding("p", "app.toggle_pause", "Pause"),
        Binding("r", "app.retry", "Retry"),
        Binding("c", "app.cancel_entry", "Cancel"),
        Binding("plus,equals_sign", "app.workers(1)", "+Worker", show=False),
        Binding("minus", "app.workers(-1)", "-Worker", show=False),
        Binding("1", "tab('queue')", "Queue", show=False),
        Binding("2", "tab('resources')", "Resources", show=False),
        Binding("3", "tab('flags')", "Flags", show=False),
        Binding("4", "tab('log')", "Log", show=False),
    ]

    def __init__(self, link: EngineLink) -> None:
        super().__init__()
        self.link = link
        self._counts: fmt.QueueCounts | None = None
        self._totals_text = ""

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="totals")
        with TabbedContent(initial="queue"):
            with TabPane("Queue", id="queue"):
                yield QueueTable(id="queue-table")
            with TabPane("Resources", id="resources"):
                yield ResourcesPanel(id="resources-panel")
            with TabPane("Flags", id="flags"):
                yield FlagsPanel(id="flags-panel")
            with TabPane("Log", id="log"):
                yield EventLog(id="event-log")
        yield KeyBar()

    def on_mount(self) -> None:
        self.refresh_from_engine()
        self.query_one(QueueTable).focus()

    @on(QueueTable.Selected)
    def open_detail(self) -> None:
        self.app.action_detail()  # type: ignore[attr-defined]

    def action_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab

    @on(TabbedContent.TabActivated)
    def tab_shown(self) -> None:
        """A tab's panel is drawn from the mirror as it appears (keys or a click)."""
        self.link.resources_dirty = self.link.flags_dirty = True
        self.refresh_from_engine()

    def refresh_from_engine(self) -> None:
        link = self.link
        state = link.state
        rebuild, dirty = link.take_dirty()
        self.query_one(QueueTable).sync(state, rebuild, dirty)
        if link.entries_changed or self._counts is None:
            link.entries_changed = False
            self._counts = fmt.queue_counts(state)
        totals = fmt.queue_totals(state, self._counts, link.entry)
        text = f"{fmt.totals_line(totals, state.paused)}  {state.workers} workers"
        if text != self._totals_text:  # an unchanged line costs no redraw
            self._totals_text = text
            self.query_one("#totals", Static).update(text, layout=False)  # one line, always
        if link.resources_dirty and self.query_one(TabbedContent).active == "resources":
            link.resources_dirty = False
            self.query_one(ResourcesPanel).show(state)
        if link.flags_dirty:
            link.flags_dirty = False
            self.query_one(FlagsPanel).show(state.flags)
