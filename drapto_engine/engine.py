"""The engine: it starts, runs and cancels queue entries, and holds what their jobs
share: the resource bound, the live flags, the Monitor and the cluster it may host.

Every client (`drapto encode`, `drapto --batch`, the service and through it the TUI)
drives the engine through these methods and watches it through its event bus; none
reaches into the orchestrator. The entries themselves and every change to them are the
EntryQueue's (entry_queue.py), written to the store before the event that announces
them; notifications are a subscriber of the bus (notifications.py); whether an entry
needs an encode at all is services/skip.py's.
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
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drapto_engine.config import (
    Config,
    daily_at,
    load_saved_flags,
    save_flags,
    saved_flags_file,
)
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
    ScheduleChanged,
    StageChanged,
    WarningEvent,
)
from drapto_engine.core.flags import (
    DISTRIBUTED_ENCODING,
    TARGET_QUALITY,
    FlagSet,
    FlagSource,
    FlagState,
    FlagView,
    parse_state,
)
from drapto_engine.core.jobs import FINAL_STATUSES, EntryStatus, JobOptions, QueueEntry
from drapto_engine.core.metrics import JobSummary, ResourceSnapshot
from drapto_engine.core.models import EncodeSettings, ResolutionClass
from drapto_engine.core.savings import SavingsReport
from drapto_engine.core.schedule import ScheduleView
from drapto_engine.core.state import JobStage, JobTakenOver, StateDamaged
from drapto_engine.core.watching import WatchedFolder, WatchView
from drapto_engine.entry_queue import EntryQueue, absolute_path
from drapto_engine.infrastructure import paths
from drapto_engine.infrastructure.queue_store import QueueStore
from drapto_engine.infrastructure.resources import ResourceManager
from drapto_engine.infrastructure.savings import SavingsStore
from drapto_engine.infrastructure.state_manager import StateManager
from drapto_engine.infrastructure.store import StateStore
from drapto_engine.infrastructure.workers import default_workers
from drapto_engine.monitoring import Monitor, rollback_flag
from drapto_engine.notifications import Notifier
from drapto_engine.services.daily_summary import DailySummary
from drapto_engine.services.executors import SegmentExecutor
from drapto_engine.services.executors.local import LocalExecutor
from drapto_engine.services.household import Household
from drapto_engine.services.orchestrator import EncodeRequest, Orchestrator, job_record
from drapto_engine.services.replace import Replacer
from drapto_engine.services.skip import ALREADY_ENCODED, OUTPUT_VALIDATES, skip_reason
from drapto_engine.services.upkeep import Upkeep
from drapto_engine.services.workdir import WORK_PREFIX

if TYPE_CHECKING:
    from drapto_engine.cluster.host import ClusterHost, ClusterOptions

log = logging.getLogger(__name__)

MAX_ACTIVE_JOBS = 2
"""One job encoding and the next one's analysis and segmentation running ahead."""


MAX_WORKERS_PER_CORE = 4
"""The highest worker bound a client may set: more encoders than this only thrash."""

BACKGROUND_GRACE_S = 2.0
"""How long stopping waits for pending notifications and entry notes (a stop must finish
within 5 s)."""


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
        library: bool = False,
    ) -> None:
        """`owns_queue`: whether entries left running in the queue table are this
        engine's to take back (True for the service, which holds the state folder's
        lock); by default, unless a live engine service holds that lock. `library`:
        watch folders and keep to the schedule (the service; a direct `drapto encode`
        or batch runs at once)."""
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
            self.bus.emit(WarningEvent(message=message))
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
        self._job_entries: dict[str, int] = {}
        self._stopping = False
        self._background: set[asyncio.Task[Any]] = set()
        if owns_queue is None:
            owns_queue = not paths.held_by_another(paths.engine_lock(self.state_dir))
        self.entry_queue = EntryQueue(
            self.queue,
            self.bus,
            self.config,
            ffmpeg,
            request_for=self.request_for,
            wake=self._wake.set,
            owns_queue=owns_queue,
        )
        self.notifier = Notifier(self.bus, self.config, known=self.entry_queue.by_id)
        self.savings = SavingsStore(self.store)
        self.replacer = Replacer(self.state_dir, self.savings)
        """Replaces sources (services/replace.py) and records the space each encode saved."""
        self.upkeep = (
            Upkeep(self.replacer, self._warn, self._daily_summary()) if owns_queue else None
        )
        """Half-done replaces, the trash and the daily summary: the state folder's
        engine service does it, not an encode beside it (services/upkeep.py)."""
        self._last_sample: float | None = None
        self._inputs: dict[str, QueueEntry] | None = None
        """Entries by input and output path, for the watcher (rebuilt after a change)."""
        self.household = self._household() if library else None
        for message in self.queue.amended:
            log.warning("%s", message)
            self.bus.emit(WarningEvent(message=message))
        self.view.state = EngineSnapshot(
            paused=self.paused,
            workers=self.resources.limit,
            local_slots=cluster is None or cluster.local_slots,
            entries=self.entries(),
            flags=self.flags.views(),
            watches=self.household.watch_list() if self.household else [],
            schedule=self.household.pacer.view() if self.household else ScheduleView(),
        )

    def _household(self) -> Household:
        schedule = self.config.schedule
        watches = [
            WatchedFolder(
                path=os.path.normpath(watch.path.absolute()),
                output=watch.output,
                settle_s=watch.settle_s,
                min_saving=watch.min_saving,
                keep_days=watch.keep_days,
                from_config=True,
            )
            for watch in self.config.watch
        ]
        return Household(
            self.resources,
            self.bus.emit,
            self._add_watched,
            self._known_path,
            meta=self.queue,
            watches=watches,
            rescan_s=self.config.watch_rescan_s,
            schedule=schedule.schedule(),
            yield_cpu=schedule.yield_cpu,
            yield_hold_s=schedule.yield_hold_s,
            waiting=self._waiting,
        )

    # -- lifecycle --

    async def start(self) -> None:
        self.resources.start()
        self.monitor.start()
        if self.upkeep is not None:
            await self.upkeep.start()
        if self.household is not None:
            self.household.start()
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
        if self.household is not None:
            await self.household.stop()  # the encoders continue, so that they can stop
        tasks = [a.task for a in self._active.values() if a.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(
            self.notifier.stop(BACKGROUND_GRACE_S), self._stop_background(BACKGROUND_GRACE_S)
        )
        await self.resources.shutdown()
        await self.monitor.stop()
        if self.upkeep is not None:
            await self.upkeep.stop()
        if self.cluster is not None:
            await self.cluster.stop()
            self.cluster = self.executor = None

    async def _stop_background(self, grace_s: float) -> None:
        if self._background:  # an ended job's last note: let it be written
            await asyncio.wait(set(self._background), timeout=grace_s)
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

    def close(self) -> None:
        self.store.close()

    def _daily_summary(self) -> DailySummary | None:
        url, at = self.config.notify_url, self.config.notify_daily
        if url is None or at is None or (when := daily_at(at)) is None:
            return None
        from drapto_engine.infrastructure.notify import notify

        return DailySummary(
            self.savings, self.queue, when, partial(notify, url, tags=["floppy_disk"])
        )

    def _warn(self, message: str) -> None:
        log.warning("%s", message)
        self.bus.emit(WarningEvent(message=message))

    @contextlib.asynccontextmanager
    async def running(self) -> Any:
        await self.start()
        try:
            yield self
        finally:
            await asyncio.shield(self.stop())

    # -- what clients read --

    def entries(self) -> list[QueueEntry]:
        return self.entry_queue.entries()

    def entry(self, entry_id: int) -> QueueEntry:
        return self.entry_queue.entry(entry_id)

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
        """Queue (input, output) pairs (EntryQueue.add)."""
        return await self.entry_queue.add(
            inputs, options=options, flags=flags, batch=batch, once_per_input=once_per_input
        )

    async def add_failed(
        self,
        failures: Iterable[tuple[Path, Path, str]],
        *,
        options: JobOptions | None = None,
        flags: Mapping[str, str] | None = None,
        batch: str | None = None,
    ) -> list[QueueEntry]:
        """Record files that failed before they could start (EntryQueue.add_failed)."""
        return await self.entry_queue.add_failed(
            failures, options=options, flags=flags, batch=batch
        )

    async def refuse_queued(self, candidate: QueueEntry, holder: int) -> None:
        """Refuse a file this engine service has queued (EntryQueue.refuse_queued)."""
        await self.entry_queue.refuse_queued(candidate, holder)

    async def add_paths(
        self,
        paths: Sequence[str],
        options: JobOptions | None = None,
        flags: Mapping[str, str] | None = None,
        batch: str | None = None,
    ) -> list[QueueEntry]:
        """Queue files and folders (EntryQueue.add_paths)."""
        return await self.entry_queue.add_paths(paths, options, flags, batch)

    async def add_file(
        self,
        input: str,
        output: str,
        options: JobOptions | None = None,
        flags: Mapping[str, str] | None = None,
        batch: str | None = None,
    ) -> QueueEntry:
        """Queue one file to the output the caller chose (EntryQueue.add_file)."""
        return await self.entry_queue.add_file(input, output, options, flags, batch)

    async def remove(self, entry_id: int) -> None:
        await self.entry_queue.remove(entry_id)

    async def clear_finished(self) -> int:
        return await self.entry_queue.clear_finished()

    async def move(self, entry_id: int, index: int) -> None:
        await self.entry_queue.move(entry_id, index)

    async def retry(self, entry_id: int) -> QueueEntry:
        return await self.entry_queue.retry(entry_id)

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

    async def cancel(self, entry_id: int) -> None:
        entry = self.entry(entry_id)
        active = self._active.get(entry_id)
        if active is not None and active.task is not None:
            active.cancel_requested = True
            active.task.cancel()
            await asyncio.gather(active.task, return_exceptions=True)
        elif entry.status is EntryStatus.QUEUED:
            await self.entry_queue.update(entry, status=EntryStatus.CANCELLED, finished=time.time())

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
                self.entry_queue.by_id[i]
                for i in entry_ids
                if i not in self._active and self.entry_queue.by_id[i].status is EntryStatus.QUEUED
            ]
            if not running and not queued:
                return
            for active in running:
                active.interrupt_requested = True
                if active.task is not None:
                    active.task.cancel()
            for entry in queued:
                await self.entry_queue.update(
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

    async def get_savings(self) -> SavingsReport:
        return await asyncio.to_thread(self.savings.report)

    async def restore(self, path: str) -> str:
        return str(await asyncio.to_thread(self.replacer.restore, absolute_path(path)))

    async def get_snapshot(self) -> EngineSnapshot:
        return self.snapshot()

    # -- watched folders and the schedule (services/household.py) --

    def _library(self) -> Household:
        if self.household is None:
            raise DraptoError("only the engine service watches folders (drapto serve)")
        return self.household

    async def watch_add(
        self, path: str, output: str = "beside", settle_s: float | None = None
    ) -> WatchView:
        """Watch a folder (kept across restarts)."""
        return await self._library().watch_add(path, output, settle_s)

    async def watch_remove(self, path: str) -> bool:
        return await self._library().watch_remove(path)

    async def watch_list(self) -> list[WatchView]:
        return self.household.watch_list() if self.household is not None else []

    async def watch_rescan(self, path: str | None = None) -> list[WatchView]:
        return self._library().watch_rescan(path)

    async def get_schedule(self) -> ScheduleView:
        if self.household is None:
            return ScheduleView()
        return await self.household.get_schedule(self._waiting())

    async def override_schedule(self, on: bool) -> ScheduleView:
        view = await self._library().override_schedule(on, self._waiting())
        self._wake.set()
        return view

    def _waiting(self) -> int:
        return sum(e.status is EntryStatus.QUEUED for e in self.entry_queue.by_id.values())

    def _known_path(self, path: Path) -> str | None:
        """Why a watched file is in hand already: an entry's input or output."""
        if self._inputs is None:
            index: dict[str, QueueEntry] = {}
            for entry in self.entry_queue.by_id.values():
                index[entry.output] = index[entry.input] = entry
            self._inputs = index
        found = self._inputs.get(str(path))
        if found is None:
            return None
        if found.output == str(path):
            return "a queue entry's output"
        return f"in the queue ({found.status.value})"

    async def _add_watched(self, pairs: list[tuple[Path, Path]], options: JobOptions) -> None:
        added = await self.add(pairs, options=options)
        log.info("queued %d settled file(s) from a watched folder", len(added))

    # -- running the queue --

    async def run(self, *, only: set[int] | None = None, ignore_pause: bool = False) -> None:
        """Run queued entries in order. With `only`, run just those and return once each
        has ended; without, run until stopped."""
        while not self._stopping:
            self._wake.clear()
            self._start_ready(only, ignore_pause)
            if only is not None and all(
                self.entry_queue.by_id[i].status in FINAL_STATUSES
                for i in only
                if i in self.entry_queue.by_id
            ):
                return
            await self._wake.wait()

    def _held(self) -> bool:
        """Outside the encode windows, or yielding the CPU: nothing new starts."""
        return self.household is not None and self.household.pacer.paused is not None

    def _start_ready(self, only: set[int] | None, ignore_pause: bool) -> None:
        household = self.household
        if (
            household is not None
            and household.pacer.override
            and not self._active
            and not any(e.status is EntryStatus.QUEUED for e in self.entries())
        ):
            self._spawn(household.pacer.set_override(False))  # the queue is empty
        while (
            len(self._active) < MAX_ACTIVE_JOBS
            and (ignore_pause or not self.paused)
            and not self._held()
        ):
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
            self.bus.emit(WarningEvent(message=exc.one_line()))

    async def _run_entry(self, entry: QueueEntry, active: _RunningEntry) -> None:
        try:
            entry = await self.entry_queue.update(
                entry, status=EntryStatus.RUNNING, started=time.time(), error=None, note=None
            )
            skip = await self._skip_reason(entry)
            if (
                skip in (ALREADY_ENCODED, OUTPUT_VALIDATES)
                and entry.options.over(self.config.defaults).replace
            ):
                await self._replace_only(entry)
                entry = await self.entry_queue.update(
                    self.entry_queue.by_id.get(entry.id, entry),
                    status=EntryStatus.DONE,
                    finished=time.time(),
                    stage=None,
                )
                return
            if skip is not None:
                entry = await self.entry_queue.update(
                    entry, status=EntryStatus.SKIPPED, note=skip, finished=time.time()
                )
                return
            summary = await self.encode_entry(entry, active)
            entry = await self.entry_queue.update(
                self.entry_queue.by_id.get(entry.id, entry),
                status=EntryStatus.DONE,
                summary=summary,
                finished=time.time(),
                stage=None,
            )
        except DraptoError as exc:
            entry = await self.entry_queue.update(
                self.entry_queue.by_id.get(entry.id, entry),
                status=EntryStatus.FAILED,
                error=exc.one_line(),
                finished=time.time(),
                stage=None,
            )
        except Exception as exc:  # a bug must fail its job, not hang the queue
            log.exception("entry %d failed unexpectedly", entry.id)
            entry = await self.entry_queue.update(
                self.entry_queue.by_id.get(entry.id, entry),
                status=EntryStatus.FAILED,
                error=f"{entry.input}: internal error: {exc!r} (see the log)",
                finished=time.time(),
                stage=None,
            )
        except asyncio.CancelledError:
            current = self.entry_queue.by_id.get(entry.id, entry)
            if active.interrupt_requested and not active.cancel_requested:
                entry = await asyncio.shield(
                    self.entry_queue.update(
                        current,
                        status=EntryStatus.CANCELLED,
                        note=INTERRUPTED_NOTE,
                        finished=time.time(),
                        stage=None,
                    )
                )
                return
            if not active.cancel_requested:
                await asyncio.shield(
                    self.entry_queue.update(current, status=EntryStatus.QUEUED, stage=None)
                )
                raise
            entry = await asyncio.shield(self._cancelled(current, active))
        finally:
            self._active.pop(entry.id, None)
            # its jobs' events are over: the map holds running entries' jobs only
            for job in [j for j, e in self._job_entries.items() if e == entry.id]:
                del self._job_entries[job]
            active.planned.set()
            self._wake.set()

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
        return await self.entry_queue.update(
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
                summary = await orchestrator.encode(request)
                break
            except (EncodeError, MediaError, ValidationError) as exc:
                if isinstance(exc, SourceChanged):  # no strategy's fault: nothing to retry
                    raise
                flag = rollback_flag(
                    orchestrator.stage.value, orchestrator.plan, request.settings, exc
                )
                if flag is None or flag in rollbacks:
                    raise
                rollbacks.append(flag)
                entry = await self.entry_queue.update(
                    self.entry_queue.by_id.get(entry.id, entry), rollbacks=rollbacks
                )
                self._rolled_back(orchestrator, flag, exc, entry.id)
            finally:
                watcher.cancel()
                if orchestrator.job is not None:
                    tried.add(orchestrator.job)
        await self._finish(entry, request, orchestrator.job or "")
        return summary

    async def replace_if_encoded(self, entry: QueueEntry) -> str | None:
        """For an entry with replace whose encode is done already (encoded beside before,
        or stopped between its validation and its replace): the replace, and what became
        of the original. None when the entry needs its encode (`encode_entry`)."""
        if not entry.options.over(self.config.defaults).replace:
            return None
        if await self._skip_reason(entry) not in (ALREADY_ENCODED, OUTPUT_VALIDATES):
            return None
        return await self._replace_only(entry)

    async def _replace_only(self, entry: QueueEntry) -> str:
        request = self.request_for(entry, entry.rollbacks)
        job = (await asyncio.to_thread(job_record, request)).id
        return await self._finish(entry, request, job) or "replaced"

    async def _finish(self, entry: QueueEntry, request: EncodeRequest, job: str) -> str | None:
        """After the output validated: the replace the entry asks for (its note says what
        became of the original), else the record of the space its output saves."""
        options = entry.options.over(self.config.defaults)
        try:
            outcome = await asyncio.to_thread(
                self.replacer.finish, request.input, request.output, options, f"job-{job}"
            )
        except OSError as exc:
            if options.replace:  # its journal has it: the next start finishes or undoes it
                raise DraptoError(
                    f"the replace stopped ({exc.strerror or exc}); the original is kept, and"
                    " the engine's next start finishes it",
                    request.input,
                ) from exc
            log.warning("%s: the space saved is not recorded: %s", request.input, exc)
            return None
        note = outcome.note
        if note is not None:
            self.bus.emit(WarningEvent(job=job, message=f"{request.input}: {note}"))
        elif options.replace and outcome.saving is not None and outcome.saving.trash:
            until = time.strftime("%Y-%m-%d", time.localtime(outcome.saving.keep_until))
            note = f"replaced; the original is in {outcome.saving.trash} until {until}"
        if note is not None:
            await self.entry_queue.update(self.entry_queue.by_id.get(entry.id, entry), note=note)
        return note

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
        self._count_rollback(flag)

    def _count_rollback(self, flag: str) -> None:
        """One more job rolled back with `flag` off; past the config's limit the flag is
        off for the rest of the session."""
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
        """Why an entry needs no encode (services/skip.py), None when it is encoded."""
        options = entry.options.over(self.config.defaults)
        request = self.request_for(entry, entry.rollbacks)
        return await asyncio.to_thread(
            skip_reason, request, force=bool(options.force), jobs=self.store, ffmpeg=self.ffmpeg
        )

    # -- what the jobs' events say about their entries --

    def _job_started(self, entry_id: int, job: str) -> None:
        self._job_entries[job] = entry_id
        entry = self.entry_queue.by_id.get(entry_id)
        if entry is not None and entry.job != job:
            self._spawn(self.entry_queue.update(entry, job=job))

    def _observe(self, event: Event) -> None:
        self.view.apply(event)
        if isinstance(event, RolledBack) and event.flag == TARGET_QUALITY:
            self._count_rollback(event.flag)  # a job's search turned off by its broker
        if isinstance(event, EntryChanged | EntryRemoved):
            self._inputs = None
        if isinstance(event, ScheduleChanged):
            self._wake.set()  # a window opened (or closed): the queue looks again
        if isinstance(event, AnalysisReady) and event.job in self._job_entries:
            self._analysed(self._job_entries[event.job], event.dynamic_range)
        if isinstance(event, StageChanged) and event.job in self._job_entries:
            entry = self.entry_queue.by_id.get(self._job_entries[event.job])
            if entry is not None and entry.status is EntryStatus.RUNNING:
                self.entry_queue.amend(entry, stage=event.stage, job=event.job)

    def _analysed(self, entry_id: int, dynamic_range: str) -> None:
        """The entry keeps its dynamic range (stored with its next update): clients show
        it for finished entries of earlier sessions and of batch runs too."""
        entry = self.entry_queue.by_id.get(entry_id)
        if entry is not None and entry.dynamic_range != dynamic_range:
            self.entry_queue.amend(entry, dynamic_range=dynamic_range)

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
                self.bus.emit(WarningEvent(message=f"{self._flags_file}: flags not saved ({exc})"))
        self.bus.emit(FlagChanged(flag=view, previous=previous, reason=reason))

    def _memory_notice(self, message: str) -> None:
        self.bus.emit(Alert(kind="memory_pressure", message=message))

    def _sampled(self, snapshot: ResourceSnapshot) -> None:
        last, self._last_sample = self._last_sample, snapshot.time
        if self.resources.hold is not None and last is not None:
            self.monitor.stood_still(snapshot.time - last)  # held encoders are not stalled
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
