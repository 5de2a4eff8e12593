"""The engine's queue over real encodes: order, persistence, pause, retry, cancel,
the shared worker bound, run-ahead, monitoring alerts and stored metrics."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

import psutil
import pytest
from engine_helpers import FAST, Session, make_engine

from drapto_engine.cli.printers import summary_lines
from drapto_engine.config import Config
from drapto_engine.core.events import (
    Alert,
    JobFailed,
    JobFinished,
    SegmentDone,
    SegmentStarted,
    StageChanged,
)
from drapto_engine.core.jobs import EntryStatus, JobOptions

pytestmark = pytest.mark.slow


def encoders() -> list[psutil.Process]:
    me = psutil.Process()
    found = []
    for child in me.children(recursive=True):
        try:
            if "libsvtav1" in child.cmdline():
                found.append(child)
        except psutil.Error:
            continue
    return found


async def wait_for(condition: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def test_queue_order_pause_and_removal_survive_a_restart(
    tmp_path: Path, make_media: object, ffmpeg: str
) -> None:
    files = [make_media(f"{n}.mkv", size=(64, 64), duration=1) for n in "abc"]  # type: ignore[operator]
    session = make_engine(tmp_path, ffmpeg, workers=1)
    engine = session.engine
    await engine.pause()
    entries = await engine.add([(f, tmp_path / f"{f.stem}.av1.mkv") for f in files], options=FAST)
    a, b, c = (e.id for e in entries)
    await engine.move(c, 0)
    await engine.remove(b)
    again = await engine.add([(files[0], tmp_path / "other.mkv")])
    assert again[0].id == a  # an input already queued is not queued twice
    engine.close()

    session = make_engine(tmp_path, ffmpeg, workers=1)
    engine = session.engine
    assert engine.paused
    assert [e.id for e in engine.entries()] == [c, a]
    async with engine.running():
        runner = asyncio.create_task(engine.run())
        # One pass of the loop runs the runner up to its wait for work: whatever it
        # starts, it starts in that pass (the entries' tasks are made synchronously).
        await asyncio.sleep(0)
        assert not runner.done()
        assert not engine._active, "a paused queue started an entry"
        assert all(e.status is EntryStatus.QUEUED for e in engine.entries())
        assert not session.of(StageChanged)
        await engine.resume()
        await wait_for(lambda: all(e.status is EntryStatus.DONE for e in engine.entries()), 60)
        runner.cancel()
    started = [e.job for e in session.of(StageChanged) if e.stage == "analyzing"]
    assert started == [engine.entry(c).job, engine.entry(a).job]
    assert (tmp_path / "c.av1.mkv").is_file() and (tmp_path / "a.av1.mkv").is_file()
    assert not (tmp_path / "b.av1.mkv").exists()
    engine.close()


async def test_a_failed_entry_fails_alone_and_can_be_retried(
    tmp_path: Path, make_media: object, ffmpeg: str
) -> None:
    good = make_media("good.mkv", size=(64, 64), duration=1)  # type: ignore[operator]
    bad = tmp_path / "bad.mkv"
    bad.write_text("not a video")
    session = make_engine(tmp_path, ffmpeg)
    async with session.engine.running():
        failed, done = await session.run(
            [(bad, tmp_path / "bad.av1.mkv"), (good, tmp_path / "good.av1.mkv")]
        )
        assert failed.status is EntryStatus.FAILED and "bad.mkv" in (failed.error or "")
        assert done.status is EntryStatus.DONE and done.summary is not None
        retried = await session.engine.retry(failed.id)
        assert retried.status is EntryStatus.QUEUED and retried.error is None
        await session.engine.run(only={failed.id})
        assert session.engine.entry(failed.id).status is EntryStatus.FAILED
        with pytest.raises(Exception, match="only failed or cancelled"):
            await session.engine.retry(done.id)
    session.engine.close()


async def test_skips_an_output_that_exists_and_validates(
    tmp_path: Path, make_media: object, ffmpeg: str
) -> None:
    source = make_media("s.mkv", size=(64, 64), duration=1)  # type: ignore[operator]
    session = make_engine(tmp_path, ffmpeg)
    async with session.engine.running():
        [first] = await session.run([(source, tmp_path / "s.av1.mkv")])
        assert first.status is EntryStatus.DONE
        [second] = await session.run([(source, tmp_path / "s.av1.mkv")])
    assert second.status is EntryStatus.SKIPPED and second.note == "already encoded"
    session.engine.close()
    fresh = make_engine(tmp_path / "elsewhere", ffmpeg)  # no record of it: the file is checked
    before = (tmp_path / "s.av1.mkv").stat().st_mtime_ns
    async with fresh.engine.running():
        [third] = await fresh.run([(source, tmp_path / "s.av1.mkv")])
        assert third.status is EntryStatus.SKIPPED
        assert third.note == "output exists and validates"
        # with --overwrite it is encoded again, whatever is there
        [fourth] = await fresh.run(
            [(source, tmp_path / "s.av1.mkv")], FAST.model_copy(update={"overwrite": True})
        )
    assert fourth.status is EntryStatus.DONE, fourth.error
    assert (tmp_path / "s.av1.mkv").stat().st_mtime_ns != before
    fresh.engine.close()


async def test_cancelling_a_running_entry_stops_its_encoders_and_removes_its_work(
    tmp_path: Path, make_media: object, ffmpeg: str
) -> None:
    source = make_media("long.mkv", size=(320, 240), duration=12, gop=25)  # type: ignore[operator]
    session = make_engine(tmp_path, ffmpeg)
    engine = session.engine
    async with engine.running():
        [entry] = await engine.add([(source, tmp_path / "long.av1.mkv")], options=FAST)
        runner = asyncio.create_task(engine.run(only={entry.id}))
        await wait_for(lambda: session.of(SegmentDone))
        await engine.cancel(entry.id)
        await asyncio.wait_for(runner, 10)
    cancelled = engine.entry(entry.id)
    assert cancelled.status is EntryStatus.CANCELLED
    record = engine.store.job(cancelled.job or "")
    assert record is not None and record.stage.value == "cancelled"
    assert not encoders()
    assert not list(tmp_path.glob(".drapto-work-*")) and not (tmp_path / "long.av1.mkv").exists()
    engine.close()


def peak_encoders(session: Session) -> int:
    """The most segments that were encoding at once, from the session's events."""
    running, peak = 0, 0
    for event in session.events:
        if isinstance(event, SegmentStarted):
            running += 1
            peak = max(peak, running)
        elif isinstance(event, SegmentDone) and not event.resumed:
            running -= 1
    return peak


async def test_jobs_share_the_worker_bound_and_the_next_one_runs_ahead(
    tmp_path: Path, make_media: object, ffmpeg: str
) -> None:
    files = [make_media(f"{n}.mkv", size=(160, 90), duration=6, gop=25) for n in "ab"]  # type: ignore[operator]
    session = make_engine(tmp_path, ffmpeg, workers=2)
    async with session.engine.running():
        entries = await session.run([(f, tmp_path / f"{f.stem}.av1.mkv") for f in files])
    assert all(e.status is EntryStatus.DONE for e in entries)
    peak = peak_encoders(session)
    assert peak <= 2 and session.engine.resources.peak <= 2
    first, second = (e.job for e in entries)
    order = session.events
    second_analysis = next(
        i for i, e in enumerate(order) if isinstance(e, StageChanged) and e.job == second
    )
    first_done = next(
        i for i, e in enumerate(order) if isinstance(e, JobFinished) and e.job == first
    )
    assert second_analysis < first_done  # analysis ran ahead while the first job encoded
    session.engine.close()


async def test_workers_raised_mid_job_take_segments_of_that_job(
    tmp_path: Path, make_media: object, ffmpeg: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job that started with one worker uses a second one given while it encodes (as it
    uses a cluster worker that joins), not only the next job."""
    from drapto_engine.services import broker

    monkeypatch.setattr(broker, "CAPACITY_CHECK_S", 0.05)
    source = make_media("w.mkv", size=(320, 240), duration=8, gop=25)  # type: ignore[operator]
    raised: list[asyncio.Task[None]] = []

    def on_event(session: Session, event: object) -> None:
        if isinstance(event, SegmentStarted) and not raised:
            raised.append(asyncio.get_running_loop().create_task(session.engine.set_workers(2)))

    session = make_engine(tmp_path, ffmpeg, workers=1, on_event=on_event)
    async with session.engine.running():
        [entry] = await session.run([(source, tmp_path / "w.av1.mkv")])
    assert entry.status is EntryStatus.DONE, entry.error
    peak = peak_encoders(session)
    assert len(session.of(SegmentDone)) >= 4
    assert peak == 2, "the second worker never took a segment of the running job"
    session.engine.close()


async def test_a_stalled_encoder_raises_an_alert_and_metrics_are_stored_with_the_job(
    tmp_path: Path, make_media: object, ffmpeg: str
) -> None:
    source = make_media("stall.mkv", size=(320, 240), duration=10)  # type: ignore[operator]
    session = make_engine(tmp_path, ffmpeg, config=Config(stall_timeout_s=1.0), workers=1)
    engine = session.engine
    async with engine.running():
        [entry] = await engine.add(
            [(source, tmp_path / "stall.av1.mkv")],
            options=JobOptions(preset=12),
            flags={"segmented_encoding": "off"},
        )
        runner = asyncio.create_task(engine.run(only={entry.id}))
        await wait_for(encoders, 30)
        stopped = encoders()
        for proc in stopped:
            proc.send_signal(signal.SIGSTOP)
        try:
            await wait_for(lambda: session.of(Alert), 15)
        finally:
            for proc in stopped:
                proc.send_signal(signal.SIGCONT)
        await asyncio.wait_for(runner, 60)
    done = engine.entry(entry.id)
    assert done.status is EntryStatus.DONE, done.error
    [alert] = session.of(Alert)
    assert (alert.kind, alert.index) == ("stalled", 0)
    assert done.summary is not None and done.summary.metrics is not None
    metrics = done.summary.metrics
    assert metrics.alerts == {"stalled": 1}
    [segment] = metrics.segments
    assert segment.frames == 250 and segment.fps > 0 and segment.speed > 0
    assert segment.peak_rss_bytes > 10 << 20  # sampled while it was stopped
    assert segment.wall_s >= 1.0
    stored = engine.store.job(done.job or "")
    assert stored is not None and json.loads(stored.metrics or "{}")["alerts"] == {"stalled": 1}
    assert any("1 stalled" in line for line in summary_lines(session.of(JobFinished)[0]))
    engine.close()


async def test_a_job_interrupted_after_its_segments_resumes_without_scanning_the_source(
    tmp_path: Path, make_media: object, ffmpeg: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = make_media(  # type: ignore[operator]
        "r.mkv", size=(160, 90), duration=6, gop=25, audio=["stereo"]
    )
    stopping: list[asyncio.Task[None]] = []

    def stop_at_mux(s: object, event: object) -> None:
        if isinstance(event, StageChanged) and event.stage == "muxing" and not stopping:
            stopping.append(asyncio.ensure_future(session.engine.stop()))

    session = make_engine(tmp_path, ffmpeg, on_event=stop_at_mux)  # type: ignore[arg-type]
    async with session.engine.running():
        [entry] = await session.engine.add([(source, tmp_path / "r.av1.mkv")], options=FAST)
        await session.engine.run(only={entry.id})  # returns once stopped; raises on a bug
        await stopping[0]
    stopped = session.engine.entry(entry.id)
    assert stopped.status is EntryStatus.QUEUED and stopped.error is None
    record = session.engine.store.job(stopped.job or "")
    assert record is not None and record.stage.value == "queued"
    first_done = len(session.of(SegmentDone))
    assert first_done > 1 and not (tmp_path / "r.av1.mkv").exists()
    assert not session.of(JobFailed) and not session.of(JobFinished)
    session.engine.close()

    import drapto_engine.services.orchestrator as orchestrator
    import drapto_engine.services.resume as resume
    import drapto_engine.services.segmentation as segmentation

    def must_not_run(*args: object, **kwargs: object) -> None:
        raise AssertionError("a resumed job scanned its source again")

    for module, name in (
        (orchestrator, "analyze_media"),
        (orchestrator, "probe"),
        (orchestrator, "frame_times"),
        (orchestrator, "stream_extents"),
        (segmentation, "detect_cuts"),
    ):
        monkeypatch.setattr(module, name, must_not_run)
    monkeypatch.setattr(resume, "video_packets", _count_packets)
    again = make_engine(tmp_path, ffmpeg)
    async with again.engine.running():
        await again.engine.run(only={entry.id})
    done = again.engine.entry(entry.id)
    assert done.status is EntryStatus.DONE, done.error
    resumed = again.of(SegmentDone)
    assert len(resumed) == first_done and all(e.resumed for e in resumed)
    assert not again.of(SegmentStarted)
    again.engine.close()


def _count_packets(path: Path) -> int:
    import av

    with av.open(str(path)) as container:
        return sum(1 for p in container.demux(video=0) if p.size)


async def test_memory_pressure_suspends_an_encoder_and_raises_an_alert(
    tmp_path: Path, make_media: object, ffmpeg: str
) -> None:
    from drapto_engine.infrastructure.resources import Memory, system_memory

    # Two 4 s segments: both encoders start at once and last long enough to be suspended.
    source = make_media("m.mkv", size=(640, 360), duration=8, gop=25)  # type: ignore[operator]
    session = make_engine(tmp_path, ffmpeg, workers=2)
    slow = JobOptions(preset=6, min_segment_s=2.0, max_segment_s=4.0)  # encoders that last
    engine = session.engine
    low = [False]

    def memory() -> Memory:
        real = system_memory()
        return Memory(real.total, 0) if low[0] else real  # nothing available while "low"

    engine.resources._memory = memory
    async with engine.running():
        [entry] = await engine.add([(source, tmp_path / "m.av1.mkv")], options=slow)
        runner = asyncio.create_task(engine.run(only={entry.id}))
        await wait_for(lambda: (engine.resources.latest or 0) and engine.resources.running >= 2, 60)
        low[0] = True
        await wait_for(lambda: session.of(Alert), 15)
        snapshot = engine.resources.latest
        assert snapshot is not None and snapshot.suspended == 1
        low[0] = False
        await asyncio.wait_for(runner, 120)
    done = engine.entry(entry.id)
    assert done.status is EntryStatus.DONE, done.error
    kinds = [a.kind for a in session.of(Alert)]
    assert kinds[0] == "memory_pressure" and "suspended" in session.of(Alert)[0].message
    assert done.summary is not None and done.summary.metrics is not None
    engine.close()


async def test_a_finished_job_leaves_the_engine_memory_and_keeps_its_record(
    tmp_path: Path, make_media: object, ffmpeg: str
) -> None:
    source = make_media("kept.mkv", size=(64, 64), duration=3)  # type: ignore[operator]
    session = make_engine(tmp_path, ffmpeg)
    engine = session.engine
    async with engine.running():
        [done] = await session.run([(source, tmp_path / "kept.av1.mkv")])
        assert done.status is EntryStatus.DONE and done.job is not None, done.error
        # the figures went out with the entry and into the job's record, not the Monitor
        assert done.summary is not None and done.summary.metrics is not None
        assert done.summary.metrics.encoded_segments == len(session.of(SegmentDone))
        stored = engine.store.job(done.job)
        assert stored is not None and json.loads(stored.metrics or "{}")["encoded_segments"] >= 1
        assert engine.monitor.metrics(done.job).encoded_segments == 0
        assert engine._job_entries == {}
        # a finished entry in the queue still shows its job; cleared, nothing is kept
        assert set(engine.snapshot().jobs) == {done.job}
        assert await engine.clear_finished() == 1
        assert engine.snapshot().jobs == {}
    engine.close()
