"""The queue as a table: one row an entry, updated cell by cell as events arrive."""

from __future__ import annotations

import contextlib

from textual.widgets import DataTable
from textual.widgets.data_table import RowDoesNotExist

from drapto_engine.core.api import EngineSnapshot
from drapto_engine.core.jobs import QueueEntry
from drapto_tui import format as fmt

COLUMNS = (
    ("name", "Name", 28),
    ("status", "Status", 10),
    ("dr", "DR", 5),
    ("progress", "Progress", 15),
    ("fps", "fps", 6),
    ("size", "Size", 9),
    ("estimate", "Est.", 9),
    ("eta", "ETA", 8),
)
# Under this many columns the table drops sizes (the job screen has them) and narrows
# the name, so that progress, fps and ETA stay on an 80x24 screen.
COMPACT_BELOW = 100
COMPACT = (
    ("name", "Name", 20),
    ("status", "Status", 10),
    ("dr", "DR", 5),
    ("progress", "Progress", 15),
    ("fps", "fps", 5),
    ("eta", "ETA", 7),
)


def row(
    entry: QueueEntry, snapshot: EngineSnapshot, columns: tuple[tuple[str, str, int], ...]
) -> tuple[str, ...]:
    job = snapshot.jobs.get(entry.job or "")
    progress = fmt.job_progress(entry, job)
    name = fmt.name(entry)
    width = columns[0][2]
    values = {
        "name": name if len(name) <= width else name[: width - 1] + "…",
        "status": fmt.status_text(entry),
        "dr": fmt.badge(job),
        "progress": fmt.bar(progress.fraction),
        "fps": f"{progress.fps:.1f}" if progress.fps else "-",
        "size": fmt.size(progress.size_bytes or None),
        "estimate": fmt.size(progress.estimated_bytes),
        "eta": fmt.duration(progress.eta_s) if entry.status.value == "running" else "-",
    }
    return tuple(values[key] for key, _, _ in columns)


class QueueTable(DataTable[str]):
    """Rows are keyed by entry id; a tick updates only the entries events touched."""

    columns_in_use: tuple[tuple[str, str, int], ...] = COLUMNS
    snapshot: EngineSnapshot | None = None

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = True
        self._set_columns(COLUMNS)

    def _set_columns(self, columns: tuple[tuple[str, str, int], ...]) -> None:
        self.clear(columns=True)
        self.columns_in_use = columns
        for key, label, width in columns:
            self.add_column(label, key=key, width=width)

    def on_resize(self) -> None:
        wanted = COMPACT if self.size.width < COMPACT_BELOW else COLUMNS
        if wanted is not self.columns_in_use:
            self._set_columns(wanted)
            if self.snapshot is not None:
                self._rebuild(self.snapshot)

    @property
    def selected_entry(self) -> int | None:
        if self.row_count == 0:
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        return int(key) if key is not None else None

    def sync(self, snapshot: EngineSnapshot, rebuild: bool, dirty: set[int]) -> None:
        self.snapshot = snapshot
        if rebuild:
            self._rebuild(snapshot)
            return
        entries = {e.id: e for e in snapshot.entries if e.id in dirty}
        for entry_id, entry in entries.items():
            try:
                cells = row(entry, snapshot, self.columns_in_use)
                for (key, _, _), value in zip(self.columns_in_use, cells, strict=True):
                    self.update_cell(str(entry_id), key, value)
            except RowDoesNotExist:
                self._rebuild(snapshot)
                return

    def _rebuild(self, snapshot: EngineSnapshot) -> None:
        selected = self.selected_entry
        self.clear()
        for entry in snapshot.entries:
            self.add_row(*row(entry, snapshot, self.columns_in_use), key=str(entry.id))
        if selected is not None:
            self.select_entry(selected)

    def select_entry(self, entry_id: int) -> None:
        with contextlib.suppress(RowDoesNotExist):
            self.move_cursor(row=self.get_row_index(str(entry_id)))
