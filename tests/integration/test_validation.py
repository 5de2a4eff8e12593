"""The validator names each failed check, on a real AV1 file made by ffmpeg."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest

from drapto_engine.core.models import ContentLight
from drapto_engine.services.validation import Expected, ExpectedAudio, check_output


@pytest.fixture(scope="module")
def av1_file(tmp_path_factory: pytest.TempPathFactory, ffmpeg: str) -> Path:
    out = tmp_path_factory.mktemp("v") / "ok.mkv"
    subprocess.run(
        [
            ffmpeg, "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=s=320x240:r=25:d=2",
            "-f", "lavfi", "-i", "sine=f=440:d=2", "-c:v", "libsvtav1", "-preset", "12",
            "-pix_fmt", "yuv420p10le", "-c:a", "libopus", "-b:a", "64k", str(out),
        ],
        check=True,
    )  # fmt: skip
    return out


GOOD = Expected(
    width=320,
    height=240,
    frames=50,
    duration_s=2.0,
    frame_duration_s=0.04,
    audio=[ExpectedAudio(channels=1, duration_s=2.0)],
)


def test_all_checks_pass(av1_file: Path, ffmpeg: str) -> None:
    assert check_output(av1_file, GOOD, ffmpeg) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"frames": 51}, "50 video frames, source has 51"),
        ({"width": 318}, "size 320x240, expected 318x240"),
        ({"duration_s": 2.2}, "video lasts 2.000 s, source 2.200 s"),
        (
            {"audio": [ExpectedAudio(channels=2, duration_s=2.0)]},
            "audio track 0 has 1 channels, expected 2",
        ),
        ({"audio": []}, "1 audio tracks, source has 0"),
        ({"subtitles": 2}, "0 subtitle tracks, source has 2"),
        ({"chapters": 1}, "0 chapters, source has 1"),
        ({"color_transfer": "smpte2084"}, "transfer is None, source smpte2084"),
        ({"content_light": ContentLight(max_cll=1000, max_fall=400)}, "content light level None"),
        ({"dolby_vision_compat_id": 1}, "no Dolby Vision configuration record"),
    ],
)
def test_each_failed_check_is_named(
    av1_file: Path, ffmpeg: str, change: dict, message: str
) -> None:
    failures = check_output(av1_file, dataclasses.replace(GOOD, **change), ffmpeg)
    assert len(failures) == 1 and failures[0].startswith(message), failures


def test_not_av1(tmp_path: Path, ffmpeg: str) -> None:
    h264 = tmp_path / "h264.mkv"
    subprocess.run(
        [ffmpeg, "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=s=320x240:r=25:d=2",
         "-c:v", "libx264", "-preset", "ultrafast", str(h264)],
        check=True,
    )  # fmt: skip
    failures = check_output(h264, dataclasses.replace(GOOD, audio=[]), ffmpeg)
    assert failures == ["video codec is h264, not av1", "video is 8-bit, not 10-bit"]
