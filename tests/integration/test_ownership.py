"""A job is its holder's: never dropped while a live process holds it, and a holder
whose job was taken over stops without touching the new holder's work. Real
processes, real signals."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from pathlib import Path

import pytest
from encode_helpers import encode, inspect
from engine_helpers import make_engine
from live_helpers import (
    SEGMENTING,
    Live,
    done_segments,
    heartbeat_age,
    stop_between_writes,
    wait_until,
)
from mediagen import one_keyframe_ts

from drapto_engine.core.jobs import EntryStatus, JobOptions, QueueEntry
from drapto_engine.infrastructure.store import STALE_LOCK_ENV
from drapto_engine.services.workdir import WORK_PREFIX

pytestmark = pytest.mark.slow


def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def test_other_settings_do_not_drop_a_live_job(make_media, tmp_path: Path) -> None:
    source = make_media("x.mkv", duration=8.0)
    out_dir, state = tmp_path / "o", tmp_path / "state"
    out_dir.mkdir()
    output = out_dir / "x.av1.mkv"
    first = Live(source, output, state, "--crf", "30")
    try:
        done_segments(first, 1)
        # stopped, it is certainly still encoding when the second run looks at its job
        stop_between_writes(first, state)
        [work] = list(out_dir.glob(f"{WORK_PREFIX}*"))
        kept = sorted(p.name for p in work.iterdir())
        second = encode(source, output, *SEGMENTING, "--crf", "50", "--state-dir", str(state))
        assert second.returncode == 1
        line = _one_line(second.stderr)
        assert line == (
            f"drapto: {source}: is being encoded by another drapto (process {first.pid}) "
            "(wait for it or stop it)"
        )
        assert not [w for w in second.of("warning") if "dropped" in w["message"]]
        assert work.is_dir() and set(kept) <= {p.name for p in work.iterdir()}
        first.proc.send_signal(signal.SIGCONT)
        code, stderr = first.finish()
        assert code == 0, stderr
        assert inspect(output).frames_decoded == 200
    finally:
        first.kill()


def test_a_taken_over_holder_stops_and_leaves_the_new_holder_alone(
    make_media, tmp_path: Path
) -> None:
    source = make_media("x.mkv", duration=8.0)
    out_dir, state = tmp_path / "o", tmp_path / "state"
    out_dir.mkdir()
    output = out_dir / "x.av1.mkv"
    stale = {STALE_LOCK_ENV: "3"}
    first = Live(source, output, state, env=stale)
    second: Live | None = None
    try:
        done_segments(first, 1)
        stop_between_writes(first, state)
        wait_until(lambda: heartbeat_age(state) > 3.5, 30, "the stopped holder's lock to go stale")
        second = Live(source, output, state, env=stale)
        second.wait_for(lambda e: e["type"] == "segment_started")  # it holds the job now
        first.proc.send_signal(signal.SIGCONT)
        code, stderr = first.finish(60)
        assert code == 1
        assert _one_line(stderr) == (f"drapto: {source}: job taken over by process {second.pid}")
        # its encoders are gone; the new holder's run goes on undisturbed
        wait_until(
            lambda: not _processes_naming(f".{first.pid}.partial."), 10, "the encoders to stop"
        )
        code, stderr = second.finish()
        assert code == 0, stderr
        assert inspect(output).frames_decoded == 200
        assert sorted(p.name for p in out_dir.iterdir()) == ["x.av1.mkv"]
    finally:
        first.kill()
        if second is not None:
            second.kill()


def _processes_naming(text: str) -> list[str]:
    listing = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True)
    return [line for line in listing.stdout.splitlines() if text in line]


def test_a_rollback_retry_drops_its_first_try_without_a_warning(
    tmp_path: Path, ffmpeg: str
) -> None:
    source = one_keyframe_ts(ffmpeg, tmp_path / "onekey.ts")
    run = encode(source, tmp_path / "out.mkv", "--min-segment", "1", "--max-segment", "2")
    assert run.returncode == 0, run.stderr
    assert len(run.of("rollback")) == 1
    assert [w["message"] for w in run.of("warning") if "dropped" in w["message"]] == []
    assert inspect(tmp_path / "out.mkv").frames_decoded == 300


async def test_engine_never_drops_its_own_live_job_for_the_same_output(
    make_media, tmp_path: Path, ffmpeg: str
) -> None:
    """Two inputs that map to one output (x.mp4, x.mkv): the second job must not drop
    the first one's state and work folder while it encodes.

    The second job fails at once, while the engine still notes its job id in the
    background. That note's write is made slow here: it once landed after the failure
    and undid it, leaving the entry running with nothing running it (the queue hung)."""
    first = make_media("a.mkv", duration=10.0)
    second = make_media("b.mkv", duration=1.0, size=(160, 90))
    output = tmp_path / "out" / "x.av1.mkv"
    output.parent.mkdir()
    session = make_engine(tmp_path, ffmpeg, workers=1)
    queue = session.engine.queue
    put, put_all = queue.put, queue.put_all

    def slow_when_running_with_job(entries: list[QueueEntry]) -> None:
        if any(e.status is EntryStatus.RUNNING and e.job for e in entries):
            time.sleep(0.3)

    def slow_put(entry: QueueEntry) -> None:  # the write the racing code made
        slow_when_running_with_job([entry])
        put(entry)

    def slow_put_all(entries: list[QueueEntry]) -> None:
        slow_when_running_with_job(entries)
        put_all(entries)

    queue.put, queue.put_all = slow_put, slow_put_all  # type: ignore[method-assign]
    try:
        async with session.engine.running():
            a, b = await asyncio.wait_for(
                session.run(
                    [(first, output), (second, output)],
                    options=JobOptions(preset=12, min_segment_s=0.5, max_segment_s=1.0),
                ),
                60,
            )
        stored = {e.id: e for e in queue.entries()}
    finally:
        session.engine.close()
    assert a.status is EntryStatus.DONE, a.error
    assert b.status is EntryStatus.FAILED
    assert b.job, "the failed entry keeps its job id"
    assert stored == {a.id: a, b.id: b}, "the queue table ends as the engine's view"
    assert b.error == (
        f"{second}: its output {output} is being written by this drapto "
        f"(from {first}) (wait for it or stop it)"
    )
    assert inspect(output).frames_decoded == 250
