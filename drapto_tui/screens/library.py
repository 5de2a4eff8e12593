"""The library screen: the watched folders (add, remove, rescan) and the encode schedule
(open or closed and until when, yielding, the override), drawn from the mirror."""

from __future__ import annotations

import time
from datetime import datetime

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Header, Static

from drapto_engine.core.schedule import ScheduleView
from drapto_engine.core.watching import WatchView
from drapto_tui.mirror import EngineMirror
from drapto_tui.widgets.footer import KeyBar

now = time.time
"""The clock the times shown are counted from (tests fix it)."""

COLUMNS = ("folder", "output", "state", "pending", "queued", "last rescan")


def _ago(when: float | None, now: float) -> str:
    if when is None:
        return "not yet"
    seconds = max(0, int(now - when))
    if seconds < 60:
        return f"{seconds} s ago"
    return f"{seconds // 60} min ago" if seconds < 3600 else f"{seconds // 3600} h ago"


def watch_row(view: WatchView, now: float) -> tuple[str, ...]:
    state = view.problem or view.state.value  # a problem names the state itself
    return (
        view.folder.path,
        view.folder.output,
        state,
        str(view.pending),
        str(view.queued),
        _ago(view.last_scan, now),
    )


def _until(when: float | None, now: float) -> str:
    if when is None:
        return ""
    at = datetime.fromtimestamp(when)
    same_day = at.date() == datetime.fromtimestamp(now).date()
    return at.strftime("%H:%M") if same_day else at.strftime("%a %H:%M")


def schedule_text(view: ScheduleView, now: float) -> str:
    """The schedule in a few lines, as `drapto schedule` says it."""
    if not view.windows:
        lines = ["Schedule: always (no [schedule] windows)"]
    else:
        until = _until(view.until, now)
        change = (f" until {until}" if view.open else f", opens {until}") if until else ""
        state = "open" if view.open else "closed"
        lines = [f"Schedule: {', '.join(view.windows)}; {state}{change}"]
    if view.override:
        lines.append("Override: encoding now until the queue is empty (o turns it off)")
    if view.yield_cpu is not None:
        others = f", others use {100 * view.others_cpu:.0f}%" if view.others_cpu is not None else ""
        lines.append(f"Yield above {100 * view.yield_cpu:.0f}% of the CPU{others}")
    if view.paused:
        lines.append(f"Paused: {view.paused}; {view.waiting} waiting")
    return "\n".join(lines)


class LibraryScreen(Screen[None]):
    """Watched folders and the schedule. `a` adds a folder, `x` removes the highlighted
    one (asks first), `r` rescans it, `o` turns the override on or off."""

    BINDINGS = [
        Binding("escape,w", "app.pop_screen", "Back"),
        Binding("a", "app.watch_add", "Watch a folder"),
        Binding("delete,x", "app.watch_remove", "Stop watching", key_display="x"),
        Binding("r", "app.watch_rescan", "Rescan"),
        Binding("o", "app.schedule_override", "Override schedule"),
    ]

    def __init__(self, mirror: EngineMirror) -> None:
        super().__init__()
        self.mirror = mirror
        self._shown: tuple[object, ...] | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="schedule", markup=False)
        table: DataTable[str] = DataTable(id="watches", cursor_type="row")
        table.add_columns(*COLUMNS)
        yield table
        yield KeyBar()

    def on_mount(self) -> None:
        self.refresh_from_engine()
        self.query_one(DataTable).focus()

    @property
    def selected(self) -> str | None:
        """The highlighted folder's path."""
        table: DataTable[str] = self.query_one(DataTable)
        watches = self.mirror.state.watches
        row = table.cursor_row
        return watches[row].folder.path if 0 <= row < len(watches) else None

    def refresh_from_engine(self) -> None:
        state = self.mirror.state
        moment = now()
        rows = [watch_row(view, moment) for view in state.watches]
        text = schedule_text(state.schedule, moment)
        if (rows, text) == self._shown:
            return
        self._shown = (rows, text)
        self.query_one("#schedule", Static).update(text)
        table: DataTable[str] = self.query_one(DataTable)
        cursor = table.cursor_row
        table.clear()
        if not rows:
            table.add_row("no watched folders: a watches one", "", "", "", "", "")
        for row in rows:
            table.add_row(*row)
        table.move_cursor(row=min(cursor, max(0, table.row_count - 1)))
