"""analyze_video on real ffmpeg output: dynamic range, Dolby Vision, crop, resolution class.

Synthetic files use a keyframe every 5 frames (`gop=5`): crop detection decodes the frame
at the keyframe before each sample time, so a one-GOP file would only ever show frame 0.
"""

from __future__ import annotations

from pathlib import Path

import av
import pytest
from mediagen import Cut, MakeMedia, remux

from drapto_engine.core.errors import MediaError
from drapto_engine.core.models import (
    Crop,
    DolbyVisionInfo,
    DynamicRange,
    ResolutionClass,
)
from drapto_engine.services.detection import analyze_video
from drapto_engine.services.detection.crop import HDR_BLACK, SDR_BLACK, _luma, bars_of, detect_crop

PQ = {"primaries": "bt2020", "trc": "smpte2084", "colorspace": "bt2020nc"}
HLG = {"primaries": "bt2020", "trc": "arib-std-b67", "colorspace": "bt2020nc"}
X265_10BIT = {"codec": "libx265", "pix_fmt": "yuv420p10le"}

# --- dynamic range ------------------------------------------------------------------------


async def test_sdr(make_media: MakeMedia, ffmpeg: str) -> None:
    analysis = await analyze_video(make_media("sdr.mkv", duration=0.4), ffmpeg)
    assert analysis.dynamic_range is DynamicRange.SDR
    assert analysis.dolby_vision is None


async def test_10bit_untagged_is_sdr(make_media: MakeMedia, ffmpeg: str) -> None:
    analysis = await analyze_video(make_media("10.mkv", duration=0.4, **X265_10BIT), ffmpeg)
    assert analysis.dynamic_range is DynamicRange.SDR


async def test_hdr10_pq(make_media: MakeMedia, ffmpeg: str) -> None:
    path = make_media("pq.mkv", duration=0.4, **X265_10BIT, **PQ)
    analysis = await analyze_video(path, ffmpeg)
    assert analysis.dynamic_range is DynamicRange.HDR10
    assert analysis.dolby_vision is None


async def test_hlg(make_media: MakeMedia, ffmpeg: str) -> None:
    path = make_media("hlg.mkv", duration=0.4, **X265_10BIT, **HLG)
    analysis = await analyze_video(path, ffmpeg)
    assert analysis.dynamic_range is DynamicRange.HLG
    assert analysis.dolby_vision is None


async def test_dolby_vision_real_file(shared_media: Path, ffmpeg: str) -> None:
    analysis = await analyze_video(shared_media / "dv-p81-regular.mkv", ffmpeg)
    assert analysis.dynamic_range is DynamicRange.DOLBY_VISION
    assert analysis.dolby_vision == DolbyVisionInfo(
        profile=8, level=1, rpu=True, el=False, bl=True, bl_compat_id=1
    )
    assert analysis.crop is None
    assert (analysis.resolution_class, analysis.default_crf) == (ResolutionClass.SD, 24)


async def test_dolby_vision_from_the_rpu_alone(
    shared_media: Path, ffmpeg: str, tmp_path: Path
) -> None:
    """ffmpeg's mp4 muxer drops the DOVI configuration record on a plain stream copy; the
    RPU on each frame remains, and a PQ base layer with an RPU is profile 8.1."""
    copy = remux(ffmpeg, shared_media / "dv-p81-regular.mkv", tmp_path / "dv.mp4")
    analysis = await analyze_video(copy, ffmpeg)
    assert analysis.media.dolby_vision is None
    assert analysis.dynamic_range is DynamicRange.DOLBY_VISION
    assert analysis.dolby_vision == DolbyVisionInfo(profile=8, bl_compat_id=1)
    assert analysis.media.video.frame_count == 259


# --- crop ---------------------------------------------------------------------------------


async def _crop(path: Path, ffmpeg: str) -> Crop | None:
    return (await analyze_video(path, ffmpeg)).crop


@pytest.mark.parametrize("source", ["testsrc2", "smptebars", "mandelbrot"])
async def test_sources_have_no_dark_edges(make_media: MakeMedia, ffmpeg: str, source: str) -> None:
    """The content the crop tests pad: full frame, it must give no crop at either threshold."""
    sdr = make_media(f"{source}.mkv", source=source, gop=5)
    assert await _crop(sdr, ffmpeg) is None
    pq = make_media(f"{source}-pq.mkv", source=source, gop=5, duration=1.0, **X265_10BIT, **PQ)
    assert await _crop(pq, ffmpeg) is None


@pytest.mark.parametrize(
    ("pad", "expected"),
    [
        ((320, 160, 0, 40), Crop(width=320, height=160, x=0, y=40)),  # letterbox
        ((240, 240, 40, 0), Crop(width=240, height=240, x=40, y=0)),  # pillarbox
        ((240, 160, 40, 40), Crop(width=240, height=160, x=40, y=40)),  # both
        ((320, 180, 0, 20), Crop(width=320, height=180, x=0, y=20)),  # top 20, bottom 40
        # Under 1 % of the height (2.4 rows) or width (3.2 columns): not worth a crop.
        ((320, 238, 0, 1), None),
        ((318, 240, 1, 0), None),
        # Odd bars round down to even, so the crop keeps every row of picture.
        ((320, 171, 0, 37), Crop(width=320, height=172, x=0, y=36)),
        ((320, 171, 0, 38), Crop(width=320, height=172, x=0, y=38)),
        ((241, 240, 37, 0), Crop(width=242, height=240, x=36, y=0)),
        ((241, 171, 39, 35), Crop(width=242, height=172, x=38, y=34)),
    ],
)
async def test_crop(
    make_media: MakeMedia, ffmpeg: str, pad: tuple[int, int, int, int], expected: Crop | None
) -> None:
    crop = await _crop(make_media("bars.mkv", pad=pad, gop=5), ffmpeg)
    assert crop == expected
    if crop is not None:
        cw, ch, x, y = pad
        assert crop.x <= x and crop.y <= y
        assert crop.x + crop.width >= x + cw and crop.y + crop.height >= y + ch
        assert crop.width % 2 == crop.height % 2 == crop.x % 2 == crop.y % 2 == 0


async def test_mixed_aspect_ratio_is_not_cropped(make_media: MakeMedia, ffmpeg: str) -> None:
    letterboxed = Cut(1.0, "testsrc2", "scale=320:160,pad=320:240:0:40")
    first_half = make_media("first.mkv", cuts=[letterboxed], gop=5)
    assert await _crop(first_half, ffmpeg) == Crop(width=320, height=160, x=0, y=40)
    mixed = make_media("mixed.mkv", cuts=[letterboxed, Cut(1.0, "smptebars")], gop=5)
    assert await _crop(mixed, ffmpeg) is None


async def test_dark_scene_does_not_over_crop(make_media: MakeMedia, ffmpeg: str) -> None:
    small_light = Cut(1.0, "color", "drawbox=x=140:y=100:w=40:h=40:color=white:t=fill")
    path = make_media(
        "dark.mkv",
        pad=(320, 160, 0, 40),
        cuts=[Cut(1.0), small_light, Cut(0.6, "color")],  # bright, dark but for a box, black
        gop=5,
    )
    # A frame of the dark scene on its own asks for far more than the letterbox.
    with av.open(str(path)) as container:
        frame = next(f for f in container.decode(video=0) if f.time is not None and f.time >= 1.5)
        alone = bars_of(_luma(frame), SDR_BLACK)
    assert alone is not None and alone.top > 100 and alone.left > 100
    assert await _crop(path, ffmpeg) == Crop(width=320, height=160, x=0, y=40)


async def test_all_black_video_is_not_cropped(make_media: MakeMedia, ffmpeg: str) -> None:
    assert await _crop(make_media("black.mkv", source="color", duration=1.0, gop=5), ffmpeg) is None


async def test_hdr_threshold_crops_raised_black_bars(make_media: MakeMedia, ffmpeg: str) -> None:
    """Bars at luma code 100 of 1023 (0.098): above SDR black (24/255 = 0.094), below the
    HDR threshold (128/1023 = 0.125). Only the PQ-tagged copy is cropped."""
    assert SDR_BLACK < 100 / 1023 < HDR_BLACK
    picture = {"pad": (320, 160, 0, 40), "bar_luma": 100, "duration": 1.0, "gop": 5}
    pq = make_media("pq-bars.mkv", **picture, **X265_10BIT, **PQ)
    sdr = make_media("sdr-bars.mkv", **picture, **X265_10BIT)
    pq_analysis = await analyze_video(pq, ffmpeg)
    sdr_analysis = await analyze_video(sdr, ffmpeg)
    assert pq_analysis.dynamic_range is DynamicRange.HDR10
    assert pq_analysis.crop == Crop(width=320, height=160, x=0, y=40)
    assert sdr_analysis.dynamic_range is DynamicRange.SDR
    assert sdr_analysis.crop is None


async def test_crop_detection_can_be_turned_off(make_media: MakeMedia, ffmpeg: str) -> None:
    path = make_media("off.mkv", pad=(320, 160, 0, 40), gop=5, duration=0.4)
    analysis = await analyze_video(path, ffmpeg, crop_detection=False)
    assert analysis.crop is None
    assert (analysis.media.video.width, analysis.media.video.height) == (320, 240)
    cropped = await analyze_video(path, ffmpeg)
    assert cropped.crop == Crop(width=320, height=160, x=0, y=40)


async def test_real_1080p_counter_is_not_cropped(shared_media: Path, ffmpeg: str) -> None:
    analysis = await analyze_video(shared_media / "counter.mp4", ffmpeg)
    assert analysis.crop is None
    assert (analysis.resolution_class, analysis.default_crf) == (ResolutionClass.HD, 26)


# --- resolution class ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "cls", "crf"),
    [
        ((720, 480), ResolutionClass.SD, 24),
        ((1280, 720), ResolutionClass.SD, 24),
        ((1920, 1080), ResolutionClass.HD, 26),
        ((3840, 2160), ResolutionClass.UHD, 26),
    ],
)
async def test_resolution_class_and_default_crf(
    make_media: MakeMedia, ffmpeg: str, size: tuple[int, int], cls: ResolutionClass, crf: int
) -> None:
    path = make_media("one-frame.mkv", size=size, rate="1", duration=1.0)
    analysis = await analyze_video(path, ffmpeg, crop_detection=False)
    assert (analysis.media.video.width, analysis.media.video.height) == size
    assert analysis.media.video.frame_count == 1
    assert (analysis.resolution_class, analysis.default_crf) == (cls, crf)


def test_crop_detection_on_a_file_it_cannot_read_is_one_error_naming_it(tmp_path: Path) -> None:
    """A file PyAV cannot open or decode is a MediaError naming the file (one line), not
    PyAV's own exception."""
    junk = tmp_path / "junk.mkv"
    junk.write_bytes(b"not a video at all " * 64)
    with pytest.raises(MediaError) as caught:
        detect_crop(junk, DynamicRange.SDR, 10.0)
    assert caught.value.path == junk
    assert caught.value.problem.startswith("crop detection failed: ")
    assert "\n" not in str(caught.value) and "Traceback" not in str(caught.value)
