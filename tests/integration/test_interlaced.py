"""Interlaced sources end progressive: detected from the stream's field order checked
with idet (the flag may lie either way), deinterlaced with bwdif, one frame per frame.

The interlaced sources are real footage woven: testvideo.mp4's 29.97 frames a second
scaled to a DVD's 720x480 and interleaved two by two (`tinterlace=interleave_top`), so
each frame's top field shows frame 2k and its bottom field frame 2k+1, as a camera's
fields show two moments."""

from __future__ import annotations

import asyncio
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from encode_helpers import encode
from mediagen import run_ffmpeg

from drapto_engine.services.detection import analyze_video

pytestmark = pytest.mark.slow

DVD = "scale=720:480"
WOVEN = f"{DVD},tinterlace=mode=interleave_top"
FRAMES = 360  # testvideo's 720 frames woven two by two
MPEG2_INTERLACED = ["-c:v", "mpeg2video", "-flags:v", "+ilme+ildct+bitexact", "-b:v", "8M"]


def make(ffmpeg: str, source: Path, out: Path, filters: str, *args: str) -> Path:
    run_ffmpeg(ffmpeg, ["-i", str(source), "-vf", filters, *args, "-fflags", "+bitexact",
                        str(out)])  # fmt: skip
    return out


def luma(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [f.to_ndarray(format="gray").astype(np.float32) for f in container.decode(stream)]


def bottom_field_psnr(reference: list[np.ndarray], video: list[np.ndarray]) -> np.ndarray:
    """Per frame, the PSNR of the odd lines against the one-moment reference: a combed
    frame's odd lines show the next moment, a deinterlaced frame's are rebuilt from the
    top field's moment."""
    assert len(reference) == len(video)
    errors = [
        float(((a[1::2] - b[1::2]) ** 2).mean()) for a, b in zip(reference, video, strict=True)
    ]
    return np.array([10 * np.log10(255**2 / max(e, 1e-6)) for e in errors])


def test_a_dvd_rip_is_deinterlaced_keeping_every_frame_its_aspect_and_audio(
    ffmpeg: str, shared_media: Path, tmp_path: Path
) -> None:
    """MPEG-2 coded interlaced, top field first, 16:9 anamorphic (SAR 32:27), in MPEG-PS
    with AC-3: the output is progressive, every frame once, 16:9 on screen, audio kept,
    and each frame shows one moment."""
    footage = shared_media / "testvideo.mp4"
    source = tmp_path / "film.mpg"
    run_ffmpeg(ffmpeg, [
        "-i", str(footage), "-f", "lavfi", "-i", "sine=f=440:d=24:sample_rate=48000",
        "-vf", f"{WOVEN},setfield=tff", *MPEG2_INTERLACED, "-aspect", "16:9",
        "-c:a", "ac3", "-ac", "2", "-fflags", "+bitexact", "-f", "dvd", str(source),
    ])  # fmt: skip
    output = tmp_path / "film.mkv"
    run = encode(source, output)
    assert run.returncode == 0, run.stderr
    # MPEG-PS seeks inexactly: every segment must still start on its own first frame
    assert len(run.of("segment_done")) == 3 and not run.of("segment_failed"), run.events
    [analysis] = run.of("analysis")
    assert analysis["deinterlace"].startswith("deinterlaced with bwdif, top field first")
    with av.open(str(output)) as container:
        video = container.streams.video[0]
        assert video.codec_context.field_order == 1  # AV_FIELD_PROGRESSIVE
        # what a player shows: the container's sample aspect ratio (AV1 codes none)
        assert Fraction(video.width * video.sample_aspect_ratio, video.height) == Fraction(16, 9)
        assert [a.codec_context.name for a in container.streams.audio] == ["opus"]
    reference = luma(make(ffmpeg, footage, tmp_path / "moments.mkv",
                          f"{DVD},select=not(mod(n\\,2))", "-fps_mode", "passthrough",
                          "-c:v", "libx264", "-qp", "0", "-preset", "ultrafast"))  # fmt: skip
    ours, combed = luma(output), luma(source)
    assert len(ours) == FRAMES
    ours_psnr = bottom_field_psnr(reference, ours)
    combed_psnr = bottom_field_psnr(reference, combed)
    # the combed source's worst frames are its moving ones; ours lose only the coding
    assert np.percentile(ours_psnr, 1) > np.percentile(combed_psnr, 1) + 2.0, (
        np.percentile(ours_psnr, [1, 5, 50]),
        np.percentile(combed_psnr, [1, 5, 50]),
    )


def test_an_unflagged_interlaced_stream_is_checked_and_deinterlaced(
    ffmpeg: str, shared_media: Path, tmp_path: Path
) -> None:
    """An old AVI (MPEG-4 part 2) says nothing of its fields: idet decides."""
    source = make(ffmpeg, shared_media / "testvideo.mp4", tmp_path / "camcorder.avi",
                  WOVEN, "-c:v", "mpeg4", "-q:v", "3")  # fmt: skip
    analysis = asyncio.run(analyze_video(source, ffmpeg))
    assert analysis.media.video.field_order is None
    assert analysis.interlace is not None and analysis.interlace.deinterlace, analysis.interlace


def test_a_stream_flagged_progressive_is_believed(ffmpeg: str, tmp_path: Path) -> None:
    """idet takes testsrc2's progressive pictures for interlaced ones (see
    services/detection/interlace.py): a progressive flag is not second-guessed."""
    source = tmp_path / "pattern.mkv"
    graph = "testsrc2=s=320x240:r=25:d=10"
    run_ffmpeg(ffmpeg, ["-f", "lavfi", "-i", graph, "-c:v", "libx264", "-preset", "ultrafast",
                        str(source)])  # fmt: skip
    analysis = asyncio.run(analyze_video(source, ffmpeg))
    assert analysis.media.video.field_order == "progressive"
    assert analysis.interlace is None


def test_progressive_frames_flagged_interlaced_are_left_alone(
    ffmpeg: str, shared_media: Path, tmp_path: Path
) -> None:
    """A film on DVD is often coded interlaced with progressive pictures: bwdif would only
    soften it."""
    source = make(ffmpeg, shared_media / "testvideo.mp4", tmp_path / "film.mpg",
                  f"{DVD},setfield=tff", *MPEG2_INTERLACED, "-f", "dvd")  # fmt: skip
    analysis = asyncio.run(analyze_video(source, ffmpeg))
    assert analysis.media.video.field_order in ("tt", "tb")
    assert analysis.interlace is not None
    assert not analysis.interlace.deinterlace, analysis.interlace
    assert analysis.interlace.describe().startswith("progressive (flagged top field first")


def test_telecined_film_is_deinterlaced(ffmpeg: str, shared_media: Path, tmp_path: Path) -> None:
    """3:2 pulldown combs two frames in five: drapto deinterlaces them (every frame kept,
    frame times unchanged) rather than removing the pulldown (see docs/kinds-of-file.md)."""
    source = make(ffmpeg, shared_media / "testvideo.mp4", tmp_path / "telecined.mpg",
                  f"{DVD},telecine,setfield=tff", *MPEG2_INTERLACED, "-f", "dvd")  # fmt: skip
    analysis = asyncio.run(analyze_video(source, ffmpeg))
    assert analysis.interlace is not None and analysis.interlace.deinterlace, analysis.interlace
