"""The TUI's side of the engine connection: a client, the state it mirrors, and which
parts of the screen the latest events made stale.

Events are applied to an EngineView as they arrive; widgets redraw from it on a timer
(a few times a second), never once per event, so that a busy engine cannot flood the
screen.
"""

from __future__ import annotations

from pathlib import Path

from drapto_engine.core.api import EngineSnapshot, EngineView, JobView
from drapto_engine.core.events import (
    Alert,
    EntryChanged,
    EntryRemoved,
    Event,
    FlagChanged,
    JobFinished,
    QueueStateChanged,
    ResourcesSampled,
    RolledBack,
    WarningEvent,
)
from drapto_engine.core.jobs import EntryStatus, QueueEntry
from drapto_tui import presentation
from drapto_tui.client import EngineConnection

NOTABLE = (WarningEvent, Alert, RolledBack, JobFinished, FlagChanged)
"""Events a person is told of; besides them, an entry that fails (whether or not its
job had started: the entry's change is the one sign of every failure)."""


def settle(job: JobView) -> None:
    """A job whose run ended has no encoder running: a cancel or an interrupt stops
    them without a segment event, so their segments are waiting again."""
    for segment in job.segments.values():
        if segment.state == "running":
            segment.state, segment.percent, segment.fps = "pending", 0.0, 0.0


class EngineMirror:
    """The engine's state as this client last heard it, and what of the screen is stale."""

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
        self._labels: dict[int, str] | None = None

    async def start(self) -> EngineSnapshot:
        snapshot = await self.client.subscribe()
        self.view = EngineView(snapshot)
        self._job_entries = {e.job: e.id for e in snapshot.entries if e.job}
        self._labels = None
        for entry in snapshot.entries:
            self._follow_run(entry, None)
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
        return self.label(entry) if entry is not None else None

    def label(self, entry: QueueEntry) -> str:
        """The entry's file name; with the folders that tell it apart where the queue
        holds another file of that name."""
        if self._labels is None:
            self._labels = presentation.labels(self.state.entries)
        return self._labels.get(entry.id) or Path(entry.input).name

    def job_of(self, entry: QueueEntry) -> JobView | None:
        return self.state.jobs.get(entry.job or "")

    def _follow_run(self, entry: QueueEntry, before: EntryStatus | None) -> None:
        """Nothing of a run outlives it: its running segments stop with it, and a
        queued entry (retried, or put back) or a new run starts without the old view."""
        job = self.job_of(entry)
        if job is None:
            return
        starts = entry.status is EntryStatus.RUNNING and before is not EntryStatus.RUNNING
        if entry.status is EntryStatus.QUEUED or (starts and before is not None):
            del self.state.jobs[job.id]
        elif entry.status is not EntryStatus.RUNNING:
            settle(job)

    def apply(self, event: Event) -> bool:
        """Apply one event; True when a person should be told of it."""
        before = self.view.entry(event.entry.id) if isinstance(event, EntryChanged) else None
        self.view.apply(event)
        if isinstance(event, EntryChanged | EntryRemoved):
            self.entries_changed = True
        if isinstance(event, EntryChanged):
            entry = event.entry
            was = before.status if before is not None else None
            self._follow_run(entry, was)
            if entry.job:
                self._job_entries[entry.job] = entry.id
                self.jobs_dirty.add(entry.job)
            if before is None or before.position != entry.position:
                self.rebuild = True
                self._labels = None
            else:
                self.dirty_entries.add(entry.id)
            return entry.status is EntryStatus.FAILED and was is not EntryStatus.FAILED
        elif isinstance(event, EntryRemoved):
            self.rebuild = True
            self._labels = None
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
