"""The queue's entries as the engine holds them, and every change to them.

`EntryQueue` adds entries (files, folders, files that failed before they could start),
refuses a file whose job or output is already in hand, removes, reorders and retries
entries, and writes each change to the queue table before the event that announces it.
Running an entry is the engine's (engine.py); this module never starts or stops one.

A queue entry is changed in this copy first (`EntryQueue.update`), then written to the
queue table one write at a time with the entries as they are then, so overlapping
updates of one entry never undo each other.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from drapto_engine.config import Config
from drapto_engine.core.errors import DraptoError
from drapto_engine.core.events import EntryChanged, EntryRemoved, EventBus
from drapto_engine.core.flags import parse_states
from drapto_engine.core.jobs import EntryStatus, JobOptions, QueueEntry
from drapto_engine.infrastructure.queue_store import QueueStore
from drapto_engine.services.library import file_problem, output_path, scan_folder
from drapto_engine.services.orchestrator import EncodeRequest, job_record
from drapto_engine.services.outputs import (
    check_folder,
    check_free,
    check_output_path,
    named_outputs,
)

CLEARED_STATUSES = frozenset({EntryStatus.DONE, EntryStatus.SKIPPED, EntryStatus.CANCELLED})
"""What clear_finished removes: failed entries stay until retried or removed."""


class EntryQueue:
    """The engine's queue entries, by id, and the queue table behind them.

    `request_for`: the job an entry would run (the engine's, with its live flags), to
    refuse a file whose job is in hand. `wake`: called when an entry may start now (one
    was added, moved or retried). `owns_queue`: whether entries left running in the
    table are this engine's to take back (see Engine)."""

    def __init__(
        self,
        table: QueueStore,
        bus: EventBus,
        config: Config,
        ffmpeg: str,
        *,
        request_for: Callable[[QueueEntry], EncodeRequest],
        wake: Callable[[], None],
        owns_queue: bool,
    ) -> None:
        self.table = table
        self.bus = bus
        self.config = config
        self.ffmpeg = ffmpeg
        self.request_for = request_for
        self.wake = wake
        self.by_id: dict[int, QueueEntry] = {}
        self._writing = asyncio.Lock()
        """Held while entries are written to the queue table: one write at a time, each
        of the entries as they are then, so the table ends as the engine's view does."""
        self._recover(owns_queue)

    def _recover(self, owned: bool) -> None:
        """Entries a killed engine left running go back to the queue: they resume. A
        live engine's running entries are its own: another process (`encode --no-daemon`
        beside it) leaves them as they are."""
        for entry in self.table.entries():
            if owned and entry.status is EntryStatus.RUNNING:
                entry = entry.model_copy(update={"status": EntryStatus.QUEUED, "stage": None})
                self.table.put(entry)
            self.by_id[entry.id] = entry

    def entries(self) -> list[QueueEntry]:
        return sorted(self.by_id.values(), key=lambda e: (e.position, e.id))

    def entry(self, entry_id: int) -> QueueEntry:
        entry = self.by_id.get(entry_id)
        if entry is None:
            raise DraptoError(f"no queue entry {entry_id}")
        return entry

    async def add(
        self,
        inputs: Iterable[tuple[Path, Path]],
        *,
        options: JobOptions | None = None,
        flags: Mapping[str, str] | None = None,
        batch: str | None = None,
        once_per_input: bool = True,
    ) -> list[QueueEntry]:
        """Queue (input, output) pairs; an input already waiting or running is not added
        twice (unless not `once_per_input`: add_file has refused what it must)."""
        flag_states = {k: v.value for k, v in parse_states(flags or {}).items()}
        busy = {
            e.input: e
            for e in self.by_id.values()
            if e.status in (EntryStatus.QUEUED, EntryStatus.RUNNING)
        }
        added: list[QueueEntry] = []
        for source, output in inputs:
            key = str(source.resolve())
            if key in busy and once_per_input:
                added.append(busy[key])
                continue
            entry = QueueEntry(
                id=0,
                input=key,
                output=str(output.resolve()),
                position=0,
                options=options or JobOptions(),
                flags=flag_states,
                batch=batch,
            )
            stored = await asyncio.to_thread(self.table.add, entry)
            self.by_id[stored.id] = busy[key] = stored
            self.bus.emit(EntryChanged(entry=stored))
            added.append(stored)
        self.wake()
        return added

    async def add_paths(
        self,
        paths: Sequence[str],
        options: JobOptions | None = None,
        flags: Mapping[str, str] | None = None,
        batch: str | None = None,
    ) -> list[QueueEntry]:
        """Queue files and folders (every video in a folder, recursively); outputs go
        beside each input, or mirror its folder under the options' output_dir.

        Paths must be absolute: the engine's working folder means nothing to a client.
        A file in a folder that has a video extension but cannot be read as a video is
        queued as a failed entry, so that the run that asked for it reports it."""
        chosen = (options or JobOptions()).over(self.config.defaults)
        output_dir = chosen.output_dir
        if chosen.work_dir is not None:
            await asyncio.to_thread(check_folder, chosen.work_dir)
        pairs: list[tuple[Path, Path]] = []
        failed: list[tuple[Path, Path, str]] = []
        for path in [absolute_path(text) for text in paths]:
            if path.is_dir():
                skip = [output_dir] if output_dir is not None else []
                scan = await asyncio.to_thread(scan_folder, path, self.ffmpeg, skip=skip)
                for rejected, why in scan.rejected:
                    out = output_path(rejected, output_dir, root=path)
                    failed.append((rejected, out, f"{rejected}: {why}"))
                pairs += [(v, output_path(v, output_dir, root=path)) for v in scan.videos]
            elif path.is_file():
                pairs.append((path, output_path(path, output_dir)))
            elif os.path.lexists(path):  # a FIFO, a broken link, a loop: say which
                raise DraptoError(file_problem(path) or "is not a regular file", path)
            else:
                raise DraptoError("no such file or folder", path)
        pairs, refused = await asyncio.to_thread(named_outputs, pairs)
        failed += refused
        added = await self.add(pairs, options=options, flags=flags, batch=batch)
        return added + await self.add_failed(failed, options=options, flags=flags, batch=batch)

    async def add_file(
        self,
        input: str,
        output: str,
        options: JobOptions | None = None,
        flags: Mapping[str, str] | None = None,
        batch: str | None = None,
    ) -> QueueEntry:
        """Queue one file with the output path the caller chose (both absolute), with
        the answers `drapto encode --no-daemon` gives: the output rules of
        services/outputs.py, an existing output refused unless overwritten, and a file
        whose job or output this engine has in hand refused, naming it."""
        source, target = absolute_path(input), absolute_path(output)
        problem = await asyncio.to_thread(file_problem, source)
        if problem is not None:
            raise DraptoError(problem, source)
        chosen = (options or JobOptions()).over(self.config.defaults)
        await asyncio.to_thread(
            check_output_path, target, source, made_folder=chosen.output_dir is not None
        )
        if chosen.work_dir is not None:
            await asyncio.to_thread(check_folder, chosen.work_dir)
        await asyncio.to_thread(check_free, target, bool(chosen.overwrite))
        candidate = QueueEntry(
            id=0,
            input=str(source.resolve()),
            output=str(target.resolve()),
            position=0,
            options=options or JobOptions(),
            flags={k: v.value for k, v in parse_states(flags or {}).items()},
        )
        await self._refuse_busy(candidate)
        added = await self.add(
            [(source, target)], options=options, flags=flags, batch=batch, once_per_input=False
        )
        return added[0]

    async def refuse_queued(self, candidate: QueueEntry, holder: int) -> None:
        """For `encode --no-daemon` beside a live engine service (process `holder`) on
        the same state folder: a file waiting in that engine's queue (the same job, or
        to the same output) is refused as the engine itself refuses it. Running ones
        are refused by the job lock."""
        await self._refuse_busy(candidate, holder, statuses=(EntryStatus.QUEUED,))

    async def _refuse_busy(
        self,
        candidate: QueueEntry,
        holder_pid: int | None = None,
        statuses: tuple[EntryStatus, ...] = (EntryStatus.QUEUED, EntryStatus.RUNNING),
    ) -> None:
        """As the job lock refuses an encode in another process (StateManager.begin):
        the same job (input and settings) or the same output already in hand here."""
        job = (await asyncio.to_thread(job_record, self.request_for(candidate))).id
        pid = os.getpid() if holder_pid is None else holder_pid
        holder = f"another drapto (process {pid})"
        for entry in self.by_id.values():
            if entry.status not in statuses:
                continue
            same_output = entry.output == candidate.output
            if entry.status is EntryStatus.QUEUED and (same_output or entry.job == job):
                raise DraptoError(
                    f"is queued in {holder} as entry {entry.id}, to {entry.output}",
                    candidate.input,
                    hint="wait for it or remove it",
                )
            if entry.job == job or (same_output and entry.input == candidate.input):
                raise DraptoError(
                    f"is being encoded by {holder}", candidate.input, hint="wait for it or stop it"
                )
            if same_output:
                raise DraptoError(
                    f"its output {candidate.output} is being written by another drapto"
                    f" (process {pid}, from {entry.input})",
                    candidate.input,
                    hint="wait for it or stop it",
                )

    async def add_failed(
        self,
        failures: Iterable[tuple[Path, Path, str]],
        *,
        options: JobOptions | None = None,
        flags: Mapping[str, str] | None = None,
        batch: str | None = None,
    ) -> list[QueueEntry]:
        """Record (input, output, why) as entries that failed before they could start:
        files a folder scan found but could not read. They count as failures of the run
        that queued them (its summary, exit status and notifications)."""
        flag_states = {k: v.value for k, v in parse_states(flags or {}).items()}
        added: list[QueueEntry] = []
        for source, output, why in failures:
            now = time.time()
            entry = QueueEntry(
                id=0,
                input=str(source),
                output=str(output),
                position=0,
                status=EntryStatus.FAILED,
                options=options or JobOptions(),
                flags=flag_states,
                batch=batch,
                error=why,
                started=now,
                finished=now,
            )
            stored = await asyncio.to_thread(self.table.add, entry)
            self.by_id[stored.id] = stored
            self.bus.emit(EntryChanged(entry=stored))
            added.append(stored)
        return added

    async def remove(self, entry_id: int) -> None:
        entry = self.entry(entry_id)
        if entry.status is EntryStatus.RUNNING:
            raise DraptoError(f"entry {entry_id} is running: cancel it first", entry.input)
        del self.by_id[entry_id]  # first: the queue must not start it meanwhile
        self.bus.emit(EntryRemoved(entry_id=entry_id))
        async with self._writing:
            await asyncio.to_thread(self.table.delete, entry_id)

    async def clear_finished(self) -> int:
        """Remove done, skipped and cancelled entries (failed ones stay until retried or
        removed); returns how many went."""
        cleared = [e.id for e in self.by_id.values() if e.status in CLEARED_STATUSES]
        for entry_id in cleared:
            del self.by_id[entry_id]
            self.bus.emit(EntryRemoved(entry_id=entry_id))
        async with self._writing:
            for entry_id in cleared:
                await asyncio.to_thread(self.table.delete, entry_id)
        return len(cleared)

    async def move(self, entry_id: int, index: int) -> None:
        """Put an entry at `index` in the queue order (clamped), renumbering the rest."""
        entry = self.entry(entry_id)
        order = [e for e in self.entries() if e.id != entry_id]
        index = max(0, min(index, len(order)))
        order.insert(index, entry)
        changed = [e.model_copy(update={"position": i}) for i, e in enumerate(order)]
        changed = [e for e in changed if e.position != self.by_id[e.id].position]
        for e in changed:
            self.by_id[e.id] = e
        await self.write([e.id for e in changed])
        self.wake()

    async def retry(self, entry_id: int) -> QueueEntry:
        entry = self.entry(entry_id)
        if entry.status not in (EntryStatus.FAILED, EntryStatus.CANCELLED):
            raise DraptoError(
                f"entry {entry_id} is {entry.status.value}: only failed or cancelled entries are retried"
            )
        entry = await self.update(
            entry, status=EntryStatus.QUEUED, error=None, note=None, rollbacks=[], finished=None
        )
        self.wake()
        return entry

    async def update(self, entry: QueueEntry, **changes: Any) -> QueueEntry:
        """Change the entry as the engine holds it now, not as the caller last saw it:
        two updates of one entry may overlap (a job's id noted in the background while
        the job fails), and the later must not undo the other."""
        updated = self.by_id.get(entry.id, entry).model_copy(update=changes)
        if updated.id > 0:
            self.by_id[updated.id] = updated
            await self.write([updated.id])
        return updated

    def amend(self, entry: QueueEntry, **changes: Any) -> None:
        """Change an entry in this copy only and tell clients (a running entry's stage,
        its dynamic range): the change is written with the entry's next update."""
        updated = entry.model_copy(update=changes)
        self.by_id[updated.id] = updated
        self.bus.emit(EntryChanged(entry=updated))

    async def write(self, entry_ids: list[int]) -> None:
        """Write these entries as they are when their turn comes, then tell clients."""
        async with self._writing:
            latest = [self.by_id[i] for i in entry_ids if i in self.by_id]
            if latest:
                await asyncio.to_thread(self.table.put_all, latest)
        for entry_id in entry_ids:
            if entry_id in self.by_id:
                self.bus.emit(EntryChanged(entry=self.by_id[entry_id]))


def absolute_path(text: str) -> Path:
    """A path a client sent: it must be absolute (a relative one would be read against
    the engine's working folder, which the client knows nothing of)."""
    if not text:
        raise DraptoError("an empty path was given (paths must be absolute)")
    path = Path(text)
    if not path.is_absolute():
        raise DraptoError(
            "is a relative path: the engine needs absolute paths", text, hint="give the full path"
        )
    return path
