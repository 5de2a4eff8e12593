"""Every track keeps its dispositions (the video's too), and validation compares them.

Dispositions are read back with PyAV's stream.disposition (ffprobe's), by the test's own
code. Matroska stores default, forced, comment, hearing/visual impaired, original/dub and,
for subtitles, text descriptions: those are the flags compared.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import av
import pytest
from encode_helpers import ANIME_GROUP, Run, encode
from mediagen import run_ffmpeg

from drapto_engine.core.models import Dispositions
from drapto_engine.services.validation import Expected, ExpectedAudio, check_output

pytestmark = pytest.mark.slow

D = av.stream.Disposition
KEPT = (
    D.default | D.forced | D.comment | D.hearing_impaired | D.visual_impaired | D.original | D.dub
)


def dispositions(path: Path) -> dict[str, list[int]]:
    """Per kind, each track's Matroska-storable disposition bits, in order."""
    found: dict[str, list[int]] = {}
    with av.open(str(path)) as c:
        for s in c.streams:
            if s.type in ("video", "audio", "subtitle"):
                kept = KEPT | (D.descriptions if s.type == "subtitle" else 0)
                found.setdefault(s.type, []).append(int(s.disposition) & int(kept))
    return found


@ANIME_GROUP
def test_real_file_keeps_every_disposition(
    shared_media: Path, anime_encode: tuple[Run, Path]
) -> None:
    """issue-236: default video, default Japanese audio, default English subtitle."""
    source = shared_media / "issue-236-split-copy.mkv"
    want = dispositions(source)
    assert want == {"video": [D.default], "audio": [D.default], "subtitle": [D.default, 0, 0]}
    run, output = anime_encode  # `drapto encode` of it with the default settings
    assert run.returncode == 0, run.stderr
    assert dispositions(output) == want


def test_remuxed_dispositions_all_kept(ffmpeg: str, shared_media: Path, tmp_path: Path) -> None:
    """A forced subtitle, a non-default second audio track, flags on the video."""
    source = tmp_path / "flags.mkv"
    run_ffmpeg(
        ffmpeg,
        [
            "-i", str(shared_media / "issue-236-split-copy.mkv"),
            "-map", "0:v", "-map", "0:a", "-map", "0:a", "-map", "0:s", "-map", "0:t", "-c", "copy",
            "-disposition:v:0", "default+original",
            "-disposition:a:0", "default+original",
            "-disposition:a:1", "comment+dub+visual_impaired",
            "-disposition:s:0", "0",
            "-disposition:s:1", "forced+hearing_impaired",
            "-disposition:s:2", "default+descriptions",
            str(source),
        ],
    )  # fmt: skip
    want = dispositions(source)
    assert want == {
        "video": [D.default | D.original],
        "audio": [D.default | D.original, D.comment | D.dub | D.visual_impaired],
        "subtitle": [0, D.forced | D.hearing_impaired, D.default | D.descriptions],
    }
    output = tmp_path / "out.mkv"
    run = encode(source, output)
    assert run.returncode == 0, run.stderr
    assert dispositions(output) == want


@pytest.fixture(scope="module")
def av1_file(tmp_path_factory: pytest.TempPathFactory, ffmpeg: str) -> Path:
    """AV1 video (default), two Opus tracks (default; comment) and a forced subtitle."""
    folder = tmp_path_factory.mktemp("d")
    srt = folder / "s.srt"
    srt.write_text("1\n00:00:00,000 --> 00:00:01,000\nhello\n", encoding="utf-8")
    out = folder / "ok.mkv"
    subprocess.run(
        [
            ffmpeg, "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=s=320x240:r=25:d=2",
            "-f", "lavfi", "-i", "sine=f=440:d=2", "-i", str(srt),
            "-map", "0:v", "-map", "1:a", "-map", "1:a", "-map", "2:s",
            "-c:v", "libsvtav1", "-preset", "12", "-pix_fmt", "yuv420p10le",
            "-c:a", "libopus", "-b:a", "64k", "-c:s", "srt",
            "-disposition:v:0", "default", "-disposition:a:0", "default",
            "-disposition:a:1", "comment", "-disposition:s:0", "forced", str(out),
        ],
        check=True,
    )  # fmt: skip
    return out


EXPECTED = Expected(
    width=320,
    height=240,
    frames=50,
    duration_s=2.0,
    frame_duration_s=0.04,
    audio=[ExpectedAudio(channels=1, duration_s=2.0)] * 2,
    subtitles=1,
    dispositions={
        "video": (Dispositions(default=True),),
        "audio": (Dispositions(default=True), Dispositions(comment=True)),
        "subtitle": (Dispositions(forced=True),),
    },
)


def test_validation_accepts_the_same_dispositions(av1_file: Path, ffmpeg: str) -> None:
    assert check_output(av1_file, EXPECTED, ffmpeg) == []


def test_validation_names_each_lost_disposition(
    av1_file: Path, ffmpeg: str, tmp_path: Path
) -> None:
    changed = tmp_path / "changed.mkv"
    run_ffmpeg(
        ffmpeg,
        [
            "-i", str(av1_file), "-map", "0", "-c", "copy",
            "-disposition:v:0", "0", "-disposition:a:1", "default", "-disposition:s:0", "0",
            str(changed),
        ],
    )  # fmt: skip
    assert check_output(changed, EXPECTED, ffmpeg) == [
        "video track 0 dispositions none, source default",
        "audio track 1 dispositions default, source comment",
        "subtitle track 0 dispositions none, source forced",
    ]
