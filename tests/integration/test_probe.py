"""probe() on real media (facts from shared/media/README.md) and on synthetic files whose
every property was chosen when they were made."""

from __future__ import annotations

import re
import subprocess
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import pytest
from mediagen import (
    Audio,
    ChapterMark,
    Cut,
    MakeMedia,
    Subtitle,
    cut_frames,
    frame_total,
    make_audio_only,
    make_video,
    remux,
)

from drapto_engine.core.errors import MediaError
from drapto_engine.core.models import (
    ContentLight,
    Dispositions,
    DolbyVisionInfo,
    MasteringDisplay,
    Rational,
)
from drapto_engine.infrastructure.probe import probe

MASTER_DISPLAY = "G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,1)"


# --- real media -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "codec", "size", "rate", "frames", "duration"),
    [
        ("testvideo.mp4", "h264", (1280, 720), Fraction(30000, 1001), 720, 24.023333),
        ("fades.mp4", "mpeg4", (480, 320), Fraction(25), 250, 10.0),
        ("counter.mp4", "h264", (1920, 1080), Fraction(10), 30, 3.0),
        ("issue-236-split-copy.mkv", "h264", (1920, 1080), Fraction(24000, 1001), 48, 2.017),
        ("dv-p81-regular.mkv", "hevc", (256, 144), Fraction(24000, 1001), 259, 10.803),
    ],
)
def test_real_media_video_facts(
    shared_media: Path,
    ffmpeg: str,
    name: str,
    codec: str,
    size: tuple[int, int],
    rate: Fraction,
    frames: int,
    duration: float,
) -> None:
    info = probe(shared_media / name, ffmpeg)
    v = info.video
    assert v.codec == codec
    assert (v.width, v.height) == size
    assert v.frame_rate.as_fraction() == rate
    assert v.frame_count == frames
    assert v.variable_frame_rate is False
    assert v.rotation == 0
    assert v.sar == Rational(num=1, den=1)
    assert info.duration_s == pytest.approx(duration, abs=1e-6)
    assert info.start_time_s == 0.0


def test_real_mp4s_have_no_other_streams(shared_media: Path) -> None:
    for name in ("testvideo.mp4", "fades.mp4", "counter.mp4"):
        info = probe(shared_media / name)
        assert (info.audio, info.subtitles, info.attachments, info.chapters) == ((), (), (), ())
        assert info.video.pix_fmt == "yuv420p"
        assert info.video.bit_depth == 8
        assert info.dolby_vision is None


def test_dolby_vision_profile_8_1(shared_media: Path, ffmpeg: str) -> None:
    info = probe(shared_media / "dv-p81-regular.mkv", ffmpeg)
    assert info.dolby_vision == DolbyVisionInfo(
        profile=8, level=1, rpu=True, el=False, bl=True, bl_compat_id=1
    )
    v = info.video
    assert (v.pix_fmt, v.bit_depth) == ("yuv420p10le", 10)
    assert (v.color_primaries, v.color_transfer, v.color_matrix, v.color_range) == (
        "bt2020",
        "smpte2084",
        "bt2020nc",
        "tv",
    )


def test_dolby_vision_record_needs_the_ffmpeg_dump(shared_media: Path) -> None:
    # The configuration record is stream side data only ffmpeg's input dump shows.
    assert probe(shared_media / "dv-p81-regular.mkv").dolby_vision is None


def test_anime_clip_audio_subtitles_attachments(shared_media: Path) -> None:
    info = probe(shared_media / "issue-236-split-copy.mkv")
    assert info.container == "matroska,webm"
    assert info.video.frame_count == 48  # counted (its NUMBER_OF_FRAMES-eng tag agrees)
    [audio] = info.audio
    assert (audio.index, audio.codec, audio.channels, audio.layout) == (1, "aac", 2, "stereo")
    assert (audio.language, audio.sample_rate) == ("jpn", 48000)
    assert audio.start_time_s == pytest.approx(0.012, abs=1e-9)
    assert audio.dispositions.default is True

    subs = [(s.index, s.codec, s.language, s.title, s.dispositions.default) for s in info.subtitles]
    assert subs == [
        (2, "ass", "eng", "English", True),
        (3, "ass", "por", "Portuguese(Brazil)", False),
        (4, "ass", "spa", "Spanish(Latin_America)", False),
    ]
    assert len(info.attachments) == 6
    assert [(a.index, a.filename) for a in info.attachments] == [
        (5, "OpenSans-ExtraBold.ttf"),
        (6, "OpenSans-Italic.ttf"),
        (7, "OpenSans-Light.ttf"),
        (8, "OpenSans-Regular.ttf"),
        (9, "OpenSans-Semibold.ttf"),
        (10, "MIAMA.OTF"),
    ]
    assert {a.mimetype for a in info.attachments} == {"application/x-truetype-font"}


# --- synthetic: video format and colour ----------------------------------------------------


@pytest.mark.parametrize(
    ("codec", "pix_fmt", "bits"),
    [
        ("libx264", "yuv420p", 8),
        ("libx265", "yuv420p10le", 10),
        ("libx264", "yuv444p", 8),
    ],
)
def test_pixel_format_and_bit_depth(
    make_media: MakeMedia, codec: str, pix_fmt: str, bits: int
) -> None:
    info = probe(make_media("v.mkv", codec=codec, pix_fmt=pix_fmt, duration=1.0))
    assert (info.video.pix_fmt, info.video.bit_depth) == (pix_fmt, bits)
    assert info.video.codec == {"libx264": "h264", "libx265": "hevc"}[codec]
    assert info.video.frame_count == 25


def test_av1_is_named_by_codec_not_by_decoder(make_media: MakeMedia) -> None:
    # PyAV's codec_context.name is the decoder (libdav1d); the codec is av1.
    info = probe(make_media("av1.mkv", codec="libsvtav1", size=(160, 128), duration=0.4))
    assert info.video.codec == "av1"
    assert info.video.frame_count == 10


@pytest.mark.parametrize(
    ("primaries", "trc", "space"),
    [
        ("bt2020", "smpte2084", "bt2020nc"),  # PQ
        ("bt2020", "arib-std-b67", "bt2020nc"),  # HLG
        ("bt709", "bt709", "bt709"),  # SDR
    ],
)
def test_colour_tags(make_media: MakeMedia, primaries: str, trc: str, space: str) -> None:
    path = make_media(
        "c.mkv",
        codec="libx265",
        pix_fmt="yuv420p10le",
        primaries=primaries,
        trc=trc,
        colorspace=space,
        color_range="tv",
        duration=0.4,
    )
    v = probe(path).video
    assert (v.color_primaries, v.color_transfer, v.color_matrix, v.color_range) == (
        primaries,
        trc,
        space,
        "tv",
    )
    assert v.mastering_display is None
    assert v.content_light is None


def test_untagged_video_has_no_colour_tags(make_media: MakeMedia) -> None:
    v = probe(make_media("u.mkv", codec="libx265", pix_fmt="yuv420p10le", duration=0.4)).video
    assert (v.color_primaries, v.color_transfer) == (None, None)


def test_hdr10_mastering_display_and_content_light(make_media: MakeMedia) -> None:
    path = make_media(
        "hdr10.mkv",
        codec="libx265",
        pix_fmt="yuv420p10le",
        primaries="bt2020",
        trc="smpte2084",
        colorspace="bt2020nc",
        master_display=MASTER_DISPLAY,
        max_cll="1000,400",
        duration=0.4,
    )
    v = probe(path).video
    # x265 writes chromaticities in units of 0.00002 and luminance in units of 0.0001 nits.
    assert v.mastering_display == MasteringDisplay(
        red=(0.68, 0.32),
        green=(0.265, 0.69),
        blue=(0.15, 0.06),
        white_point=(0.3127, 0.329),
        min_luminance=0.0001,
        max_luminance=1000.0,
    )
    assert v.content_light == ContentLight(max_cll=1000, max_fall=400)


# --- synthetic: geometry and timing -------------------------------------------------------


def _dump_rotation(ffmpeg: str, path: Path) -> int:
    dump = subprocess.run(
        [ffmpeg, "-hide_banner", "-nostdin", "-i", str(path)],
        capture_output=True,
        text=True,
        check=False,
    ).stderr
    match = re.search(r"rotation of (-?[\d.]+) degrees", dump)
    assert match, dump
    return round(float(match[1]))


@pytest.mark.parametrize(("requested", "reported"), [(90, 90), (270, -90), (180, -180)])
def test_rotation(
    ffmpeg: str, make_media: MakeMedia, tmp_path: Path, requested: int, reported: int
) -> None:
    """-display_rotation is counterclockwise degrees; ffmpeg reads the display matrix back
    with av_display_rotation_get, which folds angles into [-180, 180): 270 comes back as
    -90 and 180 as -180. probe reports the same number ffmpeg's own input dump prints."""
    src = make_media("flat.mkv", duration=0.4)
    rotated = remux(
        ffmpeg, src, tmp_path / "rot.mp4", input_args=["-display_rotation", str(requested)]
    )
    v = probe(rotated).video
    assert v.rotation == reported
    assert v.rotation == _dump_rotation(ffmpeg, rotated)
    assert (v.width, v.height) == (320, 240)  # stored size; rotation is applied on display


def test_unrotated_video_reports_zero(make_media: MakeMedia) -> None:
    assert probe(make_media("flat.mp4", duration=0.4)).video.rotation == 0


def test_sample_aspect_ratio(make_media: MakeMedia) -> None:
    v = probe(make_media("anamorphic.mkv", duration=0.4, filters="setsar=4/3")).video
    assert str(v.sar) == "4/3"
    assert v.dar == Rational(num=16, den=9)  # 320x240 pixels shown 4/3 wider


@pytest.mark.parametrize(
    ("name", "extra"),
    [
        ("offset.ts", ["-muxdelay", "0", "-muxpreload", "0"]),
        ("offset.mp4", []),
        # Matroska states its duration from timestamp zero (ffmpeg prints "Duration:
        # 00:00:02.50, start: 1.500000"); probe gives the programme's length everywhere.
        ("offset.mkv", []),
    ],
)
def test_start_time_not_zero(make_media: MakeMedia, name: str, extra: list[str]) -> None:
    path = make_media(name, duration=1.0, output_args=["-output_ts_offset", "1.5", *extra])
    info = probe(path)
    assert info.start_time_s == pytest.approx(1.5, abs=1e-6)
    assert info.duration_s == pytest.approx(1.0, abs=1e-3)
    assert info.video.frame_count == 25  # and not mistaken for a truncated file


def test_truncated_mkv_with_start_offset_is_refused(ffmpeg: str, tmp_path: Path) -> None:
    whole = make_video(
        ffmpeg, tmp_path / "whole.mkv", duration=3.0, output_args=["-output_ts_offset", "1.5"]
    )
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 4 // 10])
    with pytest.raises(MediaError, match=r"is truncated: its video stops at .* of 3\.00 s"):
        probe(cut)


# Frames 0-24 last two ticks of 1/25 s, frames 25-49 one tick: 12.5 fps then 25 fps.
VFR_PTS = r"setpts='if(lt(N\,25)\,N*2\,25+N)/25/TB'"


@pytest.mark.parametrize("name", ["vfr.mkv", "vfr.mp4"])
def test_variable_frame_rate(make_media: MakeMedia, name: str) -> None:
    path = make_media(name, filters=VFR_PTS, output_args=["-fps_mode", "passthrough"])
    info = probe(path)
    assert info.video.variable_frame_rate is True
    assert info.video.frame_count == 50
    assert info.duration_s == pytest.approx(3.0, abs=0.05)


def test_variable_frame_rate_from_select(make_media: MakeMedia) -> None:
    # Every frame of the first ten, then one in three: gaps of 40 ms and of 120 ms.
    path = make_media(
        "sel.mkv",
        filters=r"select='lt(n\,10)+not(mod(n\,3))'",
        output_args=["-fps_mode", "vfr"],
    )
    info = probe(path)
    assert info.video.variable_frame_rate is True
    assert info.video.frame_count == 10 + len([n for n in range(10, 50) if n % 3 == 0])


def test_variable_frame_rate_with_a_frame_count_tag(make_media: MakeMedia) -> None:
    path = make_media(
        "vfr-tagged.mkv",
        filters=VFR_PTS,
        output_args=["-fps_mode", "passthrough", "-metadata:s:v", "NUMBER_OF_FRAMES=50"],
    )
    info = probe(path)
    assert info.video.variable_frame_rate is True
    assert info.video.frame_count == 50


@pytest.mark.parametrize("tag", ["NUMBER_OF_FRAMES", "NUMBER_OF_FRAMES-eng"])
def test_a_stale_frame_count_tag_is_not_believed(make_media: MakeMedia, tag: str) -> None:
    """A remux that cut or joined a film may keep mkvmerge's statistics tag: the frames
    are counted from the stream, not read from the tag."""
    path = make_media("stale.mkv", duration=31.08, output_args=["-metadata:s:v", f"{tag}=259"])
    with av.open(str(path)) as container:
        assert container.streams.video[0].metadata[tag] == "259"
    assert probe(path).video.frame_count == 777


@pytest.mark.parametrize(
    ("name", "rate"), [("cfr.mkv", "25"), ("cfr.mp4", "24000/1001"), ("cfr30.mkv", "30000/1001")]
)
def test_constant_frame_rate(make_media: MakeMedia, name: str, rate: str) -> None:
    # Matroska rounds timestamps to milliseconds: 41/42 ms steps are still CFR.
    info = probe(make_media(name, rate=rate, duration=2.0))
    assert info.video.variable_frame_rate is False
    assert info.video.frame_rate.as_fraction() == Fraction(rate)
    assert info.video.frame_count == frame_total(2.0, rate)


def test_frame_count_of_joined_cuts(make_media: MakeMedia) -> None:
    cuts = [Cut(0.4), Cut(0.8, "smptebars"), Cut(1.2, "mandelbrot")]
    assert probe(make_media("cuts.mp4", cuts=cuts)).video.frame_count == 10 + 20 + 30
    assert cut_frames(cuts) == [10, 30]


def test_synthetic_media_is_byte_identical(ffmpeg: str, tmp_path: Path) -> None:
    """Tests may rely on mediagen: the same arguments must give the same file."""
    options: dict[str, Any] = {
        "cuts": [0.4, 0.4],
        "audio": [Audio("5.1", "eng")],
        "subtitles": [Subtitle(language="eng")],
        "chapters": [ChapterMark(0.0, 0.8, "All")],
    }
    first = make_video(ffmpeg, tmp_path / "a" / "same.mkv", **options)
    second = make_video(ffmpeg, tmp_path / "b" / "same.mkv", **options)
    assert first.read_bytes() == second.read_bytes()


# --- synthetic: audio, subtitles, chapters --------------------------------------------


def test_audio_layouts_languages_titles_dispositions(make_media: MakeMedia) -> None:
    path = make_media(
        "audio.mkv",
        duration=1.0,
        audio=[
            Audio("mono", "eng", "Mono", "default"),
            Audio("stereo", "fre", "Stéréo", "0"),
            Audio("5.1", "ger", "Surround 5.1", "forced"),
            Audio("7.1", "jpn", "Commentary", "comment"),
        ],
    )
    got = [
        (a.index, a.codec, a.channels, a.layout, a.language, a.title, a.sample_rate)
        for a in probe(path).audio
    ]
    assert got == [
        (1, "aac", 1, "mono", "eng", "Mono", 48000),
        (2, "aac", 2, "stereo", "fre", "Stéréo", 48000),
        (3, "aac", 6, "5.1", "ger", "Surround 5.1", 48000),
        (4, "aac", 8, "7.1", "jpn", "Commentary", 48000),
    ]
    assert [a.dispositions for a in probe(path).audio] == [
        Dispositions(default=True),
        Dispositions(),
        Dispositions(forced=True),
        Dispositions(comment=True),
    ]


def test_subtitles(make_media: MakeMedia) -> None:
    path = make_media(
        "subs.mkv",
        duration=1.0,
        subtitles=[
            Subtitle(language="eng", title="English", disposition="default"),
            Subtitle(language="spa", title="Forced", disposition="forced"),
        ],
    )
    subs = probe(path).subtitles
    assert [(s.index, s.codec, s.language, s.title) for s in subs] == [
        (1, "subrip", "eng", "English"),
        (2, "subrip", "spa", "Forced"),
    ]
    assert [s.dispositions for s in subs] == [Dispositions(default=True), Dispositions(forced=True)]


def test_chapters(make_media: MakeMedia) -> None:
    marks = [ChapterMark(0.0, 0.5, "Intro"), ChapterMark(0.5, 1.25, "Middle")]
    marks.append(ChapterMark(1.25, 2.0, "End"))
    chapters = probe(make_media("chapters.mkv", duration=2.0, chapters=marks)).chapters
    assert [(c.start_s, c.end_s, c.title) for c in chapters] == [
        (0.0, 0.5, "Intro"),
        (0.5, 1.25, "Middle"),
        (1.25, 2.0, "End"),
    ]


def test_no_chapters(make_media: MakeMedia) -> None:
    assert probe(make_media("plain.mkv", duration=0.4)).chapters == ()


# --- bad input ----------------------------------------------------------------------------


def test_audio_only_file_is_refused(ffmpeg: str, tmp_path: Path) -> None:
    path = make_audio_only(ffmpeg, tmp_path / "music.mka")
    with pytest.raises(MediaError, match="has no video stream") as caught:
        probe(path)
    assert caught.value.path == path


def test_truncated_mkv_is_refused(ffmpeg: str, tmp_path: Path) -> None:
    whole = make_video(ffmpeg, tmp_path / "whole.mkv", duration=3.0)
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 4 // 10])
    with pytest.raises(MediaError, match=r"is truncated: its video stops at .* of 3\.00 s"):
        probe(cut)
