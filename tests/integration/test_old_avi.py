"""Old AVIs (Xvid/DivX: MPEG-4 ASP with packed B-frames, a dropped first frame, MP3)
encode to an output that holds every source frame at its time and decodes as cleanly as a
plain ffmpeg encode of the same file."""

from __future__ import annotations

import subprocess
from pathlib import Path

import av
import numpy as np
import pytest
from encode_helpers import encode
from mediagen import make_xvid_avi, run_ffmpeg

from drapto_engine.infrastructure.probe import probe

pytestmark = pytest.mark.slow


def decode_warnings(ffmpeg: str, path: Path) -> str:
    done = subprocess.run(
        [ffmpeg, "-hide_banner", "-nostdin", "-v", "warning", "-i", str(path), "-f", "null", "-"],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stderr


def frame_times(path: Path) -> list[float]:
    """The time of every decoded video frame, in seconds, in the order decoded (a packed
    B-frame comes out of the decoder with its packet's time, so a packed source's times
    are out of order: a player shows them sorted)."""
    with av.open(str(path)) as c:
        return [float(f.time) for f in c.decode(c.streams.video[0]) if f.time is not None]


def pictures(path: Path) -> list[np.ndarray]:
    """The luma of every frame, in the order shown."""
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="gray").astype(float) for f in c.decode(c.streams.video[0])]


@pytest.mark.parametrize("dropped_first", ["empty", "n-vop"])
def test_packed_xvid_avi_keeps_every_frame_and_decodes_cleanly(
    ffmpeg: str, tmp_path: Path, dropped_first: str | None
) -> None:
    source = make_xvid_avi(ffmpeg, tmp_path / "old.avi", dropped_first=dropped_first)
    wanted = sorted(frame_times(source))
    assert len(wanted) == 100 and len(set(wanted)) == 100
    assert probe(source).video.frame_count == 100  # the dropped frame's empty chunk is none
    plain = tmp_path / "plain.mkv"
    run_ffmpeg(ffmpeg, ["-i", str(source), "-c:v", "libsvtav1", "-preset", "12", str(plain)])
    assert decode_warnings(ffmpeg, plain) == ""

    output = tmp_path / "out.mkv"
    # several segments: later ones are entered by a seek
    run = encode(source, output, "--min-segment", "1", "--max-segment", "2")
    assert run.returncode == 0, run.stderr
    assert len(run.of("segment_done")) >= 2
    assert decode_warnings(ffmpeg, output) == ""
    got = frame_times(output)
    assert got == sorted(got) == frame_times(plain)
    assert max(abs(a - b) for a, b in zip(got, wanted, strict=True)) < 0.001
    # each frame shows its own picture: none shifted to a neighbour's time
    # (consecutive frames of this source differ by 5 or more on average)
    shown = [np.abs(a - b).mean() for a, b in zip(pictures(output), pictures(source), strict=True)]
    assert max(shown) < 3
    with av.open(str(output)) as c:
        assert [s.codec_context.name for s in c.streams.audio] == ["opus"]
