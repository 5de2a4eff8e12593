"""Feature flags changed live, persisted, shadowed; rollback on a real strategy failure."""

from __future__ import annotations

import asyncio
import shutil
import tomllib
from pathlib import Path

import pytest
from encode_helpers import encode, inspect
from engine_helpers import FAST, Session, make_engine
from mediagen import one_keyframe_ts

from drapto_engine.config import Config
from drapto_engine.core.events import (
    AnalysisReady,
    Event,
    FlagChanged,
    JobFinished,
    RolledBack,
    SegmentsPlanned,
    SegmentStarted,
)
from drapto_engine.core.flags import FlagSource, FlagState
from drapto_engine.core.jobs import EntryStatus
from drapto_engine.infrastructure.workers import cpu_count, threads_per_worker

pytestmark = pytest.mark.slow


async def test_next_job_flag_changed_during_a_job_applies_to_the_next_job(
    tmp_path: Path, make_media: object, ffmpeg: str
) -> None:
    a = make_media("a.mkv", size=(160, 90), duration=6, gop=25)  # type: ignore[operator]
    b = make_media("b.mkv", size=(160, 90), duration=6, gop=25)  # type: ignore[operator]
    flipped: list[str] = []
    tasks: list[asyncio.Future[object]] = []

    def flip(session: Session, event: Event) -> None:
        if isinstance(event, AnalysisReady) and not flipped:
            flipped.append(event.job)  # the first job is analysed; the second not started
            tasks.append(
                asyncio.ensure_future(session.engine.set_flag("segmented_encoding", "off"))
            )

    session = make_engine(tmp_path, ffmpeg, on_event=flip)
    async with session.engine.running():
        entries = await session.run([(a, tmp_path / "a.av1.mkv"), (b, tmp_path / "b.av1.mkv")])
    assert [e.status for e in entries] == [EntryStatus.DONE, EntryStatus.DONE]
    first, second = (e.job for e in entries)
    assert first == flipped[0]
    changed = session.of(FlagChanged)
    assert [(c.flag.name, c.previous, c.flag.state) for c in changed] == [
        ("segmented_encoding", FlagState.ON, FlagState.OFF)
    ]
    # the running job kept its strategy; the next one took the new state
    assert session.of(AnalysisReady, first)[0].segmented
    assert session.of(SegmentsPlanned, first)[0].count > 1
    assert not session.of(AnalysisReady, second)[0].segmented
    assert session.of(SegmentsPlanned, second)[0].count == 1
    # persisted with tomli-w beside the config file, and a new engine starts with it
    saved = tomllib.loads((tmp_path / "config" / "flags.toml").read_text())
    assert saved == {"segmented_encoding": "off"}
    session.engine.close()
    again = make_engine(tmp_path, ffmpeg)
    view = again.engine.flags.view("segmented_encoding")
    assert (view.state, view.source) == (FlagState.OFF, FlagSource.SAVED)
    again.engine.close()


async def test_next_segment_flag_changed_during_a_job_applies_from_the_next_segment(
    tmp_path: Path, make_media: object, ffmpeg: str
) -> None:
    if cpu_count() < 2:
        pytest.skip("tail threads equal the share on one core")
    source = make_media("s.mkv", size=(160, 90), duration=8, gop=25)  # type: ignore[operator]
    share, everything = threads_per_worker(2), cpu_count()
    session = make_engine(tmp_path, ffmpeg, workers=2)
    async with session.engine.running():
        control = await session.run([(source, tmp_path / "control.mkv")])
        assert control[0].status is EntryStatus.DONE
        started = [e.threads for e in session.of(SegmentStarted, control[0].job)]
        assert started.count(everything) >= 1  # tail_threads on: the last starter got all cores
        assert set(started) <= {share, everything}

        tasks: list[asyncio.Future[object]] = []

        def off_at_first_start(s: Session, event: Event) -> None:
            if isinstance(event, SegmentStarted) and not tasks:
                tasks.append(asyncio.ensure_future(s.engine.set_flag("tail_threads", "off")))

        session.events.clear()
        hook = session.engine.bus.subscribe(lambda e: off_at_first_start(session, e))
        flipped = await session.run([(source, tmp_path / "flipped.mkv")])
        hook()
    assert flipped[0].status is EntryStatus.DONE
    order = session.events
    change = next(i for i, e in enumerate(order) if isinstance(e, FlagChanged))
    after = [e for e in order[change:] if isinstance(e, SegmentStarted)]
    assert len(after) >= 2
    assert all(e.threads == share for e in after)  # honoured from the next segment on
    session.engine.close()


def test_shadow_crop_detection_records_the_discrepancy_and_uses_the_default(
    tmp_path: Path, make_media: object
) -> None:
    source = make_media(  # type: ignore[operator]
        "letterbox.mkv", size=(160, 120), pad=(160, 80, 0, 20), duration=2
    )
    run = encode(source, tmp_path / "out.mkv", "--flag", "crop_detection=shadow")
    assert run.returncode == 0, run.stderr
    [shadow] = run.of("discrepancy")
    assert shadow["flag"] == "crop_detection"
    assert shadow["used"] == "crop=160:80:0:20" and shadow["shadow"] == "none"
    assert shadow["metric"] == pytest.approx(1 / 3, abs=0.01)
    facts = inspect(tmp_path / "out.mkv", decode=False)
    assert facts.of("video")[0].packets == 50
    assert run.of("analysis")[0]["crop"] == "crop=160:80:0:20"  # the default strategy is used


def test_shadow_scene_segmentation_compares_scene_and_fixed_cuts(
    tmp_path: Path, make_media: object
) -> None:
    source = make_media("cuts.mkv", size=(160, 90), cuts=[1.4, 2.2, 1.6], gop=25)  # type: ignore[operator]
    run = encode(
        source,
        tmp_path / "out.mkv",
        "--min-segment", "1", "--max-segment", "2",
        "--flag", "scene_segmentation=shadow",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    [shadow] = run.of("discrepancy")
    used = [int(x) for x in shadow["used"].split()]
    fixed = [int(x) for x in shadow["shadow"].split()]
    assert 35 in used and 90 in used  # the scene cuts at 1.4 s and 3.6 s are used
    # 130 frames in fixed segments of at most 2 s: three even pieces
    assert len(fixed) == 2 and all(abs(f - 130 * i / 3) <= 1 for i, f in enumerate(fixed, 1))
    assert 0 < shadow["metric"] <= 1
    starts = [s["start_frame"] for s in run.of("segment_planned")][1:]
    assert starts == used


def test_a_failing_segmented_encode_is_rolled_back_and_the_output_validates(
    tmp_path: Path, ffmpeg: str
) -> None:
    source = one_keyframe_ts(ffmpeg, tmp_path / "onekey.ts")
    run = encode(source, tmp_path / "out.mkv", "--min-segment", "1", "--max-segment", "2")
    assert run.returncode == 0, run.stderr
    [rollback] = run.of("rollback")
    assert (rollback["flag"], rollback["stage"]) == ("segmented_encoding", "encoding")
    assert "frames" in rollback["error"]
    finished = run.of("job_finished")[0]
    assert finished["job"] != rollback["job"]  # retried as its own job: settings differ
    assert [a["segmented"] for a in run.of("analysis")] == [True, False]
    facts = inspect(tmp_path / "out.mkv")
    assert facts.of("video")[0].codec == "av1" and facts.frames_decoded == 300


async def test_rollbacks_past_the_limit_turn_the_flag_off_for_the_session(
    tmp_path: Path, ffmpeg: str
) -> None:
    first = one_keyframe_ts(ffmpeg, tmp_path / "one.ts", seconds=10)
    second = one_keyframe_ts(ffmpeg, tmp_path / "two.ts", seconds=10)
    session = make_engine(tmp_path, ffmpeg, config=Config(rollback_limit=1))
    async with session.engine.running():
        [one] = await session.run([(first, tmp_path / "one.mkv")])
        [two] = await session.run([(second, tmp_path / "two.mkv")])
    assert (one.status, two.status) == (EntryStatus.DONE, EntryStatus.DONE)
    assert one.rollbacks == ["segmented_encoding"] and two.rollbacks == []
    [off] = session.of(FlagChanged)
    assert (off.flag.name, off.flag.state, off.flag.source) == (
        "segmented_encoding",
        FlagState.OFF,
        FlagSource.ROLLBACK,
    )
    assert off.flag.rollbacks == 1 and off.reason
    assert len(session.of(RolledBack)) == 1  # the second job went straight to whole-file
    jobs = [e.job for e in session.of(JobFinished)]
    assert not session.of(AnalysisReady, jobs[1])[0].segmented
    # a session-wide rollback is not saved: the next session starts from the default
    assert not (tmp_path / "config" / "flags.toml").exists()
    session.engine.close()


async def test_a_user_rolls_back_by_turning_the_flag_on_again(tmp_path: Path, ffmpeg: str) -> None:
    session = make_engine(tmp_path, ffmpeg, config=Config(rollback_limit=1))
    session.engine.flags.set("segmented_encoding", FlagState.OFF, FlagSource.ROLLBACK)
    view = await session.engine.set_flag("segmented_encoding", "on")
    assert (view.state, view.source) == (FlagState.ON, FlagSource.LIVE)
    assert session.engine.flags.enabled("segmented_encoding")
    session.engine.close()


@pytest.mark.parametrize("bad", ["turbo=on", "segmented_encoding=shadow", "crop_detection=maybe"])
def test_bad_flag_overrides_are_one_line(tmp_path: Path, tiny_video: Path, bad: str) -> None:
    source = tmp_path / "x.mkv"  # a real 64x64 1 s video (conftest.py)
    shutil.copyfile(tiny_video, source)
    run = encode(source, tmp_path / "out.mkv", "--flag", bad)
    assert run.returncode == 2
    assert len(run.stderr.strip().splitlines()) == 1 and "flag" in run.stderr
    assert not (tmp_path / "out.mkv").exists()
    _ = FAST
