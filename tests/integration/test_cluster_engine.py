"""The engine hosting its cluster: segments of real jobs encoded by real `drapto worker`
processes (loopback TLS, certificates from a real `drapto cluster init`), the engine's
own slots set to 0 so that every segment goes remote.

One engine (its scheduler inside it) and two workers serve the module: `w-shared` reads
the source through its --path-map (shared storage), `w-ship` gets each segment's packets
as bytes. The test that kills a worker runs last.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import av
import numpy as np
import psutil
import pytest

pytest.importorskip("distributed", reason="the cluster extra (distributed) is not installed")
pytest.importorskip("cryptography", reason="the cluster extra (cryptography) is not installed")

from engine_helpers import remote_only_engine
from ffmpeg_wrappers import cutting_ffmpeg
from mediagen import make_video

from drapto_engine.cli.printers import summary_lines
from drapto_engine.cluster.scheduler import ENCODER
from drapto_engine.core.events import (
    ClusterSampled,
    Event,
    JobFinished,
    RolledBack,
    SegmentDone,
    SegmentFailed,
    SegmentProgress,
    SegmentStarted,
)
from drapto_engine.core.jobs import EntryStatus, JobOptions, QueueEntry
from drapto_engine.engine import Engine
from drapto_engine.infrastructure.hdr_probe import count_rpu_frames
from drapto_engine.infrastructure.scratch import scratch_root
from drapto_engine.services.executors.local import HOST
from drapto_engine.services.validation import source_frame_times

# The module's scheduler and worker processes are made once: every test of the module
# runs on one xdist worker (each would otherwise start its own set).
pytestmark = pytest.mark.xdist_group("cluster-engine")

DRAPTO = [sys.executable, "-m", "drapto_engine.cli"]
FAST = JobOptions(preset=12, min_segment_s=1.0, max_segment_s=2.0)
T = TypeVar("T")


class LoopThread:
    """The engine's event loop, in a thread: the scheduler inside it keeps running
    between tests while the test thread drives and watches it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 300) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)


@dataclass
class Hosted:
    engine: Engine
    loop: LoopThread
    workers: dict[str, subprocess.Popen[str]]
    shared: Path
    events: list[Event] = field(default_factory=list)
    on_event: list[Any] = field(default_factory=list)

    def run(self, source: Path, output: Path, options: JobOptions = FAST) -> QueueEntry:
        async def go() -> QueueEntry:
            [entry] = await self.engine.add([(source, output)], options=options)
            await self.engine.run(only={entry.id}, ignore_pause=True)
            return self.engine.entry(entry.id)

        return self.loop.run(go())

    def of(self, kind: type[T], job: str | None = None) -> list[T]:
        return [
            e
            for e in list(self.events)
            if isinstance(e, kind) and (job is None or getattr(e, "job", None) == job)
        ]


def _start_worker(
    address: str, bundle: Path, name: str, log: Path, extra: list[str], env: dict[str, str] | None
) -> Any:
    argv = [*DRAPTO, "worker", address, "--bundle", str(bundle), "--slots", "1"]
    with log.open("w") as err:
        return subprocess.Popen(
            [*argv, "--name", name, *extra],
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )


def _wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`drapto cluster init` in a config folder of this module's own."""
    home = tmp_path_factory.mktemp("engine-config")
    env = {**os.environ, "XDG_CONFIG_HOME": str(home)}
    done = subprocess.run(
        [*DRAPTO, "cluster", "init"], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return home / "drapto" / "cluster"


@contextlib.contextmanager
def hosting(
    certs: Path,
    folder: Path,
    ffmpeg: str,
    workers: dict[str, tuple[list[str], dict[str, str] | None]],
    worker_ttl: str = "60s",
) -> Iterator[Hosted]:
    """An engine with no local slots hosting its scheduler, and `drapto worker`s (name ->
    extra options, environment) joined to it."""
    loop = LoopThread()
    engine = remote_only_engine(ffmpeg, certs, folder, worker_ttl)
    loop.run(engine.start())
    assert engine.cluster is not None and engine.cluster.scheduler is not None
    scheduler = engine.cluster.scheduler
    # the scheduler's scratch space is drapto's own, not the shared /tmp/dask-scratch-space
    assert engine.cluster.scratch is not None
    assert Path(scheduler.local_directory).is_relative_to(engine.cluster.scratch)
    assert engine.cluster.scratch.parent == scratch_root()
    shared = folder / "shared"
    shared.mkdir(exist_ok=True)
    started = {
        name: _start_worker(
            engine.cluster.address,
            certs / "worker-bundle",
            name,
            folder / f"{name}.txt",
            extra,
            env,
        )
        for name, (extra, env) in workers.items()
    }
    hosted = Hosted(engine, loop, started, shared)

    def record(event: Event) -> None:
        hosted.events.append(event)
        for hook in list(hosted.on_event):
            hook(event)

    engine.bus.subscribe(record)
    try:
        _wait_for(
            lambda: (
                sorted(
                    str(ws.name) for ws in scheduler.workers.values() if ws.resources.get(ENCODER)
                )
                == sorted(workers)
            ),
            120,
            "the workers to join",
        )
        yield hosted
    finally:
        for proc in started.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in started.values():
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        loop.run(engine.stop())
        engine.close()
        loop.stop()


@pytest.fixture(scope="module")
def hosted(certs: Path, tmp_path_factory: pytest.TempPathFactory, ffmpeg: str) -> Iterator[Hosted]:
    folder = tmp_path_factory.mktemp("hosted")
    alias = folder / "mount"
    alias.symlink_to(folder / "shared", target_is_directory=True)
    with hosting(
        certs,
        folder,
        ffmpeg,
        {"w-shared": (["--path-map", f"{folder / 'shared'}={alias}"], None), "w-ship": ([], None)},
    ) as hosted:
        yield hosted


def _video(ffmpeg: str, path: Path, seconds: float) -> Path:
    return make_video(
        ffmpeg,
        path,
        size=(256, 144),
        duration=seconds,
        rate="25",
        gop=25,
        output_args=["-bf", "3"],
    )


def _assert_same_frames(source: Path, output: Path) -> None:
    ours, theirs = source_frame_times(output), source_frame_times(source)
    assert len(ours) == len(theirs)
    assert max(abs(float(a - b)) for a, b in zip(ours, theirs, strict=True)) < 0.002


def test_every_segment_runs_on_a_worker_in_both_modes(hosted: Hosted, ffmpeg: str) -> None:
    source = _video(ffmpeg, hosted.shared / "film.mkv", 6.0)
    output = hosted.shared / "film.av1.mkv"
    entry = hosted.run(source, output)
    assert entry.status is EntryStatus.DONE, entry.error
    _assert_same_frames(source, output)
    done = hosted.of(SegmentDone, entry.job)
    assert len(done) >= 3 and not any(d.resumed for d in done)
    assert all(d.remote for d in done)
    hosts = {d.host for d in done}
    assert hosts == {"w-shared", "w-ship"}, hosts
    # the shipping worker got the packets as bytes too; the shared one only sent back
    shipped = {d.host: max(x.shipped_bytes for x in done if x.host == d.host) for d in done}
    sizes = {d.host: max(x.size_bytes for x in done if x.host == d.host) for d in done}
    assert shipped["w-shared"] <= sizes["w-shared"] < shipped["w-ship"]
    started = hosted.of(SegmentStarted, entry.job)
    assert {s.host for s in started} == hosts and all(s.remote for s in started)
    # each worker's encoder progress came back to the engine, its last block included

    def ended() -> set[int]:
        return {p.index for p in hosted.of(SegmentProgress, entry.job) if p.frame == p.frames}

    _wait_for(lambda: ended() == {d.index for d in done}, 10, "every segment's last progress")
    [finished] = hosted.of(JobFinished, entry.job)
    assert finished.summary.metrics is not None
    assert {m.host for m in finished.summary.metrics.segments} == hosts
    # a worker's encoder is not sampled: no "peak encoder 0 MiB, mean CPU 0%"
    assert finished.summary.metrics.remote_segments == len(done)
    figures = summary_lines(finished)[-1]
    assert "encoder memory and CPU not measured on cluster workers" in figures, figures
    assert "0 MiB" not in figures and "CPU 0%" not in figures, figures
    snapshot = hosted.engine.snapshot()
    assert {s.host for s in snapshot.jobs[entry.job or ""].segments.values()} == hosts
    # the workers as `drapto status` sees them: their machines' figures from psutil
    _wait_for(lambda: hosted.of(ClusterSampled), 10, "a cluster sample")
    workers = {w.name: w for w in hosted.of(ClusterSampled)[-1].workers}
    assert set(workers) == {"w-shared", "w-ship"}
    assert all(w.slots == 1 and w.memory_total > 0 for w in workers.values())


def test_a_source_replaced_mid_job_stops_it_before_the_next_remote_segment(
    hosted: Hosted, ffmpeg: str
) -> None:
    """Another file takes the source's name when the first segment is back from a
    worker: no further segment is sent out, the job fails with the one line, and
    nothing is rolled back or put in place."""
    source = _video(ffmpeg, hosted.shared / "swap.mkv", 6.0)
    other = make_video(ffmpeg, hosted.shared / "other.mkv", size=(256, 144), duration=6.0)
    output = hosted.shared / "swap.av1.mkv"
    swapped: list[int] = []

    def swap(event: Event) -> None:
        if isinstance(event, SegmentDone) and not swapped:
            swapped.append(len(hosted.of(SegmentStarted, event.job)))
            os.replace(other, source)

    hosted.on_event.append(swap)
    try:
        entry = hosted.run(source, output)
    finally:
        hosted.on_event.remove(swap)
    assert entry.status is EntryStatus.FAILED
    assert entry.error is not None
    assert f"{source}: the source changed during the encode (" in entry.error
    assert entry.error.endswith("); nothing was written")
    assert len(hosted.of(SegmentStarted, entry.job)) == swapped[0], "a segment started after"
    assert all(s.remote for s in hosted.of(SegmentStarted, entry.job))
    assert not hosted.of(RolledBack, entry.job)
    assert not output.exists()


def test_the_sources_fingerprint_is_read_once_for_each_check(
    hosted: Hosted, ffmpeg: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine reads the source's content fingerprint when the job starts, before the
    join and before the rename, and the worker reading the source through its path map
    compares its copy with that first read: no read of its own. A later film under the
    same name is compared with its own reads, so the mapped worker reads it too."""
    from drapto_engine.cluster import tasks
    from drapto_engine.infrastructure import source_identity

    source = hosted.shared / "again.mkv"
    reads: list[Path] = []
    real = source_identity.fingerprint

    def counted(path: Path) -> str:
        if Path(path) == source:
            reads.append(path)
        return real(path)

    monkeypatch.setattr(source_identity, "fingerprint", counted)
    monkeypatch.setattr(tasks, "fingerprint", counted)
    jobs = []
    for n, pattern in enumerate(("testsrc2", "smptebars")):
        make_video(ffmpeg, source, size=(256, 144), duration=4.0, rate="25", gop=25, source=pattern)
        entry = hosted.run(source, hosted.shared / f"again-{n}.av1.mkv")
        assert entry.status is EntryStatus.DONE, entry.error
        jobs.append(entry.job)
        assert len(reads) == 3 * len(jobs), f"{len(reads)} fingerprint reads, {len(jobs)} jobs"
    for job in jobs:
        done = hosted.of(SegmentDone, job)
        mapped = [d for d in done if d.host == "w-shared"]
        assert mapped, f"no segment of {job} ran on w-shared: {[d.host for d in done]}"
        # read through the path map: nothing shipped beyond the segment coming back
        assert all(d.shipped_bytes <= d.size_bytes for d in mapped), mapped


def test_shipped_segments_of_a_real_mp4_keep_the_sources_frame_times(
    hosted: Hosted, shared_media: Path, tmp_path: Path
) -> None:
    """testvideo.mp4 whole (720 frames, a 1/30000 track with uneven frame times, cut at
    its keyframes 180 and 394 with the default segment lengths), outside the path map:
    every segment is shipped, and the joined output has the source's frame times."""
    source = shared_media / "testvideo.mp4"
    output = tmp_path / "tv.av1.mkv"
    entry = hosted.run(source, output, JobOptions(preset=12))
    assert entry.status is EntryStatus.DONE, entry.error
    assert not hosted.of(RolledBack, entry.job)
    _assert_same_frames(source, output)
    done = hosted.of(SegmentDone, entry.job)
    assert len(done) >= 2 and all(d.remote and d.shipped_bytes > d.size_bytes for d in done)


def test_dolby_vision_through_a_worker_keeps_every_rpu(
    hosted: Hosted, shared_media: Path, tmp_path: Path
) -> None:
    output = tmp_path / "dv.av1.mkv"
    entry = hosted.run(shared_media / "dv-p81-regular.mkv", output)
    assert entry.status is EntryStatus.DONE, entry.error
    assert count_rpu_frames(output) == (259, 259)
    done = hosted.of(SegmentDone, entry.job)
    assert len(done) >= 2 and all(d.remote for d in done)
    # outside the path map: both workers got shipped packets
    assert all(d.shipped_bytes > d.size_bytes for d in done)


def test_a_worker_killed_mid_segment_loses_only_that_segment(hosted: Hosted, ffmpeg: str) -> None:
    source = _video(ffmpeg, hosted.shared / "kill.mkv", 8.0)
    output = hosted.shared / "kill.av1.mkv"
    victim = hosted.workers["w-ship"]
    killed: list[int] = []
    kill_on_start = _signal_at_first_start("w-ship", victim.pid, signal.SIGKILL, killed)
    hosted.on_event.append(kill_on_start)
    try:
        entry = hosted.run(source, output)
    finally:
        hosted.on_event.remove(kill_on_start)
    assert victim.wait(30) == -signal.SIGKILL
    assert entry.status is EntryStatus.DONE, entry.error
    _assert_same_frames(source, output)
    [index] = killed
    runs = [s for s in hosted.of(SegmentStarted, entry.job) if s.index == index]
    assert [s.host for s in runs] == ["w-ship", "w-shared"], runs
    assert {s.attempt for s in runs} == {1}  # Dask reran it: not a failed attempt
    [again] = [d for d in hosted.of(SegmentDone, entry.job) if d.index == index]
    assert (again.host, again.runs) == ("w-shared", 2)


def test_a_job_whose_remote_segments_keep_failing_finishes_locally(
    certs: Path, tmp_path: Path, ffmpeg: str
) -> None:
    """A worker whose ffmpeg cuts every segment it encodes to 2 frames (its version line
    is the real one, so it joins), and whose own frame count is skipped: the engine's
    count alone fails its segments; the third failure rolls the job back to this machine,
    which finishes it with every frame. (The worker's own count is tested alone in
    test_cluster.py.)"""
    wrapper = cutting_ffmpeg(ffmpeg, tmp_path / "ffmpeg")
    env = {**os.environ, "DRAPTO_FFMPEG": str(wrapper)}

    def _skip_frame_check() -> None:  # run in the worker process (pickled by value)
        from drapto_engine.cluster import tasks

        tasks._check_frames = lambda *args: None  # type: ignore[assignment]

    with hosting(certs, tmp_path, ffmpeg, {"w-bad": ([], env)}) as hosted:
        cluster = hosted.engine.cluster
        assert cluster is not None and cluster.client is not None
        [address] = list(cluster.scheduler.workers) if cluster.scheduler else []
        client = cluster.client

        async def skip() -> None:
            await client.run(_skip_frame_check, workers=[address])

        hosted.loop.run(skip())
        source = _video(ffmpeg, hosted.shared / "film.mkv", 6.0)
        output = hosted.shared / "film.av1.mkv"
        entry = hosted.run(source, output)
        assert entry.status is EntryStatus.DONE, entry.error
        _assert_same_frames(source, output)
        failed = hosted.of(SegmentFailed, entry.job)
        assert [(f.host, f.will_retry) for f in failed] == [("w-bad", True)] * 3
        # the engine's line ("has 2 frames, planned"), not the worker's ("on HOST")
        assert all("has 2 frames, planned" in f.error for f in failed), failed
        [rollback] = hosted.of(RolledBack, entry.job)
        assert (rollback.flag, rollback.stage) == ("distributed_encoding", "encoding")
        done = hosted.of(SegmentDone, entry.job)
        assert done and not any(d.remote for d in done)


def test_a_hostile_worker_never_reaches_an_unpickler_in_the_engine(
    certs: Path, tmp_path: Path, ffmpeg: str
) -> None:
    """A real `drapto worker` holding the bundle, turned hostile in its own process: its
    first task's result comes back as a pickle (the reply to the engine's gather
    rewritten), its second task raises and the exception it reports is a pickle, and
    every finished task's type is one. Unpickling any of them would run a command. None
    runs in the engine; each of those two tries fails on that worker and the segment is
    tried again, and the job finishes with every frame."""
    markers = {name: tmp_path / f"ran-{name}" for name in ("result", "error", "type")}

    def turn_hostile(markers: dict[str, str], dask_worker: Any) -> None:
        # Runs in the worker process (pickled by value).
        import itertools
        import os
        import shlex

        from distributed.protocol.pickle import dumps
        from distributed.protocol.serialize import Serialized, to_serialize

        from drapto_engine.cluster import tasks

        def evil(name: str) -> bytes:
            class Evil:
                def __reduce__(self) -> Any:
                    return (os.system, (f"touch {shlex.quote(markers[name])}",))

            return bytes(dumps(Evil()))

        calls = itertools.count(1)
        honest = tasks.encode_shipped_segment
        evil_reply = []

        def encode(*args: Any, **kwargs: Any) -> Any:
            call = next(calls)
            if call == 2:
                raise RuntimeError("hostile")
            data = honest(*args, **kwargs)
            if call == 1:
                evil_reply.append(True)
            return data

        tasks.encode_shipped_segment = encode
        send = dask_worker.batched_stream.send

        def tampered(*msgs: Any) -> None:
            for msg in msgs:
                if msg.get("op") == "task-finished":
                    msg["type"] = evil("type")
                elif msg.get("op") == "task-erred":
                    msg["exception"] = to_serialize(evil("error"))
                    msg["traceback"] = to_serialize(evil("error"))
            send(*msgs)

        dask_worker.batched_stream.send = tampered
        get_data = dask_worker.handlers["get_data"]

        async def tampered_get_data(comm: Any, serializers: Any = None, **kwargs: Any) -> Any:
            write = comm.write

            async def evil_write(msg: Any, *args: Any, **kw: Any) -> Any:
                if evil_reply and isinstance(msg, dict) and "data" in msg:
                    evil_reply.clear()
                    header = {"serializer": "pickle", "writeable": ()}
                    msg = {
                        **msg,
                        "data": {k: Serialized(header, [evil("result")]) for k in msg["data"]},
                    }
                return await write(msg, *args, **kw)

            comm.write = evil_write
            try:
                return await get_data(comm, serializers=serializers, **kwargs)
            finally:
                comm.write = write

        dask_worker.handlers["get_data"] = tampered_get_data

    with hosting(certs, tmp_path, ffmpeg, {"w-evil": ([], None)}) as hosted:
        cluster = hosted.engine.cluster
        assert cluster is not None and cluster.client is not None
        [address] = list(cluster.scheduler.workers) if cluster.scheduler else []
        client = cluster.client

        async def hostile() -> None:
            paths = {name: str(path) for name, path in markers.items()}
            await client.run(turn_hostile, paths, workers=[address])

        hosted.loop.run(hostile())
        source = _video(ffmpeg, hosted.shared / "film.mkv", 4.0)
        output = hosted.shared / "film.av1.mkv"
        entry = hosted.run(source, output)
        time.sleep(1)
        assert [name for name, path in markers.items() if path.exists()] == []
        assert entry.status is EntryStatus.DONE, entry.error
        _assert_same_frames(source, output)
        failed = hosted.of(SegmentFailed, entry.job)
        assert [(f.host, f.will_retry) for f in failed] == [("w-evil", True)] * 2, failed
        assert "not plain data" in failed[0].error and "hostile" in failed[1].error, failed
        assert not hosted.of(RolledBack, entry.job)
        done = hosted.of(SegmentDone, entry.job)
        assert done and all(d.remote and d.host == "w-evil" for d in done)
        # the engine still serves its cluster
        assert cluster.scheduler is not None and list(cluster.scheduler.workers) == [address]


def test_the_engine_survives_losing_every_worker(certs: Path, tmp_path: Path, ffmpeg: str) -> None:
    """The only worker is SIGKILLed mid-segment: that segment (stranded, no worker left to
    run it) and the rest are encoded on the engine's machine; the job finishes valid."""
    with hosting(certs, tmp_path, ffmpeg, {"w-solo": ([], None)}) as hosted:
        source = _video(ffmpeg, hosted.shared / "film.mkv", 6.0)
        output = hosted.shared / "film.av1.mkv"
        victim = hosted.workers["w-solo"]
        killed: list[int] = []
        hosted.on_event.append(_signal_at_first_start("w-solo", victim.pid, signal.SIGKILL, killed))
        entry = hosted.run(source, output)
        assert victim.wait(30) == -signal.SIGKILL
        assert entry.status is EntryStatus.DONE, entry.error
        _assert_same_frames(source, output)
        [index] = killed
        runs = [s for s in hosted.of(SegmentStarted, entry.job) if s.index == index]
        assert [(s.host, s.remote) for s in runs] == [("w-solo", True), (HOST, False)]
        assert [s.attempt for s in runs] == [1, 2]
        assert not hosted.of(SegmentFailed, entry.job)[1:]
        done = hosted.of(SegmentDone, entry.job)
        assert all(not d.remote for d in done)


def _tree(pid: int) -> list[psutil.Process]:
    with contextlib.suppress(psutil.NoSuchProcess):
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    return []


def _signal_at_first_start(
    host: str,
    pid: int,
    signum: int,
    hit: list[int],
    signalled: list[psutil.Process] | None = None,
    spare_nanny: bool = False,
) -> Callable[[Event], None]:
    """An event hook: when worker `host` starts its first segment, send `signum` to its
    whole process tree (drapto worker, the nanny's worker process, ffmpeg), or only to
    the worker process and its ffmpeg (`spare_nanny`: not the drapto worker process that
    runs the nanny, nor multiprocessing's resource tracker beside it), and note the
    segment's index in `hit` (and each process signalled in `signalled`)."""

    def spared(proc: psutil.Process) -> bool:
        with contextlib.suppress(psutil.Error):
            return proc.pid == pid or "resource_tracker" in " ".join(proc.cmdline())
        return False

    def hook(event: Event) -> None:
        if isinstance(event, SegmentStarted) and event.host == host and not hit:
            hit.append(event.index)
            for proc in [p for p in _tree(pid) if not (spare_nanny and spared(p))]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    proc.send_signal(signum)
                    if signalled is not None:
                        signalled.append(proc)

    return hook


@contextlib.contextmanager
def _stopped_at_first_segment(
    hosted: Hosted, name: str, spare_nanny: bool = False
) -> Iterator[tuple[list[int], list[psutil.Process]]]:
    """SIGSTOP worker `name` (see _signal_at_first_start) when it starts its first
    segment; yields that segment's index (once hit) and the stopped processes, and kills
    whatever of them is left at the end."""
    hung: list[int] = []
    stopped: list[psutil.Process] = []
    pid = hosted.workers[name].pid
    hook = _signal_at_first_start(name, pid, signal.SIGSTOP, hung, stopped, spare_nanny)
    hosted.on_event.append(hook)
    try:
        yield hung, stopped
    finally:
        hosted.on_event.remove(hook)
        for proc in stopped:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.send_signal(signal.SIGKILL)
                proc.send_signal(signal.SIGCONT)


def test_a_hung_worker_loses_only_its_segment_after_the_ttl(
    certs: Path, tmp_path: Path, ffmpeg: str
) -> None:
    """w-hang's whole process tree (drapto worker, its nanny's worker process, ffmpeg) is
    SIGSTOPped at its first segment: it is silent, not gone. With a 5 s worker-ttl the
    scheduler drops it within seconds (its nanny, stopped too, is not waited for) and
    that segment runs again on w-ok; the job's output is valid."""
    with hosting(
        certs, tmp_path, ffmpeg, {"w-hang": ([], None), "w-ok": ([], None)}, worker_ttl="5s"
    ) as hosted:
        source = _video(ffmpeg, hosted.shared / "film.mkv", 6.0)
        output = hosted.shared / "film.av1.mkv"
        victim = hosted.workers["w-hang"]
        try:
            with _stopped_at_first_segment(hosted, "w-hang") as (hung, _):
                entry = hosted.run(source, output)
                assert victim.poll() is None  # hung, not dead: only the ttl took it out
        finally:
            victim.wait(30)
        assert entry.status is EntryStatus.DONE, entry.error
        _assert_same_frames(source, output)
        [index] = hung
        runs = [s for s in hosted.of(SegmentStarted, entry.job) if s.index == index]
        assert [s.host for s in runs] == ["w-hang", "w-ok"], runs
        assert {s.attempt for s in runs} == {1}  # Dask reran it: not a failed attempt
        # dropped by the test's 5 s ttl (checked every 5 s), not the default 60 s one,
        # and without waiting 30 s more on the hung machine's nanny
        assert runs[1].at - runs[0].at < 20, runs
        [again] = [d for d in hosted.of(SegmentDone, entry.job) if d.index == index]
        assert (again.host, again.runs) == ("w-ok", 2)
        assert all(d.host == "w-ok" for d in hosted.of(SegmentDone, entry.job))
        assert victim.returncode == -signal.SIGKILL  # nothing of it left running


def test_a_hung_worker_process_whose_nanny_answers_is_restarted_and_rejoins(
    certs: Path, tmp_path: Path, ffmpeg: str
) -> None:
    """Only w-hang's worker process and its ffmpeg are SIGSTOPped; the nanny (the `drapto
    worker` process) still answers. After the 5 s ttl the worker is dropped, its segment
    runs again elsewhere, and its nanny, asked in the background, kills the stopped
    process and starts a new one, which joins again under the same name."""
    with hosting(
        certs, tmp_path, ffmpeg, {"w-hang": ([], None), "w-ok": ([], None)}, worker_ttl="5s"
    ) as hosted:
        assert hosted.engine.cluster is not None
        scheduler = hosted.engine.cluster.scheduler
        assert scheduler is not None

        def addresses(name: str) -> set[str]:
            return {ws.address for ws in scheduler.workers.values() if ws.name == name}

        before = addresses("w-hang")
        source = _video(ffmpeg, hosted.shared / "film.mkv", 6.0)
        output = hosted.shared / "film.av1.mkv"
        victim = hosted.workers["w-hang"]
        with _stopped_at_first_segment(hosted, "w-hang", spare_nanny=True) as (hung, stopped):
            entry = hosted.run(source, output)
            assert entry.status is EntryStatus.DONE, entry.error
            _wait_for(lambda: addresses("w-hang") - before, 60, "w-hang to join again")
            assert victim.poll() is None  # the drapto worker process lived on
            # every stopped process (the old worker process, its ffmpeg) is gone
            _, alive = psutil.wait_procs(stopped, timeout=30)
            assert not alive, alive
        _assert_same_frames(source, output)
        [index] = hung
        runs = [s for s in hosted.of(SegmentStarted, entry.job) if s.index == index]
        assert len(runs) == 2 and runs[1].at - runs[0].at < 20, runs


CHILD = Path(__file__).with_name("cluster_engine_child.py")


def _ffmpegs(pid: int) -> list[psutil.Process]:
    found = []
    for proc in _tree(pid):
        with contextlib.suppress(psutil.NoSuchProcess):
            if "ffmpeg" in proc.name():
                found.append(proc)
    return found


def test_a_killed_engine_leaves_nothing_on_its_workers_and_resumes_with_their_hosts(
    certs: Path, tmp_path: Path, ffmpeg: str
) -> None:
    """An engine process (its scheduler inside it) is SIGKILLed while its only worker
    encodes a segment, after others came back from it: the worker's ffmpeg ends with it
    (the worker exits 3, no orphan ffmpeg is left). An engine started again on the same
    state resumes the job: the kept segments are not encoded again and still name the
    worker that encoded them; the output is valid."""
    shared = tmp_path / "shared"
    shared.mkdir()
    alias = tmp_path / "mount"
    alias.symlink_to(shared, target_is_directory=True)
    path_map = ["--path-map", f"{shared}={alias}"]
    source = make_video(
        ffmpeg, shared / "film.mkv", size=(640, 360), duration=12.0, rate="25", gop=25
    )
    output = shared / "film.av1.mkv"
    child = subprocess.Popen(
        [sys.executable, str(CHILD), ffmpeg, str(certs), str(tmp_path), str(source), str(output)],
        stdout=subprocess.PIPE,
        stderr=(tmp_path / "engine.txt").open("w"),
        text=True,
    )
    said: list[dict[str, Any]] = []
    assert child.stdout is not None
    stream = child.stdout
    reader = threading.Thread(
        target=lambda: said.extend(json.loads(line) for line in stream), daemon=True
    )
    reader.start()
    worker: subprocess.Popen[str] | None = None
    try:
        _wait_for(lambda: said, 120, "the engine's scheduler address")
        address = said[0]["address"]
        worker = _start_worker(
            address, certs / "worker-bundle", "w-first", tmp_path / "w-first.txt", path_map, None
        )

        def done() -> list[int]:
            return [s["index"] for s in list(said) if s.get("event") == "segment_done"]

        _wait_for(lambda: len(done()) >= 2, 240, "two segments back from the worker")
        _wait_for(lambda: _ffmpegs(worker.pid), 120, "the worker's next ffmpeg")
        encoding = _ffmpegs(worker.pid)
        folders = {Path(p.cmdline()[-1]).parent for p in encoding}
        kept = done()
        child.kill()
        assert child.wait(30) == -signal.SIGKILL
        # the worker goes with its engine, and its encoder with it
        assert worker.wait(60) == 3
        _, alive = psutil.wait_procs(encoding, timeout=30)
        assert not alive, alive
        orphans = [
            proc
            for proc in psutil.process_iter(["name", "cmdline"])
            if "ffmpeg" in (proc.info["name"] or "")
            and any(str(tmp_path) in arg for arg in proc.info["cmdline"] or [])
        ]
        assert not orphans, orphans
        assert all(f.name.startswith("drapto-segment-") for f in folders), folders
        _wait_for(lambda: not any(f.exists() for f in folders), 30, "the worker's temp folder")
    finally:
        for proc in (child, worker):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(30)
    [entry_id] = [s["entry"] for s in said if "entry" in s]
    assert all(s["host"] == "w-first" and s["remote"] for s in said if "event" in s)

    with hosting(certs, tmp_path, ffmpeg, {"w-second": (path_map, None)}) as hosted:

        async def resume() -> Any:
            await hosted.engine.run(only={entry_id}, ignore_pause=True)
            return hosted.engine.entry(entry_id)

        entry = hosted.loop.run(resume())
        assert entry.status is EntryStatus.DONE, entry.error
        _assert_same_frames(source, output)
        done_now = {d.index: d for d in hosted.of(SegmentDone, entry.job)}
        resumed = {i for i, d in done_now.items() if d.resumed}
        assert set(kept) <= resumed, (kept, resumed)
        assert all((done_now[i].host, done_now[i].remote) == ("w-first", True) for i in kept)
        started = {s.index for s in hosted.of(SegmentStarted, entry.job)}
        assert not started & resumed  # kept segments were not encoded again
        assert started and all(done_now[i].host == "w-second" for i in started)
        snapshot = hosted.engine.snapshot()
        segments = snapshot.jobs[entry.job or ""].segments
        assert all(segments[i].host == "w-first" for i in kept)


def test_a_worker_mapped_to_another_file_gets_the_sources_packets_instead(
    certs: Path, tmp_path: Path, ffmpeg: str, caplog: pytest.LogCaptureFixture
) -> None:
    """w-wrong's --path-map leads to a folder holding another film of the same name and
    length: it is not encoded. The worker refuses it, the engine says so and ships that
    worker the source's packets; every frame of the output is the source's."""
    elsewhere = tmp_path / "elsewhere"
    other = make_video(
        ffmpeg,
        elsewhere / "film.mkv",
        size=(256, 144),
        duration=4.0,
        rate="25",
        gop=25,
        source="smptebars",
    )
    path_map = ["--path-map", f"{tmp_path / 'shared'}={elsewhere}"]
    caplog.set_level(logging.WARNING, logger="drapto_engine.cluster.executor")
    with hosting(certs, tmp_path, ffmpeg, {"w-wrong": (path_map, None)}) as hosted:
        source = _video(ffmpeg, hosted.shared / "film.mkv", 4.0)
        output = tmp_path / "film.av1.mkv"
        entry = hosted.run(source, output)
    assert entry.status is EntryStatus.DONE, entry.error
    _assert_same_frames(source, output)
    ours, theirs, wrong = _lumas(output), _lumas(source), _lumas(other)
    assert len(ours) == len(theirs) == 100
    for i, luma in enumerate(ours):
        assert np.mean(np.abs(luma - theirs[i])) < np.mean(np.abs(luma - wrong[i])) / 4, i
    done = hosted.of(SegmentDone, entry.job)
    assert done and all(d.remote and d.shipped_bytes > d.size_bytes for d in done)
    warnings = [r.getMessage() for r in caplog.records if "a file of another" in r.getMessage()]
    assert len(warnings) == 1 and f"mapped to {elsewhere / 'film.mkv'}" in warnings[0], warnings


def _lumas(path: Path) -> list[Any]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="gray").astype(np.float64) for f in container.decode(video=0)]


def test_a_workers_probes_are_kept_as_each_is_measured(
    hosted: Hosted, ffmpeg: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a target VMAF, a worker sends each probe back as it is measured and the
    engine keeps it before the segment is done (a job killed meanwhile resumes without
    probing that segment again); the last probes kept are the segment's own."""

    from drapto_engine.services.broker import SegmentBroker

    kept: list[tuple[int, list[list[float]], bool]] = []
    keeper = SegmentBroker._probe_keeper

    def recording(self: SegmentBroker, segment: Any) -> Any:
        keep = keeper(self, segment)

        async def record(probes: list[list[float]]) -> None:
            finished = any(d.index == segment.index for d in hosted.of(SegmentDone, self.job))
            kept.append((segment.index, probes, finished))
            await keep(probes)

        return record

    monkeypatch.setattr(SegmentBroker, "_probe_keeper", recording)
    source = _video(ffmpeg, hosted.shared / "target.mkv", 4.0)
    options = FAST.model_copy(update={"target_vmaf": 90.0, "crf_range": (20, 55)})
    entry = hosted.run(source, hosted.shared / "target.av1.mkv", options)
    assert entry.status is EntryStatus.DONE, entry.error
    done = hosted.of(SegmentDone, entry.job)
    assert done and all(d.remote for d in done)
    for segment in done:
        mine = [(probes, finished) for index, probes, finished in kept if index == segment.index]
        assert mine, f"segment {segment.index}: no probe came back before it was done"
        assert not any(finished for _, finished in mine)
        assert [len(p) for p, _ in mine] == list(range(1, len(mine) + 1))  # one at a time
        assert [tuple(p) for p in mine[-1][0]] == [tuple(p) for p in segment.probes]
