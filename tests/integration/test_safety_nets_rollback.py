"""Rollbacks, each from a real failure of a real run: a job failing at a stage that a
flag's strategy owns is retried once with the flag off, emits `rollback`, and ends
with an output that validates. Also Dolby Vision profiles 5 and 7 on patched real files.

The failures: the scene scan's decoder killed (as the OOM killer would), finished
segments swapped for shorter real files (the join then lacks frames), and Dolby
Vision segments with their RPUs stripped by ffmpeg's own bitstream filter. Each
damage is done only to the run that uses the flag under test, synchronously on the
engine's own event, so the retried run is what must produce the valid output.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from encode_helpers import encode, inspect
from engine_helpers import Session, make_engine
from sabotage import recopy, shorten
from test_dolby_vision import colour, dovi_record, frame_side_data

from drapto_engine.core.events import AnalysisReady, Event, RolledBack, SegmentDone
from drapto_engine.core.jobs import EntryStatus, JobOptions
from drapto_engine.services.encoding.svt import SEGMENT_SUFFIX
from drapto_engine.services.segmentation.scenes import DECODER as SCAN_DECODER
from drapto_engine.services.workdir import WORK_PREFIX

pytestmark = pytest.mark.slow

FAST = JobOptions(preset=12, min_segment_s=1.0, max_segment_s=2.0)
DV_SAMPLE = "dv-p81-regular.mkv"
DV_FRAMES = 259


def strip_rpus(ffmpeg: str, segment: Path, frames: int) -> None:
    """Replace `segment` by a copy without its Dolby Vision RPUs (ffmpeg's dovi_rpu bsf).

    The first segment is left whole: the join takes its configuration record from it,
    so what fails is the RPU on every frame, not the record."""
    if segment.name.endswith("-00000" + SEGMENT_SUFFIX):
        return
    recopy(ffmpeg, segment, "-bsf:v", "dovi_rpu=strip=1")


Damage = Callable[[str, Path, int], None]


def damaging(
    output: Path, ffmpeg: str, damage: Damage, when: Callable[[AnalysisReady], bool]
) -> Callable[[Session, Event], None]:
    """An event hook damaging each finished segment of the jobs whose analysis `when` picks."""
    picked: set[str] = set()

    def hook(session: Session, event: Event) -> None:
        if isinstance(event, AnalysisReady) and when(event):
            picked.add(event.job)
        elif isinstance(event, SegmentDone) and event.job in picked and not event.resumed:
            work = output.parent / f"{WORK_PREFIX}{event.job}"
            damage(ffmpeg, work / f"segment-{event.index:05d}{SEGMENT_SUFFIX}", event.frames)

    return hook


async def run_one(
    session: Session, source: Path, output: Path, options: JobOptions = FAST, **flags: str
) -> Any:
    async with session.engine.running():
        [entry] = await session.engine.add([(source, output)], options=options, flags=flags)
        await session.engine.run(only={entry.id}, ignore_pause=True)
    done = session.engine.entry(entry.id)
    session.engine.close()
    return done


def rollbacks(session: Session) -> list[tuple[str, str]]:
    return [(e.flag, e.stage) for e in session.of(RolledBack)]


# -- the join, a cropped output and segmented Dolby Vision: validation fails for real --


async def test_a_join_that_does_not_validate_is_rolled_back_to_a_whole_file_encode(
    tmp_path: Path, make_media: Any, ffmpeg: str
) -> None:
    source = make_media("s.mkv", size=(160, 90), duration=4, gop=25, audio=["stereo"])
    output = tmp_path / "out" / "s.av1.mkv"
    output.parent.mkdir()
    hook = damaging(output, ffmpeg, shorten, lambda a: a.segmented)
    session = make_engine(tmp_path, ffmpeg, on_event=hook)
    done = await run_one(session, source, output)
    assert done.status is EntryStatus.DONE, done.error
    [rollback] = session.of(RolledBack)
    assert (rollback.flag, rollback.stage) == ("segmented_encoding", "validating")
    assert "video frames, source has 100" in rollback.error
    assert [a.segmented for a in session.of(AnalysisReady)] == [True, False]
    facts = inspect(output)
    assert facts.frames_decoded == 100 and facts.of("audio")[0].codec == "opus"
    assert sorted(p.name for p in output.parent.iterdir()) == [output.name]


async def test_a_cropped_output_that_does_not_validate_is_rolled_back_uncropped(
    tmp_path: Path, make_media: Any, ffmpeg: str
) -> None:
    source = make_media("bars.mkv", size=(320, 240), duration=2, pad=(320, 160, 0, 40))
    output = tmp_path / "bars.av1.mkv"
    hook = damaging(output, ffmpeg, shorten, lambda a: a.crop is not None)
    session = make_engine(tmp_path, ffmpeg, on_event=hook)
    done = await run_one(session, source, output, segmented_encoding="off")
    assert done.status is EntryStatus.DONE, done.error
    assert rollbacks(session) == [("crop_detection", "validating")]
    assert [a.crop is not None for a in session.of(AnalysisReady)] == [True, False]
    facts = inspect(output)
    assert (facts.width, facts.height, facts.frames_decoded) == (320, 240, 50)


async def test_segmented_dolby_vision_that_loses_rpus_is_rolled_back_to_one_run(
    tmp_path: Path, shared_media: Path, ffmpeg: str
) -> None:
    output = tmp_path / "dv.av1.mkv"
    hook = damaging(output, ffmpeg, strip_rpus, lambda a: a.segmented)
    session = make_engine(tmp_path, ffmpeg, on_event=hook)
    options = JobOptions(preset=12, min_segment_s=2.0, max_segment_s=4.0)
    done = await run_one(session, shared_media / DV_SAMPLE, output, options)
    assert done.status is EntryStatus.DONE, done.error
    [rollback] = session.of(RolledBack)
    assert (rollback.flag, rollback.stage) == ("segmented_dolby_vision", "validating")
    assert "carry a Dolby Vision RPU" in rollback.error
    assert [a.segmented for a in session.of(AnalysisReady)] == [True, False]
    frames, with_rpu, _, _ = frame_side_data(output)
    assert frames == with_rpu == DV_FRAMES
    assert dovi_record(ffmpeg, output) == (10, 1)


# -- the scene scan dies --


async def test_a_scene_scan_that_dies_is_rolled_back_to_fixed_segments(
    tmp_path: Path, make_media: Any, ffmpeg: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scan's decoder is SIGKILLed as soon as it starts (the OOM killer's way); the
    job must fall back to fixed-length segments, which need no scan."""
    source = make_media("s.mkv", size=(160, 90), duration=4, gop=25)
    killed: list[int] = []
    spawn = asyncio.create_subprocess_exec

    async def kill_the_scan(*argv: Any, **kwargs: Any) -> asyncio.subprocess.Process:
        proc = await spawn(*argv, **kwargs)
        if str(SCAN_DECODER) in argv and str(source) in argv:
            proc.kill()
            killed.append(proc.pid)
        return proc

    monkeypatch.setattr(asyncio, "create_subprocess_exec", kill_the_scan)
    output = tmp_path / "s.av1.mkv"
    session = make_engine(tmp_path, ffmpeg)
    done = await run_one(session, source, output)
    assert killed, "the scan never ran"
    assert done.status is EntryStatus.DONE, done.error
    [rollback] = session.of(RolledBack)
    assert (rollback.flag, rollback.stage) == ("scene_segmentation", "segmenting")
    assert "scene detection failed" in rollback.error
    assert len(killed) == 1, "the rolled-back run scanned again"
    assert inspect(output).frames_decoded == 100


# -- Dolby Vision profiles 5 and 7 on patched real files --


def dv_profile_copy(ffmpeg: str, sample: Path, out: Path, profile: int) -> Path:
    """A remux of the real 8.1 sample whose DOVI configuration record says `profile`
    (5: no enhancement layer, compatibility 0; 7: enhancement layer, compatibility 6)."""
    remux = out.with_suffix(".remux.mkv")
    subprocess.run(
        [ffmpeg, "-v", "error", "-y", "-i", str(sample), "-map", "0", "-c", "copy", str(remux)],
        check=True,
    )
    data = bytearray(remux.read_bytes())
    record = data.find(bytes([1, 0, 8 << 1, 0x0D, 1 << 4]))  # v1.0, 8.1, rpu+bl, compat 1
    box = data.find(b"dvvC")
    assert record > 0 and box > 0, "the sample's DOVI record was not found"
    el, compat = (1, 6) if profile == 7 else (0, 0)
    data[box : box + 4] = b"dvcC"  # the box type of profiles up to 7
    data[record + 2] = profile << 1
    data[record + 3] = (1 << 3) | (1 << 2) | (el << 1) | 1  # level 1, rpu, el, bl
    data[record + 4] = compat << 4
    out.write_bytes(data)
    remux.unlink()
    assert dovi_record(ffmpeg, out) == (profile, compat)
    return out


def test_dolby_vision_profile_5_is_refused(ffmpeg: str, shared_media: Path, tmp_path: Path) -> None:
    source = dv_profile_copy(ffmpeg, shared_media / DV_SAMPLE, tmp_path / "p5.mkv", 5)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    run = encode(source, out_dir / "p5.av1.mkv")
    assert run.returncode == 1, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in run.stderr
    assert "p5.mkv: Dolby Vision profile 5 cannot be kept in AV1" in lines[0]
    assert "--hdr10-fallback" in lines[0]
    assert not run.of("segment_started")
    assert list(out_dir.iterdir()) == []


@pytest.mark.parametrize(
    ("profile", "extra"), [(7, ()), (5, ("--hdr10-fallback",))], ids=["p7", "p5-fallback"]
)
def test_dolby_vision_that_cannot_be_kept_is_encoded_as_hdr10(
    ffmpeg: str, shared_media: Path, tmp_path: Path, profile: int, extra: tuple[str, ...]
) -> None:
    source = dv_profile_copy(ffmpeg, shared_media / DV_SAMPLE, tmp_path / "dv.mkv", profile)
    output = tmp_path / "dv.av1.mkv"
    run = encode(source, output, "--min-segment", "2", "--max-segment", "4", *extra)
    assert run.returncode == 0, run.stderr
    [analysis] = run.of("analysis")
    assert analysis["dolby_vision_profile"] == profile and analysis["encoder"] == "svt-av1"
    assert any(f"profile {profile}" in w["message"] for w in run.of("warning"))
    assert dovi_record(ffmpeg, output) is None, "the output claims Dolby Vision"
    frames, with_rpu, _, _ = frame_side_data(output)
    assert (frames, with_rpu) == (DV_FRAMES, 0)
    trc, primaries, _, _ = colour(output)
    assert (trc, primaries) == ("16", "9")  # SMPTE 2084, BT.2020: HDR10
    assert analysis["dynamic_range"] == "dolby_vision"
