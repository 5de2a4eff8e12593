"""The TUI's side of the engine connection: a client, the state it mirrors, and which
parts of the screen the latest events made stale.

Events are applied to an EngineView as they arrive; widgets redraw from it on a timer
(a few times a second), never once per event, so that a busy engine cannot flood the
screen.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Protocol

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
from drapto_engine.core.flags import FlagView
from drapto_engine.core.jobs import JobOptions, QueueEntry

NOTABLE = (Warning, Alert, RolledBack, JobFailed, JobFinished, FlagChanged)


class Client(Protocol):
    """What the TUI needs of drapto_engine.server.client.EngineClient."""

    async def subscribe(self) -> EngineSnapshot: ...
    def events(self) -> AsyncIterator[Event]: ...
    async def close(self) -> None: ...
    async def shutdown(self) -> None: ...
    async def add_paths(
        self,
        paths: Sequence[str],
        options: JobOptions | None = None,
        flags: Mapping[str, str] | None = None,
        batch: str | None = None,
    ) -> list[QueueEntry]: ...
    async def remove(self, entry_id: int) -> None: ...
    async def move(self, entry_id: int, index: int) -> None: ...
    async def pause(self) -> None: ...
    async def resume(self) -> None: ...
    async def retry(self, entry_id: int) -> QueueEntry: ...
    async def cancel(self, entry_id: int) -> None: ...
    async def set_workers(self, workers: int) -> None: ...
    async def set_flag(self, name: str, state: str) -> FlagView: ...
    async def get_config(self) -> dict[str, Any]: ...


class EngineLink:
    def __init__(self, client: Client) -> None:
        self.client = client
        self.view = EngineView()
        self.dirty_entries: set[int] = set()
        self.rebuild = True
        """Entries were added, removed or reordered: the queue table is rebuilt."""
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
        self.rebuild = self.entries_changed = True
        return snapshot

    @property
    def state(self) -> EngineSnapshot:
        return self.view.state

    def entry(self, entry_id: int) -> QueueEntry | None:
        return self.view.entry(entry_id)

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
