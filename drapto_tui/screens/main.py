"""The main screen: the queue, and tabs for resources, flags and the event log."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Header, Static, TabbedContent, TabPane

from drapto_tui import format as fmt
from drapto_tui.link import EngineLink
from drapto_tui.widgets.event_log import EventLog
from drapto_tui.widgets.flags_panel import FlagsPanel
from drapto_tui.widgets.queue_table import QueueTable
from drapto_tui.widgets.resources_panel import ResourcesPanel


class MainScreen(Screen[None]):
    BINDINGS = [
        Binding("a", "app.add", "Add"),
        Binding("delete,x", "app.remove", "Remove"),
        Binding("shift+up,K", "app.move(-1)", "Up", show=False),
        Binding("shift+down,J", "app.move(1)", "Down", show=False),
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
                yield EventLog(id="event-log", wrap=True, max_lines=2000)
        yield Footer()

    def on_mount(self) -> None:
        self.refresh_from_engine()
        self.query_one(QueueTable).focus()

    @on(QueueTable.Selected)
    def open_detail(self) -> None:
        self.app.action_detail()  # type: ignore[attr-defined]

    def action_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab
        self.link.resources_dirty = self.link.flags_dirty = True

    def refresh_from_engine(self) -> None:
        link = self.link
        state = link.state
        rebuild, dirty = link.take_dirty()
        self.query_one(QueueTable).sync(state, rebuild, dirty)
        if link.entries_changed or self._counts is None:
            link.entries_changed = False
            self._counts = fmt.queue_counts(state)
        totals = fmt.queue_totals(state, self._counts, link.entry)
        counts = ", ".join(f"{n} {status}" for status, n in sorted(totals.counts.items()))
        paused = "[$warning]paused[/]  " if state.paused else ""
        fps = f"  {totals.fps:.1f} fps" if totals.fps else ""
        eta = f"  ETA {fmt.duration(totals.eta_s)}" if totals.eta_s is not None else ""
        text = (
            f"{paused}queue {fmt.bar(totals.fraction, 16)}  {counts or 'empty'}{fps}{eta}"
            f"  workers {state.workers}"
        )
        if text != self._totals_text:  # an unchanged line costs no redraw
            self._totals_text = text
            self.query_one("#totals", Static).update(text)
        if link.resources_dirty and self.query_one(TabbedContent).active == "resources":
            link.resources_dirty = False
            self.query_one(ResourcesPanel).show(state)
        if link.flags_dirty:
            link.flags_dirty = False
            self.query_one(FlagsPanel).show(state.flags)
