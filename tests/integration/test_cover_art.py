"""Cover art is kept as a Matroska attachment, a second video stream is named as not
kept, and an audio file whose only picture is its cover is refused in one line.

The outputs are read back with PyAV by the test's own code: ffmpeg shows a Matroska image
attachment as an attached_pic video stream whose one packet is the picture's bytes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import av
import pytest
from encode_helpers import encode
from mediagen import make_video, run_ffmpeg

from drapto_engine.cli.printers import summary_lines
from drapto_engine.core.events import JobFinished
from drapto_engine.infrastructure.probe import probe
from drapto_engine.services.validation import Expected, check_output

pytestmark = pytest.mark.slow

ATTACHED_PIC = int(av.stream.Disposition.attached_pic)


def pictures(path: Path) -> list[tuple[str | None, str | None, bytes]]:
    """(file name, mime type, bytes) of every attached picture, in stream order."""
    found = []
    with av.open(str(path)) as c:
        for s in c.streams.video:
            if int(s.disposition) & ATTACHED_PIC:
                [data] = [bytes(p) for p in c.demux(s) if p.size]
                found.append((s.metadata.get("filename"), s.metadata.get("mimetype"), data))
    return found


def picture(ffmpeg: str, out: Path) -> Path:
    run_ffmpeg(ffmpeg, ["-f", "lavfi", "-i", "testsrc2=s=96x64", "-frames:v", "1", str(out)])
    return out


@pytest.fixture(scope="module")
def clip(ffmpeg: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_video(
        ffmpeg, tmp_path_factory.mktemp("clip") / "clip.mkv", size=(64, 64), duration=1.0
    )


def test_mkv_image_attachment_is_kept(ffmpeg: str, clip: Path, tmp_path: Path) -> None:
    cover = picture(ffmpeg, tmp_path / "cover.png")
    source = tmp_path / "film.mkv"
    run_ffmpeg(
        ffmpeg,
        ["-i", str(clip), "-c", "copy", "-attach", str(cover),
         "-metadata:s:t", "mimetype=image/png", str(source)],
    )  # fmt: skip
    assert pictures(source) == [("cover.png", "image/png", cover.read_bytes())]
    assert [(a.filename, a.mimetype, a.cover) for a in probe(source).attachments] == [
        ("cover.png", "image/png", True)
    ]
    output = tmp_path / "out.mkv"
    run = encode(source, output)
    assert run.returncode == 0, run.stderr
    assert pictures(output) == [("cover.png", "image/png", cover.read_bytes())]
    assert len(probe(output).attachments) == 1


def test_mp4_attached_pic_becomes_an_attachment(ffmpeg: str, clip: Path, tmp_path: Path) -> None:
    cover = picture(ffmpeg, tmp_path / "art.jpg")
    source = tmp_path / "film.mp4"
    run_ffmpeg(
        ffmpeg,
        ["-i", str(clip), "-i", str(cover), "-map", "0", "-map", "1", "-c", "copy",
         "-disposition:v:1", "attached_pic", str(source)],
    )  # fmt: skip
    [(_, _, packet)] = pictures(source)
    assert packet == cover.read_bytes()
    output = tmp_path / "out.mkv"
    run = encode(source, output)
    assert run.returncode == 0, run.stderr
    assert pictures(output) == [("cover.jpg", "image/jpeg", packet)]
    assert not run.of("warning"), run.of("warning")  # cover art is no extra video stream

    # Validation counts the cover: the same output without it fails on the count.
    bare = tmp_path / "bare.mkv"
    run_ffmpeg(ffmpeg, ["-i", str(output), "-map", "0:V", "-c", "copy", str(bare)])
    expected = Expected(
        width=64, height=64, frames=25, duration_s=1.0, frame_duration_s=0.04, attachments=1
    )
    assert "0 attachments, source has 1" in check_output(bare, expected)
    assert not [f for f in check_output(output, expected) if "attachment" in f]


def test_second_video_stream_is_named_in_plan_and_summary(
    ffmpeg: str, clip: Path, tmp_path: Path
) -> None:
    source = tmp_path / "angles.mkv"
    run_ffmpeg(
        ffmpeg,
        ["-i", str(clip), "-f", "lavfi", "-i", "smptebars=s=48x32:r=25:d=1",
         "-map", "0:v", "-map", "1:v", "-c:v:0", "copy", "-c:v:1", "libx264",
         "-metadata:s:v:1", "title=angle 2", str(source)],
    )  # fmt: skip
    output = tmp_path / "out.mkv"
    run = encode(source, output)
    assert run.returncode == 0, run.stderr
    named = 'video stream #1 (h264 48x32 "angle 2")'
    assert [w["message"] for w in run.of("warning") if named in w["message"]], run.events
    [finished] = run.of("job_finished")
    assert any(named in line for line in summary_lines(JobFinished.model_validate(finished)))
    with av.open(str(output)) as c:
        assert len(c.streams.video) == 1


@pytest.mark.parametrize("suffix", [".mp3", ".m4a", ".flac"])
def test_audio_with_only_a_cover_is_not_a_video(ffmpeg: str, tmp_path: Path, suffix: str) -> None:
    cover = picture(ffmpeg, tmp_path / "cover.jpg")
    song = tmp_path / f"song{suffix}"
    run_ffmpeg(
        ffmpeg,
        ["-f", "lavfi", "-i", "sine=d=1", "-i", str(cover), "-map", "0", "-map", "1",
         "-c:v", "copy", "-disposition:v:0", "attached_pic", str(song)],
    )  # fmt: skip
    for command in (["probe"], ["encode", "--preset", "12"]):
        done = subprocess.run(
            [sys.executable, "-m", "drapto_engine.cli", *command, str(song)],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            check=False,
            timeout=120,
        )
        assert done.returncode == 1, done
        assert done.stderr.splitlines() == [
            f"drapto: {song}: is not a video: its only picture is cover art"
        ]
    assert not list(tmp_path.glob("*.mkv"))
