"""The engine: the queue, its jobs, the shared resource bound, live flags and monitoring.

Every client (`drapto encode`, `drapto --batch`, the service and through it the TUI)
drives the engine through these methods and watches it through its event bus; none
reaches into the orchestrator. Queue changes are written to the store before the
event that announces them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drapto_engine.config import Config, load_saved_flags, save_flags, saved_flags_file
from drapto_engine.core.api import INTERRUPTED_NOTE, EngineSnapshot, EngineView
from drapto_engine.core.errors import (
    DraptoError,
    EncodeError,
    MediaError,
    SourceChanged,
    ValidationError,
)
from drapto_engine.core.events import (
    Alert,
    AnalysisReady,
    ClusterSampled,
    EntryChanged,
    EntryRemoved,
    Event,
    EventBus,
    FlagChanged,
    QueueStateChanged,
    ResourcesSampled,
    RolledBack,
    StageChanged,
    Warning,
)
from drapto_engine.core.flags import (
    DISTRIBUTED_ENCODING,
    FlagSet,
    FlagSource,
    FlagState,
    FlagView,
    parse_state,
    parse_states,
)
from drapto_engine.core.jobs import FINAL_STATUSES, EntryStatus, JobOptions, QueueEntry
from drapto_engine.core.metrics import JobSummary, ResourceSnapshot, size_change
from drapto_engine.core.models import EncodeSettings, ResolutionClass
from drapto_engine.core.state import JobStage, JobTakenOver, StateDamaged
from drapto_engine.infrastructure import paths
from drapto_engine.infrastructure.probe import probe
from drapto_engine.infrastructure.resources import ResourceManager, default_workers
from drapto_engine.infrastructure.state_manager import StateManager
from drapto_engine.infrastructure.store import QueueStore, StateStore
from drapto_engine.monitoring import Monitor, rollback_flag
from drapto_engine.services.executors import SegmentExecutor
from drapto_engine.services.executors.local import LocalExecutor
from drapto_engine.services.library import (
    ALREADY_AV1,
    file_problem,
    is_av1,
    output_path,
    scan_folder,
)
from drapto_engine.services.orchestrator import EncodeRequest, Orchestrator, job_record
from drapto_engine.services.outputs import check_folder, check_free, check_output_path
from drapto_engine.services.workdir import WORK_PREFIX

if TYPE_CHECKING:
    from drapto_engine.cluster.host import ClusterHost, ClusterOptions

log = logging.getLogger(__name__)

MAX_ACTIVE_JOBS = 2
"""One job encoding and the next one's analysis and segmentation running ahead."""


MAX_WORKERS_PER_CORE = 4
"""The highest worker bound a client may set: more encoders than this only thrash."""

CLEARED_STATUSES = frozenset({EntryStatus.DONE, EntryStatus.SKIPPED, EntryStatus.CANCELLED})
"""What clear_finished removes: failed entries stay until retried or removed."""

BACKGROUND_GRACE_S = 2.0
"""How long stopping waits for pending notifications (a stop must finish within 5 s)."""


@dataclass
class _RunningEntry:
    """A queue entry the engine runs now: its task, its orchestrator, what was asked of it."""

    entry_id: int
    task: asyncio.Task[None] | None = None
    orchestrator: Orchestrator | None = None
    cancel_requested: bool = False
    interrupt_requested: bool = False
    planned: asyncio.Event = field(default_factory=asyncio.Event)


class Engine:
    """One engine session. Use `async with engine.running():` or call start/stop."""

    def __init__(
        self,
        ffmpeg: str,
        *,
        config: Config | None = None,
        state_dir: Path | None = None,
        config_path: Path | None = None,
        run_flags: Mapping[str, FlagState] | None = None,
        workers: int | None = None,
        persist: bool = True,
        bus: EventBus | None = None,
        cluster: ClusterOptions | None = None,
        owns_queue: bool | None = None,
    ) -> None:
        """`owns_queue`: whether entries left running in the queue table are this
        engine's to take back (True for the service, which holds the state folder's
        lock); by default, unless a live engine service holds that lock."""
        self.ffmpeg = ffmpeg
        self.cluster_options = cluster
        """A Dask scheduler to host beside the engine (`drapto serve --cluster`)."""
        self.cluster: ClusterHost | None = None
        self.executor: SegmentExecutor | None = None
        """Where segments run: this machine unless a cluster is hosted."""
        self.config = config or Config()
        self.state_dir = state_dir or paths.state_dir()
        self.persist = persist
        """Whether live flag and worker changes are saved for later sessions."""
        self.bus = bus or EventBus()
        self.view = EngineView()
        self.bus.subscribe(self._observe)
        self.store = StateStore(paths.state_db(self.state_dir))
        if self.store.recovered is not None:
            message = self.store.recovered.message(self.store.path)
            log.warning("%s", message)
            self.bus.emit(Warning(message=message))
        self.state = StateManager(self.store)
        self.queue = QueueStore(self.store)
        self._flags_file = saved_flags_file(config_path)
        self._saved_flags = load_saved_flags(self._flags_file) if persist else {}
        self.flags = FlagSet(
            {
                FlagSource.CONFIG: self.config.flags,
                FlagSource.SAVED: self._saved_flags,
                FlagSource.RUN: dict(run_flags or {}),
            },
            on_change=self._flag_changed,
        )
        stored_workers = self.queue.get_meta("workers") if persist else None
        limit = (
            workers
            or (int(stored_workers) if stored_workers else None)
            or self.config.workers
            or default_workers(ResolutionClass.SD)
        )
        self.resources = ResourceManager(
            limit,
            reserve=self.config.memory_reserve_percent / 100,
            on_notice=self._memory_notice,
            on_sample=self._sampled,
        )
        self.monitor = Monitor(
            self.bus, stall_s=self.config.stall_timeout_s, slow_ratio=self.config.slow_encoder_ratio
        )
        self.paused = persist and self.queue.get_meta("paused") == "1"
        self._wake = asyncio.Event()
        self._active: dict[int, _RunningEntry] = {}
        self._entries: dict[int, QueueEntry] = {}
        self._job_entries: dict[str, int] = {}
        self._stopping = False
        self._background: set[asyncio.Task[Any]] = set()
        self._writing = asyncio.Lock()
        """Held while entries are written to the queue table: one write at a time, each
        of the entries as they are then, so the table ends as the engine's view does."""
        if owns_queue is None:
            owns_queue = not paths.held_by_another(paths.engine_lock(self.state_dir))
        self._recover_entries(owns_queue)
        for message in self.queue.amended:
            log.warning("%s", message)
            self.bus.emit(Warning(message=message))
        self.view.state = EngineSnapshot(
            paused=self.paused,
            workers=self.resources.limit,
            local_slots=cluster is None or cluster.local_slots,
            entries=self.entries(),
            flags=self.flags.views(),
        )

    # -- lifecycle --

    def _recover_entries(self, owned: bool) -> None:
        """Entries a killed engine left running go back to the queue: they resume. A
        live engine's running entries are its own: another process (`encode --no-daemon`
        beside it) leaves them as they are."""
        for entry in self.queue.entries():
            if owned and entry.status is EntryStatus.RUNNING:
                entry = entry.model_copy(update={"status": EntryStatus.QUEUED, "stage": None})
                self.queue.put(entry)
            self._entries[entry.id] = entry

    async def start(self) -> None:
        self.resources.start()
        self.monitor.start()
        if self.cluster_options is not None:
            await self._start_cluster(self.cluster_options)

    async def _start_cluster(self, options: ClusterOptions) -> None:
        from drapto_engine.cluster.host import ClusterHost

        host = ClusterHost(options, self.config.ffmpeg_path)
        await host.start()
        self.cluster = host
        self.executor = host.executor(
            LocalExecutor(self.resources),
            enabled=lambda: self.flags.enabled(DISTRIBUTED_ENCODING),
            on_rollback=self._cluster_rollback,
        )
        log.info("cluster scheduler on %s", host.address)

    def _cluster_rollback(self, job: str, error: str) -> None:
        self.bus.emit(
            RolledBack(
                job=job,
                flag=DISTRIBUTED_ENCODING,
                stage=JobStage.ENCODING.value,
                error=error,
                entry=self._job_entries.get(job),
            )
        )

    async def stop(self) -> None:
        """Stop every running job (their state is kept; they resume next time)."""
        self._stopping = True
        self._wake.set()
        tasks = [a.task for a in self._active.values() if a.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._background:  # notifications of jobs that just ended: let them go out
            await asyncio.wait(set(self._background), timeout=BACKGROUND_GRACE_S)
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self.resources.shutdown()
        await self.monitor.stop()
        if self.cluster is not None:
            await self.cluster.stop()
            self.cluster = self.executor = None

    def close(self) -> None:
        self.store.close()

    @contextlib.asynccontextmanager
    async def running(self) -> Any:
        await self.start()
        try:
            yield self
        finally:
            await asyncio.shield(self.stop())

    # -- what clients read --

    def entries(self) -> list[QueueEntry]:
        return sorted(self._entries.values(), key=lambda e: (e.position, e.id))

    def entry(self, entry_id: int) -> QueueEntry:
        entry = self._entries.get(entry_id)
        if entry is None:
            raise DraptoError(f"no queue entry {entry_id}")
        return entry

    def snapshot(self) -> EngineSnapshot:
        return self.view.snapshot()

    # -- queue commands --

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
            for e in self._entries.values()
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
            stored = await asyncio.to_thread(self.queue.add, entry)
            self._entries[stored.id] = busy[key] = stored
            self.bus.emit(EntryChanged(entry=stored))
            added.append(stored)
        self._wake.set()
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
        pairs, refused = await asyncio.to_thread(_named_outputs, pairs)
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
        for entry in self._entries.values():
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
            stored = await asyncio.to_thread(self.queue.add, entry)
            self._entries[stored.id] = stored
            self.bus.emit(EntryChanged(entry=stored))
            self._notify_end(stored)
            added.append(stored)
        return added

    async def remove(self, entry_id: int) -> None:
        entry = self.entry(entry_id)
        if entry.status is EntryStatus.RUNNING:
            raise DraptoError(f"entry {entry_id} is running: cancel it first", entry.input)
        del self._entries[entry_id]  # first: the queue must not start it meanwhile
        self.bus.emit(EntryRemoved(entry_id=entry_id))
        async with self._writing:
            await asyncio.to_thread(self.queue.delete, entry_id)

    async def clear_finished(self) -> int:
        """Remove done, skipped and cancelled entries (failed ones stay until retried or
        removed); returns how many went."""
        cleared = [e.id for e in self._entries.values() if e.status in CLEARED_STATUSES]
        for entry_id in cleared:
            del self._entries[entry_id]
            self.bus.emit(EntryRemoved(entry_id=entry_id))
        async with self._writing:
            for entry_id in cleared:
                await asyncio.to_thread(self.queue.delete, entry_id)
        return len(cleared)

    async def move(self, entry_id: int, index: int) -> None:
        """Put an entry at `index` in the queue order (clamped), renumbering the rest."""
        entry = self.entry(entry_id)
        order = [e for e in self.entries() if e.id != entry_id]
        index = max(0, min(index, len(order)))
        order.insert(index, entry)
        changed = [e.model_copy(update={"position": i}) for i, e in enumerate(order)]
        changed = [e for e in changed if e.position != self._entries[e.id].position]
        for e in changed:
            self._entries[e.id] = e
        await self._store([e.id for e in changed])
        self._wake.set()

    async def pause(self) -> None:
        await self._set_paused(True)

    async def resume(self) -> None:
        await self._set_paused(False)

    async def _set_paused(self, paused: bool) -> None:
        self.paused = paused
        if self.persist:
            await asyncio.to_thread(self.queue.set_meta, "paused", "1" if paused else "0")
        self._emit_queue_state()
        self._wake.set()

    async def retry(self, entry_id: int) -> QueueEntry:
        entry = self.entry(entry_id)
        if entry.status not in (EntryStatus.FAILED, EntryStatus.CANCELLED):
            raise DraptoError(
                f"entry {entry_id} is {entry.status.value}: only failed or cancelled entries are retried"
            )
        entry = await self._update(
            entry, status=EntryStatus.QUEUED, error=None, note=None, rollbacks=[], finished=None
        )
        self._wake.set()
        return entry

    async def cancel(self, entry_id: int) -> None:
        entry = self.entry(entry_id)
        active = self._active.get(entry_id)
        if active is not None and active.task is not None:
            active.cancel_requested = True
            active.task.cancel()
            await asyncio.gather(active.task, return_exceptions=True)
        elif entry.status is EntryStatus.QUEUED:
            await self._update(entry, status=EntryStatus.CANCELLED, finished=time.time())

    async def interrupt(self, entry_ids: Sequence[int]) -> None:
        """Stop these entries for now, keeping their work: the encoders of a running one
        are stopped (finished segments stay), a queued one is not started. Each ends
        cancelled with the note INTERRUPTED_NOTE; queueing the file again (or retry)
        resumes where it stopped. Returns once their encoders have exited."""
        for entry_id in entry_ids:
            self.entry(entry_id)  # an unknown id is refused before anything is stopped
        while True:
            # Again until none is left: one of them may start while another is stopped.
            running = [self._active[i] for i in entry_ids if i in self._active]
            queued = [
                self._entries[i]
                for i in entry_ids
                if i not in self._active and self._entries[i].status is EntryStatus.QUEUED
            ]
            if not running and not queued:
                return
            for active in running:
                active.interrupt_requested = True
                if active.task is not None:
                    active.task.cancel()
            for entry in queued:
                await self._update(
                    entry, status=EntryStatus.CANCELLED, note=INTERRUPTED_NOTE, finished=time.time()
                )
            await asyncio.gather(
                *(a.task for a in running if a.task is not None), return_exceptions=True
            )

    async def set_workers(self, workers: int) -> None:
        most = MAX_WORKERS_PER_CORE * (os.cpu_count() or 1)
        if not 1 <= workers <= most:
            raise DraptoError(
                f"the worker bound must be between 1 and {most} ({MAX_WORKERS_PER_CORE} per core),"
                f" not {workers}"
            )
        await self.resources.set_limit(workers)
        if self.persist:
            await asyncio.to_thread(self.queue.set_meta, "workers", str(workers))
        self._emit_queue_state()

    async def set_flag(self, name: str, state: str) -> FlagView:
        """Change a flag now; it takes effect at its scope (the next segment or job)."""
        return self.flags.set(name, parse_state(name, state), FlagSource.LIVE)

    async def get_flags(self) -> list[FlagView]:
        return self.flags.views()

    async def get_config(self) -> dict[str, Any]:
        return self.config.model_dump(mode="json")

    async def get_snapshot(self) -> EngineSnapshot:
        return self.snapshot()

    # -- running the queue --

    async def run(self, *, only: set[int] | None = None, ignore_pause: bool = False) -> None:
        """Run queued entries in order. With `only`, run just those and return once each
        has ended; without, run until stopped."""
        while not self._stopping:
            self._wake.clear()
            self._start_ready(only, ignore_pause)
            if only is not None and all(
                self._entries[i].status in FINAL_STATUSES for i in only if i in self._entries
            ):
                return
            await self._wake.wait()

    def _start_ready(self, only: set[int] | None, ignore_pause: bool) -> None:
        while len(self._active) < MAX_ACTIVE_JOBS and (ignore_pause or not self.paused):
            if any(not a.planned.is_set() for a in self._active.values()):
                return  # the job running ahead has not finished segmenting yet
            entry = next(
                (
                    e
                    for e in self.entries()
                    if e.status is EntryStatus.QUEUED
                    and e.id not in self._active
                    and (only is None or e.id in only)
                ),
                None,
            )
            if entry is None:
                return
            active = self._active[entry.id] = _RunningEntry(entry.id)
            active.task = asyncio.create_task(
                self._state_guarded(self._run_entry(entry, active)), name=f"entry-{entry.id}"
            )

    async def _state_guarded(self, run: Awaitable[None]) -> None:
        """A state database that fails while an entry's end is recorded: one line, not a
        task's traceback (the next start moves a damaged file aside)."""
        try:
            await run
        except StateDamaged as exc:
            log.error("%s", exc.one_line())
            self.bus.emit(Warning(message=exc.one_line()))

    async def _run_entry(self, entry: QueueEntry, active: _RunningEntry) -> None:
        try:
            entry = await self._update(
                entry, status=EntryStatus.RUNNING, started=time.time(), error=None, note=None
            )
            skip = await self._skip_reason(entry)
            if skip is not None:
                entry = await self._update(
                    entry, status=EntryStatus.SKIPPED, note=skip, finished=time.time()
                )
                return
            summary = await self.encode_entry(entry, active)
            entry = await self._update(
                self._entries.get(entry.id, entry),
                status=EntryStatus.DONE,
                summary=summary,
                finished=time.time(),
                stage=None,
            )
        except DraptoError as exc:
            entry = await self._update(
                self._entries.get(entry.id, entry),
                status=EntryStatus.FAILED,
                error=exc.one_line(),
                finished=time.time(),
                stage=None,
            )
        except Exception as exc:  # a bug must fail its job, not hang the queue
            log.exception("entry %d failed unexpectedly", entry.id)
            entry = await self._update(
                self._entries.get(entry.id, entry),
                status=EntryStatus.FAILED,
                error=f"{entry.input}: internal error: {exc!r} (see the log)",
                finished=time.time(),
                stage=None,
            )
        except asyncio.CancelledError:
            current = self._entries.get(entry.id, entry)
            if active.interrupt_requested and not active.cancel_requested:
                entry = await asyncio.shield(
                    self._update(
                        current,
                        status=EntryStatus.CANCELLED,
                        note=INTERRUPTED_NOTE,
                        finished=time.time(),
                        stage=None,
                    )
                )
                return
            if not active.cancel_requested:
                await asyncio.shield(self._update(current, status=EntryStatus.QUEUED, stage=None))
                raise
            entry = await asyncio.shield(self._cancelled(current, active))
        finally:
            self._active.pop(entry.id, None)
            # its jobs' events are over: the map holds running entries' jobs only
            for job in [j for j, e in self._job_entries.items() if e == entry.id]:
                del self._job_entries[job]
            active.planned.set()
            self._wake.set()
            if entry.status in FINAL_STATUSES and not active.interrupt_requested:
                self._notify_end(entry)

    async def _cancelled(self, entry: QueueEntry, active: _RunningEntry) -> QueueEntry:
        orchestrator = active.orchestrator
        if orchestrator is not None and orchestrator.job is not None:
            still_held = True
            try:
                await self.state.set_unheld_stage(orchestrator.job, JobStage.CANCELLED, "cancelled")
            except JobTakenOver:
                still_held = False  # another drapto holds it now: its work folder is not ours
            except (DraptoError, RuntimeError):
                pass
            options = entry.options.over(self.config.defaults)
            if still_held and not options.keep_work:
                root = options.work_dir or Path(entry.output).parent
                await asyncio.to_thread(
                    shutil.rmtree, root / f"{WORK_PREFIX}{orchestrator.job}", True
                )
        return await self._update(
            entry, status=EntryStatus.CANCELLED, finished=time.time(), stage=None
        )

    async def encode_entry(
        self, entry: QueueEntry, active: _RunningEntry | None = None
    ) -> JobSummary:
        """Encode one entry, rolling back a flag whose strategy failed (see monitoring.py)."""
        active = active or _RunningEntry(entry.id)
        rollbacks = list(entry.rollbacks)
        if entry.options.over(self.config.defaults).output_dir is not None:
            # an output folder mirrors the library: its subfolders are drapto's to make
            folder = Path(entry.output).parent
            try:
                await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
            except OSError as exc:
                raise DraptoError(f"cannot create output folder ({exc.strerror})", folder) from exc
        tried: set[str] = set()  # this entry's earlier tries: replaced, not news
        while True:
            request = replace(self.request_for(entry, rollbacks), replaces=frozenset(tried))
            orchestrator = Orchestrator(
                self.ffmpeg,
                self.bus,
                self.state,
                resources=self.resources,
                flags=self.flags,
                monitor=self.monitor,
                executor=self.executor,
            )
            orchestrator.on_job = lambda job, e=entry.id: self._job_started(e, job)
            active.orchestrator = orchestrator
            watcher = asyncio.create_task(self._when_planned(orchestrator, active))
            try:
                return await orchestrator.encode(request)
            except (EncodeError, MediaError, ValidationError) as exc:
                if isinstance(exc, SourceChanged):  # no strategy's fault: nothing to retry
                    raise
                flag = rollback_flag(
                    orchestrator.stage.value, orchestrator.plan, request.settings, exc
                )
                if flag is None or flag in rollbacks:
                    raise
                rollbacks.append(flag)
                entry = await self._update(self._entries.get(entry.id, entry), rollbacks=rollbacks)
                self._rolled_back(orchestrator, flag, exc, entry.id)
            finally:
                watcher.cancel()
                if orchestrator.job is not None:
                    tried.add(orchestrator.job)

    def _rolled_back(
        self, orchestrator: Orchestrator, flag: str, exc: DraptoError, entry_id: int
    ) -> None:
        self.bus.emit(
            RolledBack(
                job=orchestrator.job or "",
                flag=flag,
                stage=orchestrator.stage.value,
                error=exc.one_line(),
                entry=entry_id or None,
            )
        )
        count = self.flags.count_rollback(flag)
        if count >= self.config.rollback_limit and self.flags.enabled(flag):
            self.flags.set(
                flag,
                FlagState.OFF,
                FlagSource.ROLLBACK,
                reason=f"{count} jobs rolled back with it off this session",
            )

    async def _when_planned(self, orchestrator: Orchestrator, active: _RunningEntry) -> None:
        await orchestrator.segments_planned.wait()
        active.planned.set()
        self._wake.set()

    def request_for(self, entry: QueueEntry, rollbacks: Iterable[str] = ()) -> EncodeRequest:
        options = entry.options.over(self.config.defaults)
        chosen: dict[str, Any] = {
            "preset": options.preset,
            "crf": options.crf,
            "target_vmaf": options.target_vmaf,
            "crf_range": options.crf_range,
            "min_segment_s": options.min_segment_s,
            "max_segment_s": options.max_segment_s,
            "hdr10_fallback": options.hdr10_fallback,
        }
        settings = EncodeSettings(**{k: v for k, v in chosen.items() if v is not None})
        overrides = {name: parse_state(name, state) for name, state in entry.flags.items()}
        overrides.update({name: FlagState.OFF for name in rollbacks})
        settings, shadow = self.flags.for_job(settings, overrides)
        return EncodeRequest(
            input=Path(entry.input),
            output=Path(entry.output),
            settings=settings,
            overwrite=bool(options.overwrite),
            keep_work=bool(options.keep_work),
            work_root=options.work_dir,
            shadow=shadow,
            priority=entry.position,
        )

    async def _skip_reason(self, entry: QueueEntry) -> str | None:
        """Why an entry needs no encode: its source is AV1 already (unless forced), or
        its output exists and is a finished encode of it (unless it is to be overwritten)."""
        output, source = Path(entry.output), Path(entry.input)
        options = entry.options.over(self.config.defaults)
        if not options.force and await asyncio.to_thread(is_av1, source):
            return ALREADY_AV1
        if options.overwrite or not output.exists() or not source.exists():
            return None
        request = self.request_for(entry, entry.rollbacks)
        record = await asyncio.to_thread(job_record, request)
        stored = await asyncio.to_thread(self.store.job, record.id)
        if stored is not None and stored.stage is JobStage.DONE:
            return "already encoded"
        return await asyncio.to_thread(_output_matches, source, output, self.ffmpeg)

    # -- bookkeeping --

    async def _update(self, entry: QueueEntry, **changes: Any) -> QueueEntry:
        """Change the entry as the engine holds it now, not as the caller last saw it:
        two updates of one entry may overlap (a job's id noted in the background while
        the job fails), and the later must not undo the other."""
        updated = self._entries.get(entry.id, entry).model_copy(update=changes)
        if updated.id > 0:
            self._entries[updated.id] = updated
            await self._store([updated.id])
        return updated

    async def _store(self, entry_ids: list[int]) -> None:
        """Write these entries as they are when their turn comes, then tell clients."""
        async with self._writing:
            latest = [self._entries[i] for i in entry_ids if i in self._entries]
            if latest:
                await asyncio.to_thread(self.queue.put_all, latest)
        for entry_id in entry_ids:
            if entry_id in self._entries:
                self.bus.emit(EntryChanged(entry=self._entries[entry_id]))

    def _job_started(self, entry_id: int, job: str) -> None:
        self._job_entries[job] = entry_id
        entry = self._entries.get(entry_id)
        if entry is not None and entry.job != job:
            self._spawn(self._update(entry, job=job))

    def _observe(self, event: Event) -> None:
        self.view.apply(event)
        if isinstance(event, AnalysisReady) and event.job in self._job_entries:
            self._analysed(self._job_entries[event.job], event.dynamic_range)
        if isinstance(event, StageChanged) and event.job in self._job_entries:
            entry = self._entries.get(self._job_entries[event.job])
            if entry is not None and entry.status is EntryStatus.RUNNING:
                updated = entry.model_copy(update={"stage": event.stage, "job": event.job})
                self._entries[entry.id] = updated
                self.bus.emit(EntryChanged(entry=updated))

    def _analysed(self, entry_id: int, dynamic_range: str) -> None:
        """The entry keeps its dynamic range (stored with its next update): clients show
        it for finished entries of earlier sessions and of batch runs too."""
        entry = self._entries.get(entry_id)
        if entry is not None and entry.dynamic_range != dynamic_range:
            updated = entry.model_copy(update={"dynamic_range": dynamic_range})
            self._entries[entry_id] = updated
            self.bus.emit(EntryChanged(entry=updated))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _emit_queue_state(self) -> None:
        self.bus.emit(QueueStateChanged(paused=self.paused, workers=self.resources.limit))

    def _flag_changed(self, view: FlagView, previous: FlagState, reason: str | None) -> None:
        if view.source is FlagSource.LIVE and self.persist:
            self._saved_flags[view.name] = view.state
            try:
                save_flags(self._flags_file, self._saved_flags)
            except OSError as exc:
                self.bus.emit(Warning(message=f"{self._flags_file}: flags not saved ({exc})"))
        self.bus.emit(FlagChanged(flag=view, previous=previous, reason=reason))

    def _memory_notice(self, message: str) -> None:
        self.bus.emit(Alert(kind="memory_pressure", message=message))

    def _sampled(self, snapshot: ResourceSnapshot) -> None:
        self.bus.emit(ResourcesSampled(snapshot=snapshot))
        if self.cluster is not None:
            busy = getattr(self.executor, "busy", None)
            self.bus.emit(
                ClusterSampled(
                    address=self.cluster.address,
                    workers=tuple(self.cluster.workers(busy)),
                    local_slots=self.cluster_options is None or self.cluster_options.local_slots,
                )
            )

    def _notify_end(self, entry: QueueEntry) -> None:
        url = self.config.notify_url
        if not url or entry.id <= 0:
            return
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
        self._spawn(self.notify(f"drapto: job {entry.status.value}", message, entry.status.value))

    async def notify(self, title: str, message: str, tag: str) -> None:
        """POST to the configured notify_url; a failure is a warning, never a failed job."""
        from drapto_engine.infrastructure.notify import notify

        url = self.config.notify_url
        if not url:
            return
        error = await notify(url, title, message, tags=[tag])
        if error is not None:
            self.bus.emit(Warning(message=f"notification to {url} failed: {error}"))


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


def _named_outputs(
    pairs: list[tuple[Path, Path]],
) -> tuple[list[tuple[Path, Path]], list[tuple[Path, Path, str]]]:
    """The (input, output) pairs whose output names pass services/outputs.py, and the
    others as failures (a folder named like an output). Their folders are checked when
    each job starts: an output_dir's subfolders are made then."""
    good: list[tuple[Path, Path]] = []
    refused: list[tuple[Path, Path, str]] = []
    for source, output in pairs:
        try:
            check_output_path(output, source, made_folder=True)
        except DraptoError as exc:
            refused.append((source, output, exc.one_line()))
        else:
            good.append((source, output))
    return good, refused


def _output_matches(source: Path, output: Path, ffmpeg: str) -> str | None:
    """ "output exists and validates" when an existing output is AV1 with the source's
    frame count; None when it is something else (then it is not ours to skip)."""
    try:
        existing, original = probe(output, ffmpeg), probe(source, ffmpeg)
    except DraptoError:
        return None
    same = (
        existing.video.codec == "av1" and existing.video.frame_count == original.video.frame_count
    )
    return "output exists and validates" if same else None
