"""Segments on cluster workers: the engine's own slots first, then a remote worker.

The engine hosts a Dask scheduler (host.py); this executor places each segment:
a free local slot runs it here, exactly as LocalExecutor does; otherwise a remote worker
with a free `encoder` slot runs it, reading the source through its own mount when its
`--path-map` covers the source (shared storage) and leads to the same file (its size and
fingerprint are compared there with those the orchestrator read when the job started), else from the segment's packets shipped as bytes
(tasks.py). With no usable worker (none joined, the
`distributed_encoding` flag off, or the job rolled back to local) it waits for a local
slot, so one machine alone behaves as it always did.

The encoded segment comes back as bytes and is written to the job's partial file; its
frames (and, for Dolby Vision, its RPUs) are counted before the orchestrator names it.
A worker lost mid-segment costs that segment only: the scheduler runs it again on
another worker (each start is reported, with its host). A remote segment failing its
check more than ROLLBACK_AFTER times finishes the job on this machine.

Import only with the cluster extra installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, cast

from distributed import Client
from distributed.client import FutureCancelledError
from distributed.diagnostics.plugin import SchedulerPlugin
from distributed.scheduler import KilledWorker, Scheduler, WorkerState

from drapto_engine.cluster.scheduler import (
    ENCODER,
    PATH_MAP_KEY,
    RemoteTaskFailed,
    refused_workers,
)
from drapto_engine.cluster.tasks import (
    PROBES_TOPIC,
    PROGRESS_TOPIC,
    Encoded,
    FileIdentity,
    MappedSourceMismatch,
    PacketIndex,
    encode_mapped_segment,
    encode_shipped_segment,
    map_path,
    packet_index,
    probes_of,
    progress_of,
    segment_quality,
    segment_result,
    segment_task,
    ship_segment,
)
from drapto_engine.core.errors import DraptoError, EncodeError
from drapto_engine.core.models import Segment
from drapto_engine.infrastructure.ffmpeg.progress import Progress
from drapto_engine.infrastructure.hdr_probe import count_rpu_frames
from drapto_engine.services.encoding.plan import VideoPlan
from drapto_engine.services.executors import SegmentRejected, SegmentRun, SegmentWork
from drapto_engine.services.executors.local import LocalExecutor, check_frames
from drapto_engine.services.quality.runner import Outcome
from drapto_engine.services.workdir import video_packets

log = logging.getLogger(__name__)

ROLLBACK_AFTER = 2
"""Remote segments of one job that may fail their check; one more finishes it locally."""
POLL_S = 0.5
KEY_PREFIX = "drapto-segment-"


class SegmentWatch(SchedulerPlugin):
    """Tells the executor each time one of its segment tasks starts on a worker, passes
    on the progress and the probes its workers send, and tells when workers come and go."""

    name = "drapto-segment-watch"

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self.starts: dict[str, Callable[[str], None]] = {}
        self.progress: dict[str, Callable[[Progress], None]] = {}
        self.probes: dict[str, Callable[[list[list[float]]], Awaitable[None]]] = {}
        self.changed = asyncio.Event()
        self._keeping: set[asyncio.Future[None]] = set()

    def log_event(self, topic: str, msg: Any) -> None:
        if topic == PROGRESS_TOPIC:
            parsed = progress_of(msg)
            if parsed is not None and (report := self.progress.get(parsed[0])) is not None:
                report(parsed[1])
        elif topic == PROBES_TOPIC:
            probes = probes_of(msg)
            if probes is not None and (keep := self.probes.get(probes[0])) is not None:
                task: asyncio.Future[None] = asyncio.ensure_future(keep(probes[1]))
                self._keeping.add(task)
                task.add_done_callback(self._kept)

    def _kept(self, task: asyncio.Future[None]) -> None:
        self._keeping.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.warning("a worker's probes were not kept: %s", exc)

    def transition(
        self, key: Any, start: str, finish: str, *args: Any, stimulus_id: str, **kwargs: Any
    ) -> None:
        if finish == "processing" and key in self.starts:
            task = self.scheduler.tasks.get(key)
            worker = task.processing_on if task is not None else None
            if worker is not None:
                self.starts[key](worker.address)
        elif finish in ("memory", "erred", "forgotten", "released"):
            self.changed.set()

    def add_worker(self, scheduler: Scheduler, worker: str) -> None:
        self.changed.set()

    def remove_worker(self, scheduler: Scheduler, worker: str, **kwargs: Any) -> None:
        self.changed.set()


@dataclass
class RemoteSlot:
    executor: DaskExecutor
    worker: WorkerState
    remote: bool = True
    hosts: list[str] = field(default_factory=list)
    addresses: list[str] = field(default_factory=list)

    @property
    def host(self) -> str:
        return str(self.worker.name)

    async def encode(self, work: SegmentWork) -> SegmentRun:
        """Encode one segment on this worker: read through a path map where a worker
        sees the source (shared storage), else from its packets shipped to it."""
        run = await self._mapped(work)
        return run if run is not None else await self._shipped(work)

    async def _mapped(self, work: SegmentWork) -> SegmentRun | None:
        """The run on a worker that reads the source through its path map, or None when
        this worker does not see it or found another file under its name (that worker
        is then remembered and sent packets from now on)."""
        ex, plan, segment = self.executor, work.plan, work.segment
        covering = [
            w.address
            for w in ex.workers()
            if _covers(w, plan.source) and w.address not in ex.mismatched.get(plan.source, ())
        ]
        if self.worker.address not in covering or work.source is None:
            return None
        # the fingerprint the orchestrator read when the job started, not a read of our own
        expected = FileIdentity(work.source.size, work.source.fingerprint)
        options: dict[str, Any] = {"workers": covering, "allow_other_workers": False}
        try:
            return await self._run(
                work,
                encode_mapped_segment,
                (plan, segment),
                {"expected": expected, "known_probes": work.known_probes},
                options,
            )
        except MappedSourceMismatch as exc:
            address = self.addresses[-1] if self.addresses else self.worker.address
            ex.mismatched.setdefault(plan.source, set()).add(address)
            log.warning(
                "segment %d: %s; its packets are shipped to that worker instead",
                segment.index,
                exc.problem,
            )
            return None

    async def _shipped(self, work: SegmentWork) -> SegmentRun:
        """The run on a worker sent the segment's packets (and the decoder's preroll)."""
        plan, segment = work.plan, work.segment
        index = await self.executor.index(plan.source)
        packets, preroll = await asyncio.to_thread(
            ship_segment, plan.source, segment.start_frame, segment.end_frame, index
        )
        return await self._run(
            work,
            encode_shipped_segment,
            (packets, preroll, plan, segment, None, index.time_base),
            {"known_probes": work.known_probes},
            {"workers": [self.worker.address], "allow_other_workers": True},
            shipped=len(packets),
        )

    async def _run(
        self,
        work: SegmentWork,
        function: Callable[..., Encoded],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: dict[str, Any],
        shipped: int = 0,
    ) -> SegmentRun:
        """Submit one segment task, wait for its bytes, write and check them."""
        key = f"{KEY_PREFIX}{work.job[:12]}-{work.segment.index}-{uuid.uuid4().hex[:8]}"
        future = self._submit(key, work, function, args, kwargs, options)
        data, quality = await self._wait(future, key, work)
        frames = await self._check(work, data)
        return SegmentRun(
            frames=frames,
            host=self._last(),
            remote=True,
            shipped_bytes=shipped + len(data),
            runs=max(1, len(self.hosts)),
            quality=quality,
        )

    def _submit(
        self,
        key: str,
        work: SegmentWork,
        function: Callable[..., Encoded],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: dict[str, Any],
    ) -> Any:
        """Submit the task under `key`, its start and progress reports routed to `work`
        (the routes are removed by `_wait`)."""
        ex = self.executor

        def started(address: str) -> None:
            host = ex.name_of(address)
            self.addresses.append(address)
            self.hosts.append(host)
            work.on_started(host)

        ex.watch.starts[key] = started
        ex.watch.progress[key] = work.on_progress
        if work.on_probe is not None:
            ex.watch.probes[key] = work.on_probe
        return ex.client.submit(
            segment_task,
            function,
            *args,
            **kwargs,
            key=key,
            resources={ENCODER: 1},
            pure=False,
            retries=0,
            **options,
        )

    async def _wait(self, future: Any, key: str, work: SegmentWork) -> tuple[bytes, Outcome | None]:
        """The segment's bytes and a target search's outcome; each way a remote run can
        fail becomes an EncodeError (a worker's own failure counts towards rolling the
        job back to local)."""
        ex, plan, segment = self.executor, work.plan, work.segment
        try:
            record = await self._result(future, key, work)
            return segment_result(record), segment_quality(record)
        except (asyncio.CancelledError, SegmentRejected):
            with contextlib.suppress(Exception):
                await asyncio.shield(ex.client.cancel([future], force=True))
            raise
        except MappedSourceMismatch:
            raise
        except DraptoError as exc:  # the worker's own check (frame count), its ffmpeg, or no record
            ex.remote_failed(
                work.job,
                EncodeError(
                    f"segment {segment.index} on worker {self._last()}: {exc.problem}",
                    plan.source,
                ),
            )
        except RemoteTaskFailed as exc:  # raised on the worker beyond drapto's own errors
            ex.remote_failed(
                work.job,
                EncodeError(
                    f"segment {segment.index} on worker {self._last()}: {exc}", plan.source
                ),
            )
        except TypeError as exc:  # a result the engine's client refused to read (not msgpack)
            ex.remote_failed(
                work.job,
                EncodeError(
                    f"segment {segment.index} on worker {self._last()}: its result is not"
                    f" plain data ({exc})",
                    plan.source,
                ),
            )
        except KilledWorker:
            raise EncodeError(
                f"segment {segment.index}: lost {len(self.hosts)} workers while encoding it"
                f" ({', '.join(self.hosts)})",
                plan.source,
            ) from None
        except (FutureCancelledError, OSError, RuntimeError, ValueError) as exc:
            raise EncodeError(
                f"segment {segment.index} on worker {self._last()}: {exc}", plan.source
            ) from None
        finally:
            ex.watch.starts.pop(key, None)
            ex.watch.progress.pop(key, None)
            ex.watch.probes.pop(key, None)
            future.release()

    async def _check(self, work: SegmentWork, data: bytes) -> int:
        """Write the bytes to the segment's partial file and count its frames (and Dolby
        Vision RPUs): the engine's own check of what a worker sent. Returns the frames."""
        plan, segment = work.plan, work.segment
        await asyncio.to_thread(work.partial.write_bytes, data)
        frames = await asyncio.to_thread(video_packets, work.partial)
        try:
            check_frames(frames, plan, segment)
            if plan.dolby_vision:
                _, with_rpu = await asyncio.to_thread(count_rpu_frames, work.partial)
                if with_rpu != frames:
                    raise EncodeError(
                        f"segment {segment.index} from worker {self._last()} has"
                        f" {with_rpu} Dolby Vision RPUs for {frames} frames",
                        plan.source,
                    )
        except EncodeError as exc:
            self.executor.remote_failed(work.job, exc)
        return frames

    async def _result(self, future: Any, key: str, work: SegmentWork) -> object:
        """The task's result; SegmentRejected when no worker is left that may run it (the
        scheduler would keep it waiting for one forever)."""

        async def wait() -> object:
            return cast(object, await future)

        waiter = asyncio.ensure_future(wait())
        try:
            while True:
                done, _ = await asyncio.wait({waiter}, timeout=POLL_S)
                if done:
                    return waiter.result()
                task = self.executor.scheduler.tasks.get(key)
                if task is not None and task.state == "no-worker":
                    raise SegmentRejected(
                        f"segment {work.segment.index}: no worker left to run it"
                        f" (last on {self._last()})",
                        work.plan.source,
                    )
        finally:
            if not waiter.done():
                waiter.cancel()
                with contextlib.suppress(BaseException):
                    await waiter

    def _last(self) -> str:
        return self.hosts[-1] if self.hosts else self.host


class DaskExecutor:
    """`local` is this machine's executor; `local_slots=False` sends every segment to
    the workers while any is usable (tests, or an engine on a weak machine)."""

    def __init__(
        self,
        local: LocalExecutor,
        scheduler: Scheduler,
        client: Client,
        watch: SegmentWatch,
        *,
        local_slots: bool = True,
        enabled: Callable[[], bool] = lambda: True,
        on_rollback: Callable[[str, str], None] | None = None,
    ) -> None:
        self.local = local
        self.scheduler = scheduler
        self.client = client
        self.watch = watch
        self.local_slots = local_slots
        self.enabled = enabled
        self.on_rollback = on_rollback
        self.busy: dict[str, int] = {}
        """Segments this engine has in flight on each worker (by address)."""
        self.failures: dict[str, int] = {}
        self.rolled_back: set[str] = set()
        self._indexes: dict[Path, asyncio.Task[PacketIndex]] = {}
        self.mismatched: dict[Path, set[str]] = {}
        """Workers (by address) whose path map leads to another file than the source."""

    def workers(self) -> list[WorkerState]:
        refused = refused_workers(self.scheduler)
        return [
            ws
            for ws in self.scheduler.workers.values()
            if ws.resources.get(ENCODER, 0) > 0 and ws.address not in refused
        ]

    def name_of(self, address: str) -> str:
        ws = self.scheduler.workers.get(address)
        return str(ws.name) if ws is not None else address

    def concurrency(self) -> int:
        remote = sum(int(ws.resources.get(ENCODER, 0)) for ws in self.workers())
        return max(1, (self.local.concurrency() if self.local_slots else 0) + remote)

    def _free(self, ws: WorkerState) -> int:
        return int(ws.resources.get(ENCODER, 0)) - self.busy.get(ws.address, 0)

    @contextlib.asynccontextmanager
    async def slot(
        self, job: str, plan: VideoPlan, segment: Segment, priority: int
    ) -> AsyncIterator[LocalSlotOrRemote]:
        while True:
            usable = self.enabled() and job not in self.rolled_back
            workers = self.workers() if usable else []
            if not workers or (self.local_slots and self.local.free()):
                async with self.local.slot(job, plan, segment, priority) as local:
                    yield local
                return
            best = max(workers, key=self._free)
            if self._free(best) > 0:
                self.busy[best.address] = self.busy.get(best.address, 0) + 1
                try:
                    yield RemoteSlot(self, best)
                finally:
                    self.busy[best.address] -= 1
                    self.watch.changed.set()
                return
            self.watch.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.watch.changed.wait(), POLL_S)

    def record(self, plan: VideoPlan, run: SegmentRun) -> None:
        self.local.record(plan, run)

    async def index(self, source: Path) -> PacketIndex:
        """The source's packet index, built once per file (the first segment waits)."""
        task = self._indexes.get(source)
        if task is None or (task.done() and task.exception() is not None):
            task = self._indexes[source] = asyncio.ensure_future(
                asyncio.to_thread(packet_index, source)
            )
        return await asyncio.shield(task)

    def remote_failed(self, job: str, error: EncodeError) -> NoReturn:
        """Count a remote segment that failed; raise its error. The one failure too many
        rolls the job back to local encoding, and that segment's try is given back."""
        count = self.failures[job] = self.failures.get(job, 0) + 1
        if count > ROLLBACK_AFTER and job not in self.rolled_back:
            self.rolled_back.add(job)
            log.warning("job %s: %d remote segments failed; finishing it locally", job, count)
            if self.on_rollback is not None:
                self.on_rollback(job, error.one_line())
            raise SegmentRejected(error.problem, error.path, error.hint) from None
        raise error


LocalSlotOrRemote = Any
"""LocalSlot or RemoteSlot: both satisfy executors.Slot."""


def _covers(ws: WorkerState, source: Path) -> bool:
    raw = ws.extra.get(PATH_MAP_KEY) if isinstance(ws.extra, dict) else None
    if not raw:
        return False
    try:
        pairs = tuple((Path(a), Path(b)) for a, b in json.loads(raw))
    except (ValueError, TypeError):
        return False
    return map_path(source, pairs) is not None
