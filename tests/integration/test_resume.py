"""A crash or a stop costs at most the segments in flight: real runs, killed and resumed."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from encode_helpers import DRAPTO, FAST, encode, ffmpeg_processes_touching, inspect

from drapto_engine.core.models import SegmentState
from drapto_engine.core.state import IllegalTransition, JobRecord, JobStage
from drapto_engine.infrastructure.state_manager import StateManager
from drapto_engine.infrastructure.store import StateStore

pytestmark = pytest.mark.slow

SEGMENTING = ["--min-segment", "0.5", "--max-segment", "1", "--workers", "1", "--preset", "10"]


def _start(source: Path, output: Path, state: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            *DRAPTO,
            "encode",
            str(source),
            "-o",
            str(output),
            *FAST,
            *SEGMENTING,
            "--state-dir",
            str(state),
            "--no-daemon",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_done_segments(proc: subprocess.Popen[str], count: int) -> list[int]:
    assert proc.stdout is not None
    done: list[int] = []
    for line in proc.stdout:
        event = json.loads(line)
        if event["type"] == "segment_done":
            done.append(event["index"])
            if len(done) >= count:
                return done
    raise AssertionError("the encode ended before enough segments were done")


def _segments(state: Path) -> dict[int, tuple[str, int]]:
    with sqlite3.connect(state / "drapto.db") as db:
        return {
            idx: (st, n) for idx, st, n in db.execute("SELECT idx, state, encodes FROM segments")
        }


@pytest.mark.parametrize("how", ["kill", "sigint", "sigterm"])
def test_interrupted_job_resumes_without_redoing_finished_segments(
    make_media, tmp_path: Path, how: str
) -> None:
    source = make_media("long.mkv", duration=8.0, size=(320, 240), audio=["stereo"])
    out_dir, state = tmp_path / "o", tmp_path / "state"
    out_dir.mkdir()
    output = out_dir / "long.av1.mkv"
    proc = _start(source, output, state)
    finished = _wait_for_done_segments(proc, 2)
    if how == "kill":
        proc.kill()
    else:
        proc.send_signal(signal.SIGINT if how == "sigint" else signal.SIGTERM)
    _, stderr = proc.communicate(timeout=10)
    if how != "kill":  # --no-daemon: says, as a followed engine does, that a rerun resumes
        name = "SIGINT" if how == "sigint" else "SIGTERM"
        assert stderr.endswith(
            f"drapto: {source}: stopped by {name}; nothing was written; the next run resumes\n"
        ), stderr
    deadline = time.monotonic() + 5
    while ffmpeg_processes_touching(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ffmpeg_processes_touching(tmp_path) == [], "ffmpeg children outlived drapto"
    assert not output.exists()
    before = _segments(state)
    assert all(before[i][0] == "done" for i in finished)

    run = encode(source, output, *SEGMENTING, "--state-dir", str(state))
    assert run.returncode == 0, run.stderr
    resumed = {e["index"] for e in run.of("segment_done") if e["resumed"]}
    assert set(finished) <= resumed
    after = _segments(state)
    assert all(state_ == "done" for state_, _ in after.values())
    for index in finished:
        assert after[index][1] == 1, f"finished segment {index} was encoded again"
    assert inspect(output).frames_decoded == 200
    assert sorted(p.name for p in out_dir.iterdir()) == ["long.av1.mkv"]


def test_second_process_on_the_same_job_is_refused(make_media, tmp_path: Path) -> None:
    # long enough that the first run is still encoding when the second one starts; small
    # frames, as both runs analyse all of it
    source = make_media("long.mkv", duration=30.0, size=(160, 90))
    out_dir, state = tmp_path / "o", tmp_path / "state"
    out_dir.mkdir()
    first = _start(source, out_dir / "x.mkv", state)
    try:
        _wait_for_done_segments(first, 1)
        second = encode(source, out_dir / "x.mkv", *SEGMENTING, "--state-dir", str(state))
        assert second.returncode == 1
        assert f"is being encoded by another drapto (process {first.pid})" in second.stderr
    finally:
        first.kill()
        first.communicate(timeout=10)


def test_changed_settings_start_afresh(make_media, tmp_path: Path) -> None:
    source = make_media("s.mkv", duration=3.0)
    out_dir, state = tmp_path / "o", tmp_path / "state"
    out_dir.mkdir()
    proc = _start(source, out_dir / "x.mkv", state)
    _wait_for_done_segments(proc, 1)
    proc.kill()
    proc.communicate(timeout=10)
    run = encode(source, out_dir / "x.mkv", *SEGMENTING, "--crf", "40", "--state-dir", str(state))
    assert run.returncode == 0, run.stderr
    assert any("starting afresh" in w["message"] for w in run.of("warning"))
    assert not any(e["resumed"] for e in run.of("segment_done"))
    assert sorted(p.name for p in out_dir.iterdir()) == ["x.mkv"]


async def test_illegal_transitions_raise(tmp_path: Path) -> None:
    manager = StateManager(StateStore(tmp_path / "s.db"))
    record = JobRecord(
        id="j1", input="/a", input_size=1, input_mtime_ns=1, output="/b", settings="{}"
    )
    await manager.begin(record)
    with pytest.raises(IllegalTransition, match="queued -> muxing"):
        await manager.set_stage("j1", JobStage.MUXING)
    await manager.set_stage("j1", JobStage.ANALYZING)
    await manager.plan_segment("j1", 0, 0, 10)
    with pytest.raises(IllegalTransition, match="pending -> done"):
        await manager.set_segment("j1", 0, SegmentState.DONE)
    await manager.set_segment("j1", 0, SegmentState.RUNNING)
    await manager.set_segment("j1", 0, SegmentState.DONE)
    segments = await manager.segments("j1")
    assert (segments[0].state, segments[0].encodes) == (SegmentState.DONE, 1)
