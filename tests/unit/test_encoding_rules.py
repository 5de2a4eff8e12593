"""Pure rules of the encode path: audio, Dolby Vision policy, flags, progress, mux, OBUs."""

from __future__ import annotations

from pathlib import Path

import pytest

from drapto_engine.core.errors import DraptoError
from drapto_engine.core.flags import FlagState, apply_flags, parse_override
from drapto_engine.core.models import AudioStream, DolbyVisionInfo, EncodeSettings
from drapto_engine.infrastructure.ffmpeg.progress import ProgressParser
from drapto_engine.infrastructure.hdr_probe import av1_packet_has_rpu as has_dolby_rpu
from drapto_engine.services.encoding.audio import bitrate_kbps, output_channels, target_layout
from drapto_engine.services.encoding.dolby_vision import decide
from drapto_engine.services.encoding.mux import concat_list


def audio(channels: int, layout: str | None) -> AudioStream:
    return AudioStream(index=1, codec="aac", channels=channels, layout=layout, sample_rate=48000)


@pytest.mark.parametrize(
    ("channels", "kbps"),
    [(1, 64), (2, 128), (6, 256), (8, 384), (3, 144), (4, 192), (5, 240), (7, 336)],
)
def test_opus_bitrates(channels: int, kbps: int) -> None:
    assert bitrate_kbps(channels) == kbps


def test_layouts_libopus_refuses_are_remapped() -> None:
    assert target_layout(audio(2, "stereo")) is None
    assert target_layout(audio(6, "5.1")) is None
    assert target_layout(audio(6, "5.1(side)")) == "5.1"
    assert target_layout(audio(3, "2.1")) == "3.0"
    assert target_layout(audio(6, None)) == "5.1"
    assert target_layout(audio(10, "5.1.4")) == "7.1" and output_channels(audio(10, "5.1.4")) == 8


def test_dolby_vision_profiles() -> None:
    path = Path("film.mkv")
    assert decide(DolbyVisionInfo(profile=8, bl_compat_id=1), path, False).keep
    with pytest.raises(DraptoError, match="profile 5 cannot be kept"):
        decide(DolbyVisionInfo(profile=5, bl_compat_id=0), path, False)
    assert "look wrong" in (
        decide(DolbyVisionInfo(profile=5, bl_compat_id=0), path, True).warning or ""
    )
    seven = decide(DolbyVisionInfo(profile=7, bl_compat_id=6), path, False)
    assert not seven.keep and seven.warning and "HDR10" in seven.warning
    with pytest.raises(
        DraptoError, match=r"film.mkv: Dolby Vision profile 4 cannot be kept.*--hdr10-fallback"
    ):
        decide(DolbyVisionInfo(profile=4, bl_compat_id=2), path, False)
    fallback = decide(DolbyVisionInfo(profile=4, bl_compat_id=2), path, True)
    assert not fallback.keep and fallback.warning


def test_flags_drive_settings() -> None:
    assert parse_override("dolby_vision_crop=on") == ("dolby_vision_crop", FlagState.ON)
    assert parse_override(" segmented_encoding = OFF ") == ("segmented_encoding", FlagState.OFF)
    assert parse_override("crop_detection=shadow") == ("crop_detection", FlagState.SHADOW)
    with pytest.raises(DraptoError, match="unknown flag"):
        parse_override("turbo=on")
    with pytest.raises(DraptoError, match="takes on, off or shadow"):
        parse_override("crop_detection=maybe")
    with pytest.raises(DraptoError, match="no shadow state"):
        parse_override("segmented_encoding=shadow")
    shadowed = apply_flags(EncodeSettings(), {"crop_detection": FlagState.SHADOW})
    assert shadowed.crop  # shadow uses the default strategy
    settings = apply_flags(
        EncodeSettings(), {"crop_detection": False, "segmented_dolby_vision": False}
    )
    assert (settings.crop, settings.segmented_dolby_vision, settings.segmented) == (
        False,
        False,
        True,
    )


def test_progress_blocks() -> None:
    parser = ProgressParser()
    lines = ["frame=42", "fps=12.5", "out_time_us=1680000", "speed=0.52x", "progress=continue"]
    results = [parser.feed(line) for line in lines]
    assert results[:-1] == [None] * 4
    done = results[-1]
    assert done is not None and (done.frame, done.fps, done.out_time_s, done.speed, done.ended) == (
        42,
        12.5,
        1.68,
        0.52,
        False,
    )
    end = [parser.feed(line) for line in ["frame=50", "fps=N/A", "progress=end"]][-1]
    assert end is not None and end.ended and end.fps == 0.0


def test_concat_list_quotes_names(tmp_path: Path) -> None:
    odd = tmp_path / "it's here.mkv"
    assert (
        concat_list([odd])
        == f"file '{str(odd.resolve()).replace(chr(39), chr(39) + chr(92) + chr(39) + chr(39))}'\n"
    )


def test_obu_parser_finds_dolby_t35_metadata() -> None:
    t35 = bytes([0x04, 0xB5, 0x00, 0x3B, 0x00, 0x00, 0x08, 0x00, 0x11, 0x22])
    metadata_obu = bytes([(5 << 3) | 0x02, len(t35)]) + t35
    temporal_delimiter = bytes([(2 << 3) | 0x02, 0])
    frame_obu = bytes([(6 << 3) | 0x02, 3, 1, 2, 3])
    assert has_dolby_rpu(temporal_delimiter + metadata_obu + frame_obu)
    assert not has_dolby_rpu(temporal_delimiter + frame_obu)
    other_t35 = bytes([0x04, 0xB5, 0x00, 0x3C, 0x00, 0x01, 0x04])  # HDR10+ (Samsung)
    assert not has_dolby_rpu(bytes([(5 << 3) | 0x02, len(other_t35)]) + other_t35)
    assert not has_dolby_rpu(bytes([(5 << 3) | 0x02, 0x80]))  # truncated size
