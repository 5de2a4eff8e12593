"""The TUI's side of the engine connection: a client, the state it mirrors, and which
parts of the screen the latest events made stale.

Events are applied to an EngineView as they arrive; widgets redraw from it on a timer
(a few times a second), never once per event, so that a busy engine cannot flood the
screen.
"""

from __future__ import annotations

from pathlib import Path

from drapto_engine.core.api import EngineSnapshot, EngineView
from drapto_engine.core.events import (
    Alert,
    EntryChanged,
    EntryRemoved,
    Event,
    FlagChanged,
    JobFailed,
    JobFinished,
    QueueStateChanged,
    ResourcesSampled,
    RolledBack,
    Warning,
)
from drapto_engine.core.jobs import QueueEntry
from drapto_tui.client import EngineConnection

NOTABLE = (Warning, Alert, RolledBack, JobFailed, JobFinished, FlagChanged)


class EngineLink:
    def __init__(self, client: EngineConnection) -> None:
        self.client = client
        self.view = EngineView()
        self.connected = False
        self.dirty_entries: set[int] = set()
        self.rebuild = True
        """Entries were added, removed or reordered: the queue table re-indexes its rows."""
        self.flags_dirty = True
        self.resources_dirty = True
        self.jobs_dirty: set[str] = set()
        self.entries_changed = True
        """An entry's status may have changed: queue counts are redone."""
        self._job_entries: dict[str, int] = {}

    async def start(self) -> EngineSnapshot:
        snapshot = await self.client.subscribe()
        self.view = EngineView(snapshot)
        self._job_entries = {e.job: e.id for e in snapshot.entries if e.job}
        self.rebuild = self.entries_changed = self.flags_dirty = self.resources_dirty = True
        self.jobs_dirty = set(snapshot.jobs)
        self.connected = True
        return snapshot

    async def reattach(self, client: EngineConnection) -> EngineSnapshot:
        """Follow a new connection: its snapshot replaces everything mirrored so far."""
        self.client = client
        return await self.start()

    @property
    def state(self) -> EngineSnapshot:
        return self.view.state

    def entry(self, entry_id: int) -> QueueEntry | None:
        return self.view.entry(entry_id)

    def job_name(self, job_id: str) -> str | None:
        """The file name of a job's entry, for people (job ids are hashes)."""
        entry_id = self._job_entries.get(job_id)
        entry = self.view.entry(entry_id) if entry_id is not None else None
        return Path(entry.input).name if entry is not None else None

    def apply(self, event: Event) -> bool:
        """Apply one event; True when a person should be told of it."""
        before = self.view.entry(event.entry.id) if isinstance(event, EntryChanged) else None
        self.view.apply(event)
        if isinstance(event, EntryChanged | EntryRemoved):
            self.entries_changed = True
        if isinstance(event, EntryChanged):
            entry = event.entry
            if entry.job:
                self._job_entries[entry.job] = entry.id
                self.jobs_dirty.add(entry.job)
            if before is None or before.position != entry.position:
                self.rebuild = True
            else:
                self.dirty_entries.add(entry.id)
        elif isinstance(event, EntryRemoved):
            self.rebuild = True
        elif isinstance(event, FlagChanged):
            self.flags_dirty = True
        elif isinstance(event, ResourcesSampled | QueueStateChanged):
            self.resources_dirty = True
        elif event.job:
            self.jobs_dirty.add(event.job)
            entry_id = self._job_entries.get(event.job)
            if entry_id is not None:
                self.dirty_entries.add(entry_id)
        return isinstance(event, NOTABLE)

    def take_dirty(self) -> tuple[bool, set[int]]:
        rebuild, dirty = self.rebuild, self.dirty_entries
        self.rebuild, self.dirty_entries = False, set()
        return rebuild, dirty

    def take_job_dirty(self, job_id: str | None) -> bool:
        """Whether events touched this job since the last call (the job screen asks)."""
        dirty = bool(job_id) and job_id in self.jobs_dirty
        self.jobs_dirty.clear()  # only the job on screen is ever redrawn from this
        return dirty
