"""Push notifications of queue entries that end, sent to the config's `notify_url`.

The Notifier only listens to the engine's events, as the Monitor does: an entry that
this engine ran and that ended (done, failed, skipped, cancelled) is announced once, and
so is an entry that failed before it could start (a file a folder scan could not read,
`Engine.add_failed`). An entry stopped to resume later (INTERRUPTED_NOTE), one cancelled
while it waited, and a finished entry that only changed (moved, its job noted) are not
news. A notification that fails is a warning event, never a failed job.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from drapto_engine.config import Config
from drapto_engine.core.api import INTERRUPTED_NOTE
from drapto_engine.core.events import EntryChanged, EntryRemoved, Event, EventBus, WarningEvent
from drapto_engine.core.jobs import FINAL_STATUSES, EntryStatus, QueueEntry
from drapto_engine.core.metrics import size_change
from drapto_engine.infrastructure.notify import notify


def ending_message(entry: QueueEntry) -> tuple[str, str]:
    """The title and text announcing that `entry` ended."""
    name = Path(entry.input).name
    message = {
        EntryStatus.DONE: f"{name}: done"
        + (
            f", {size_change(entry.summary.reduction_percent, 0)} in {entry.summary.wall_s:.0f} s"
            if entry.summary
            else ""
        ),
        EntryStatus.FAILED: f"{name}: failed: {entry.error}",
        EntryStatus.SKIPPED: f"{name}: skipped ({entry.note})",
        EntryStatus.CANCELLED: f"{name}: cancelled",
    }[entry.status]
    return f"drapto: job {entry.status.value}", message


class Notifier:
    """Sends a notification when a queue entry ends (see the module's doc).

    `known`: the entries the engine had before this notifier listened (earlier
    sessions'); an entry it first sees already ended is news only if it is not one."""

    def __init__(self, bus: EventBus, config: Config, *, known: Iterable[int] = ()) -> None:
        self.bus = bus
        self.config = config
        self._seen: set[int] = set(known)
        self._running: set[int] = set()
        """Entries seen running and not yet ended."""
        self._sending: set[asyncio.Task[Any]] = set()
        bus.subscribe(self.handle)

    def handle(self, event: Event) -> None:
        if isinstance(event, EntryRemoved):
            self._seen.discard(event.entry_id)
            self._running.discard(event.entry_id)
        if not isinstance(event, EntryChanged) or event.entry.id <= 0:
            return
        entry = event.entry
        if entry.status is EntryStatus.RUNNING:
            self._running.add(entry.id)
        elif entry.status in FINAL_STATUSES:
            ran = entry.id in self._running
            self._running.discard(entry.id)
            failed_before_start = entry.id not in self._seen
            if (ran and entry.note != INTERRUPTED_NOTE) or failed_before_start:
                self._send_ending(entry)
        self._seen.add(entry.id)

    def _send_ending(self, entry: QueueEntry) -> None:
        if not self.config.notify_url:
            return
        title, message = ending_message(entry)
        task = asyncio.get_running_loop().create_task(
            self.notify(title, message, entry.status.value)
        )
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def notify(self, title: str, message: str, tag: str) -> None:
        """POST to the configured notify_url; a failure is a warning, never a failed job."""
        url = self.config.notify_url
        if not url:
            return
        error = await notify(url, title, message, tags=[tag])
        if error is not None:
            self.bus.emit(WarningEvent(message=f"notification to {url} failed: {error}"))

    async def stop(self, grace_s: float) -> None:
        """Let the notifications under way go out for up to `grace_s`, then drop the rest."""
        if self._sending:
            await asyncio.wait(set(self._sending), timeout=grace_s)
        for task in list(self._sending):
            task.cancel()
        await asyncio.gather(*self._sending, return_exceptions=True)
