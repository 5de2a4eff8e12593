"""Long scenes are split on a source keyframe when one lies within a second of the even
split, and such a segment is sought straight to its keyframe."""

from __future__ import annotations

import itertools
from pathlib import Path

import av
import numpy as np
import pytest
from encode_helpers import encode, inspect, luma_thumbnails

from drapto_engine.services.segmentation.planner import plan_segments
from drapto_engine.services.segmentation.timestamps import frame_times

pytestmark = pytest.mark.slow


def keyframes(path: Path) -> set[int]:
    """Frame numbers (in time order) whose packets are keyframes: the test's own reading."""
    with av.open(str(path)) as c:
        packets = [(p.pts, p.is_keyframe) for p in c.demux(c.streams.video[0]) if p.size]
    return {i for i, (_, key) in enumerate(sorted(packets)) if key}


def test_testvideo_split_lands_on_its_keyframe(shared_media: Path, tmp_path: Path) -> None:
    """testvideo.mp4: keyframes at 0, 30, 180, 480; cuts at 30, 180, 394. With scenes of at
    least 7 s only the cut at 394 stays, and the 13.1 s scene before it is split in two:
    evenly at frame 197, on the keyframe 180 (0.57 s earlier) instead."""
    source = shared_media / "testvideo.mp4"
    keys = keyframes(source)
    assert keys == {0, 30, 180, 480}
    times = frame_times(source)
    assert set(times.keyframes) == keys
    even = plan_segments([394], times, min_s=7, max_s=7.2)
    assert [s.start_frame for s in even] == [0, 197, 394, 557]

    output = tmp_path / "keyed.mkv"
    run = encode(source, output, "--min-segment", "7", "--max-segment", "7.2")
    assert run.returncode == 0, run.stderr
    frames = run.of("segments_planned")[0]["frames"]
    starts = [0, *itertools.accumulate(frames)][:-1]
    assert starts == [0, 180, 394, 557]
    assert 180 in keys
    assert inspect(output).frames_decoded == 720


def test_segments_sought_to_keyframes_hold_exactly_their_frames(make_media, tmp_path: Path) -> None:
    """Keyframes every 12 frames (0.48 s), 6 s split in pieces of at most 1.9 s: the
    even splits (1.5 s apart) move to keyframes, and those segments are sought to the
    keyframe's own time. Each output frame must still be its own source frame (not the
    one before, nor after)."""
    source = make_media("gop.mp4", size=(160, 96), duration=6.0, gop=12, source="testsrc2")
    keys = keyframes(source)
    output = tmp_path / "gop.mkv"
    run = encode(
        source, output, "--no-scenes", "--min-segment", "1", "--max-segment", "1.9", "--crf", "20"
    )
    assert run.returncode == 0, run.stderr
    frames = run.of("segments_planned")[0]["frames"]
    starts = [0, *itertools.accumulate(frames)][:-1]
    assert starts == [0, 36, 72, 108], starts
    assert set(starts) <= keys
    src, out = luma_thumbnails(source), luma_thumbnails(output)
    assert len(out) == len(src) == 150
    for i, frame in enumerate(out):
        errors = [float(np.abs(frame - s).mean()) for s in src]
        assert int(np.argmin(errors)) == i, (
            f"output frame {i} looks like source {np.argmin(errors)}"
        )
