"""What a client sees of the engine: a snapshot, kept current by applying events.

The engine keeps one `EngineView` for the snapshots it hands out; a client (the TUI,
`drapto status`) starts from a snapshot and applies the events that follow with the
same code, so both sides agree on what every event means.
"""

from __future__ import annotations

import inspect
import typing
from collections import Counter
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import PurePosixPath
from typing import Annotated, Any, Protocol

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from drapto_engine.core.events import (
    AnalysisReady,
    AudioDone,
    ClusterSampled,
    EntryChanged,
    EntryRemoved,
    Event,
    FlagChanged,
    JobFailed,
    JobFinished,
    QueueStateChanged,
    ResourcesSampled,
    RolledBack,
    ScheduleChanged,
    SegmentDone,
    SegmentFailed,
    SegmentPlanned,
    SegmentProgress,
    SegmentStarted,
    StageChanged,
    WatchChanged,
    WatchRemoved,
)
from drapto_engine.core.flags import FlagView
from drapto_engine.core.jobs import JobOptions, QueueEntry
from drapto_engine.core.metrics import ClusterWorker, ResourceSnapshot
from drapto_engine.core.savings import SavingsReport
from drapto_engine.core.schedule import ScheduleView
from drapto_engine.core.watching import WatchView

HISTORY = 300

INTERRUPTED_NOTE = "interrupted: the next run resumes"
"""The note of an entry its client stopped (Engine.interrupt): cancelled, work kept."""


class SegmentView(BaseModel):
    model_config = ConfigDict(defer_build=True, extra="forbid")

    index: int
    start_frame: int
    frames: int
    state: str = "pending"
    """pending, running, done or failed."""
    percent: float = 0.0
    fps: float = 0.0
    size_bytes: int | None = None
    attempts: int = 0
    resumed: bool = False
    host: str = ""
    """The machine encoding or having encoded it."""
    remote: bool = False
    """Encoded by a cluster worker."""
    crf: int | None = None
    """The CRF it was encoded at, once done."""
    vmaf: float | None = None
    """Its measured mean VMAF, once done with a target VMAF."""


class JobView(BaseModel):
    model_config = ConfigDict(defer_build=True, extra="forbid")

    id: str
    stage: str = "queued"
    stages: dict[str, float] = Field(default_factory=dict)
    """Unix time each stage was entered."""
    analysis: AnalysisReady | None = None
    segments: dict[int, SegmentView] = Field(default_factory=dict)
    error: str | None = None
    rollbacks: list[str] = Field(default_factory=list)
    audio: list[str] = Field(default_factory=list)
    """One line per encoded audio track."""

    @property
    def frames_done(self) -> float:
        return sum(s.frames * s.percent / 100 for s in self.segments.values())


class EngineSnapshot(BaseModel):
    model_config = ConfigDict(defer_build=True, extra="forbid")

    paused: bool = False
    workers: int = 1
    entries: list[QueueEntry] = Field(default_factory=list)
    """In queue order."""
    jobs: dict[str, JobView] = Field(default_factory=dict)
    """Jobs of this session's entries, by job id."""
    resources: list[ResourceSnapshot] = Field(default_factory=list)
    """The latest samples, oldest first."""
    flags: list[FlagView] = Field(default_factory=list)
    cluster: str | None = None
    """The address of the cluster scheduler the engine hosts (None: no cluster)."""
    cluster_workers: list[ClusterWorker] = Field(default_factory=list)
    local_slots: bool = True
    """False when the engine encodes here only while no cluster worker is usable
    (`drapto serve --workers 0`): then `workers` is the bound of that fallback."""
    watches: list[WatchView] = Field(default_factory=list)
    """The watched folders and how each goes."""
    schedule: ScheduleView = ScheduleView()
    """The encode windows, yielding, and what waits for them."""


class EngineView:
    """An EngineSnapshot kept current by applying events in order.

    Entries are indexed by id: an entry's change is one assignment even in a queue of
    tens of thousands; only a new, moved or removed entry re-sorts the list. A removed
    entry takes its jobs' views with it (every try's, as far as this view saw them)."""

    def __init__(self, snapshot: EngineSnapshot | None = None) -> None:
        self.state = snapshot or EngineSnapshot()

    @property
    def state(self) -> EngineSnapshot:
        return self._state

    @state.setter
    def state(self, snapshot: EngineSnapshot) -> None:
        self._state = snapshot
        self._entry_jobs: dict[int, set[str]] = {}
        """Entry id -> its jobs (a flag's rollback runs another job for the entry)."""
        self._job_entries: Counter[str] = Counter()
        """Job id -> how many entries ran it (a file queued again runs the same job)."""
        for entry in snapshot.entries:
            self._note_job(entry)
        self._reindex()

    def _note_job(self, entry: QueueEntry) -> None:
        if entry.job is None:
            return
        jobs = self._entry_jobs.setdefault(entry.id, set())
        if entry.job not in jobs:
            jobs.add(entry.job)
            self._job_entries[entry.job] += 1

    def _forget_entry(self, entry_id: int) -> None:
        for job_id in self._entry_jobs.pop(entry_id, ()):
            self._job_entries[job_id] -= 1
            if self._job_entries[job_id] <= 0:
                del self._job_entries[job_id]
                self.state.jobs.pop(job_id, None)

    def _reindex(self) -> None:
        self._index = {e.id: i for i, e in enumerate(self._state.entries)}

    def snapshot(self) -> EngineSnapshot:
        return self.state.model_copy(deep=True)

    def entry(self, entry_id: int) -> QueueEntry | None:
        index = self._index.get(entry_id)
        return self._state.entries[index] if index is not None else None

    def job(self, job_id: str) -> JobView:
        view = self.state.jobs.get(job_id)
        if view is None:
            view = self.state.jobs[job_id] = JobView(id=job_id)
        return view

    def apply(self, event: Event) -> None:
        s = self.state
        if isinstance(event, EntryChanged):
            entry = event.entry
            self._note_job(entry)
            index = self._index.get(entry.id)
            if index is not None and s.entries[index].position == entry.position:
                s.entries[index] = entry
            else:
                entries = [e for e in s.entries if e.id != entry.id] + [entry]
                s.entries = sorted(entries, key=lambda e: (e.position, e.id))
                self._reindex()
        elif isinstance(event, EntryRemoved):
            s.entries = [e for e in s.entries if e.id != event.entry_id]
            self._reindex()
            self._forget_entry(event.entry_id)
        elif isinstance(event, QueueStateChanged):
            s.paused, s.workers = event.paused, event.workers
        elif isinstance(event, ResourcesSampled):
            s.resources = [*s.resources[-(HISTORY - 1) :], event.snapshot]
        elif isinstance(event, ClusterSampled):
            s.cluster, s.cluster_workers = event.address, list(event.workers)
            s.local_slots = event.local_slots
        elif isinstance(event, FlagChanged):
            s.flags = [event.flag if f.name == event.flag.name else f for f in s.flags]
        elif isinstance(event, WatchChanged):
            path = event.view.folder.path
            others = [w for w in s.watches if w.folder.path != path]
            s.watches = sorted([*others, event.view], key=lambda w: w.folder.path)
        elif isinstance(event, WatchRemoved):
            s.watches = [w for w in s.watches if w.folder.path != event.path]
        elif isinstance(event, ScheduleChanged):
            s.schedule = event.view
        elif event.job:
            self._apply_job(self.job(event.job), event)

    @staticmethod
    def _apply_job(job: JobView, event: Event) -> None:
        if isinstance(event, StageChanged):
            job.stage = event.stage
            job.stages[event.stage] = event.at
        elif isinstance(event, AnalysisReady):
            job.analysis = event
        elif isinstance(event, SegmentPlanned):
            job.segments[event.index] = SegmentView(
                index=event.index, start_frame=event.start_frame, frames=event.frames
            )
        elif isinstance(event, SegmentStarted | SegmentProgress | SegmentDone | SegmentFailed):
            segment = job.segments.get(event.index)
            if segment is None:
                return
            if isinstance(event, SegmentStarted):
                segment.state, segment.attempts, segment.percent = "running", event.attempt, 0.0
                segment.host, segment.remote = event.host, event.remote
            elif isinstance(event, SegmentProgress):
                segment.percent, segment.fps = event.percent, event.fps
            elif isinstance(event, SegmentDone):
                segment.state, segment.percent, segment.fps = "done", 100.0, event.fps
                segment.size_bytes, segment.resumed = event.size_bytes, event.resumed
                segment.crf, segment.vmaf = event.crf, event.vmaf
                if event.host:
                    segment.host, segment.remote = event.host, event.remote
            else:
                segment.state = "pending" if event.will_retry else "failed"
        elif isinstance(event, AudioDone):
            job.audio.append(
                f"#{event.stream}: Opus {event.channels} ch, {event.bitrate_kbps} kb/s"
            )
        elif isinstance(event, JobFinished):
            job.stage = "done"
        elif isinstance(event, JobFailed):
            job.stage, job.error = "failed", event.error
        elif isinstance(event, RolledBack):
            job.rollbacks.append(event.flag)


def _absolute(path: str) -> str:
    """Paths travel absolute: the engine's working folder is not the client's."""
    if not path:
        raise ValueError("an empty path (paths must be absolute)")
    if not PurePosixPath(path).is_absolute():
        raise ValueError(f"{path!r} is relative (paths must be absolute)")
    return path


AbsolutePath = Annotated[str, AfterValidator(_absolute)]
"""A path the engine takes only absolute (its request refuses an empty or relative one)."""


class EngineAPI(Protocol):
    """What a client may ask of the engine, each call declared once, here: its name,
    parameters, types, defaults and result. The in-process Engine implements it; the
    service's request messages (server/protocol.py), the service's client and any other
    `ForwardsEngineAPI` (the TUI tests' replay fake) are derived from it (`api_calls`)."""

    async def add_paths(
        self,
        paths: Sequence[AbsolutePath],
        options: JobOptions | None = None,
        flags: Mapping[str, str] | None = None,
        batch: str | None = None,
    ) -> list[QueueEntry]:
        """Queue files and folders (folders: every video in them, recursively)."""
        ...

    async def add_file(
        self,
        input: AbsolutePath,
        output: AbsolutePath,
        options: JobOptions | None = None,
        flags: Mapping[str, str] | None = None,
        batch: str | None = None,
    ) -> QueueEntry:
        """Queue one file with the output path the caller chose (both absolute), with
        `drapto encode --no-daemon`'s answers: a bad output or work folder, an existing
        output without overwrite, or a file whose job or output is in hand is refused."""
        ...

    async def interrupt(self, entry_ids: Sequence[int]) -> None:
        """Stop these entries' encoders and keep their work; queued again, they resume."""
        ...

    async def remove(self, entry_id: int) -> None: ...
    async def clear_finished(self) -> int:
        """Remove done, skipped and cancelled entries; returns how many."""
        ...

    async def move(self, entry_id: int, index: int) -> None: ...
    async def pause(self) -> None: ...
    async def resume(self) -> None: ...
    async def retry(self, entry_id: int) -> QueueEntry: ...
    async def cancel(self, entry_id: int) -> None: ...
    async def set_workers(self, workers: int) -> None: ...
    async def set_flag(self, name: str, state: str) -> FlagView: ...
    async def get_flags(self) -> list[FlagView]: ...
    async def get_config(self) -> dict[str, Any]: ...
    async def get_snapshot(self) -> EngineSnapshot: ...
    async def get_savings(self) -> SavingsReport:
        """The space saved (`drapto stats`): in total, per watched folder, per day."""
        ...

    async def restore(self, path: AbsolutePath) -> str:
        """Put the original of `path` back from the trash; returns where the AV1 file is
        now (kept beside it as NAME.av1.mkv)."""
        ...

    async def watch_add(
        self, path: AbsolutePath, output: str = "beside", settle_s: float | None = None
    ) -> WatchView:
        """Watch a folder (kept across restarts): its new videos are queued once they
        settle. `output`: "beside", "replace" or "folder:/path"."""
        ...

    async def watch_remove(self, path: AbsolutePath) -> bool:
        """Stop watching a folder `watch_add` added; False when it was not watched."""
        ...

    async def watch_list(self) -> list[WatchView]: ...
    async def watch_rescan(self, path: AbsolutePath | None = None) -> list[WatchView]:
        """Rescan one watched folder (or all) now; the folders that will be."""
        ...

    async def get_schedule(self) -> ScheduleView: ...
    async def override_schedule(self, on: bool) -> ScheduleView:
        """Encode now, windows or not, until the queue is empty (False: back to the
        windows)."""
        ...


@dataclass(frozen=True)
class APICall:
    """One call of EngineAPI, read from its declaration."""

    name: str
    signature: inspect.Signature
    """With `self`, as the declaration writes it."""
    parameters: dict[str, tuple[Any, Any]]
    """Name -> (type, default); the default is inspect.Parameter.empty when required."""
    returns: Any
    """The result's type; None when the call returns nothing."""
    doc: str | None


@cache
def api_calls() -> dict[str, APICall]:
    """Every call EngineAPI declares, in declaration order."""
    calls = {}
    for name, function in vars(EngineAPI).items():
        if name.startswith("_") or not inspect.iscoroutinefunction(function):
            continue
        hints = typing.get_type_hints(function, include_extras=True)
        signature = inspect.signature(function)
        parameters = {
            p.name: (hints[p.name], p.default)
            for p in signature.parameters.values()
            if p.name != "self"
        }
        returns = hints["return"]
        calls[name] = APICall(
            name,
            signature,
            parameters,
            None if returns is type(None) else returns,
            function.__doc__,
        )
    return calls


class ForwardsEngineAPI(EngineAPI):
    """A base for an EngineAPI that hands calls on: a subclass gets every declared call
    it does not write itself, as a method with the declared signature that passes the
    call and its arguments (defaults filled in) to `forward`."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for call in api_calls().values():
            if getattr(cls, call.name) is vars(EngineAPI)[call.name]:
                setattr(cls, call.name, _forwarding(cls, call))

    async def forward(self, call: APICall, arguments: dict[str, Any]) -> Any:
        raise NotImplementedError


def _forwarding(
    owner: type[ForwardsEngineAPI], call: APICall
) -> Callable[..., Coroutine[Any, Any, Any]]:
    async def method(self: ForwardsEngineAPI, *args: Any, **kwargs: Any) -> Any:
        bound = call.signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        del arguments["self"]
        return await self.forward(call, arguments)

    method.__name__ = call.name
    method.__qualname__ = f"{owner.__qualname__}.{call.name}"
    method.__doc__ = call.doc
    method.__signature__ = call.signature  # type: ignore[attr-defined]
    return method
