"""hdr_probe on real ffmpeg output: DOVI records, RPU counts, HDR10 metadata.

The Dolby Vision cases start from the real profile 8.1 sample (259 frames, an RPU on each;
its RPU changes at frames 0, 120, 219 and 229). Everything else is made with lavfi here.
"""

from __future__ import annotations

import itertools
import struct
from fractions import Fraction
from pathlib import Path

import pytest
from mediagen import run_ffmpeg

from drapto_engine.core.models import ContentLight, DolbyVisionInfo, MasteringDisplay
from drapto_engine.infrastructure.hdr_probe import (
    av1_packet_has_rpu,
    count_rpu_frames,
    ffmpeg_input_dump,
    first_frame_hdr,
    hevc_packet_has_rpu,
    parse_content_light,
    parse_dovi_record,
    parse_mastering_display,
    parse_stream_side_data,
)

DV_FRAMES = 259
DV_RATE = Fraction(24000, 1001)
P81 = DolbyVisionInfo(profile=8, level=1, bl_compat_id=1, rpu=True, el=False, bl=True)
AV1_P10 = DolbyVisionInfo(profile=10, level=1, bl_compat_id=1, rpu=True, el=False, bl=True)
SVT = ["-c:v", "libsvtav1", "-preset", "12", "-crf", "40", "-pix_fmt", "yuv420p10le"]
DV_SVT = [*SVT, "-dolbyvision", "1"]  # "auto" (the default) writes no RPU from ffmpeg's CLI

# The sample's HDR10 metadata (BT.2020 primaries, 1000 nits, MaxCLL 1000, MaxFALL 400).
SAMPLE_MASTERING = MasteringDisplay(
    red=(0.708, 0.292),
    green=(0.17, 0.797),
    blue=(0.131, 0.046),
    white_point=(0.3127, 0.329),
    min_luminance=0.0001,
    max_luminance=1000.0,
)
SAMPLE_CLL = ContentLight(max_cll=1000, max_fall=400)

# x265's HDR10 parameters (P3-D65 primaries) and what they mean.
X265_HDR10 = (
    "log-level=error:hdr10=1:"
    "master-display=G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,1):"
    "max-cll=1000,400:colorprim=bt2020:transfer=smpte2084:colormatrix=bt2020nc"
)
P3_MASTERING = MasteringDisplay(
    red=(0.68, 0.32),
    green=(0.265, 0.69),
    blue=(0.15, 0.06),
    white_point=(0.3127, 0.329),
    min_luminance=0.0001,
    max_luminance=1000.0,
)
# ffmpeg 9 lets the frames' own colour tags override -color_primaries/-color_trc, so
# synthetic frames are tagged with setparams.
PQ_TAGS = "setparams=color_primaries=bt2020:color_trc=smpte2084:colorspace=bt2020nc:range=tv"


def close_mastering(a: MasteringDisplay | None, b: MasteringDisplay) -> bool:
    """Equal up to AV1's fixed-point steps (min luminance 0.0001 becomes 2/16384 there)."""
    assert a is not None
    pairs = [(a.red, b.red), (a.green, b.green), (a.blue, b.blue), (a.white_point, b.white_point)]
    return (
        all(abs(x - y) < 1e-3 for p, q in pairs for x, y in zip(p, q, strict=True))
        and abs(a.max_luminance - b.max_luminance) < 1e-3
        and abs(a.min_luminance - b.min_luminance) < 5e-5
    )


@pytest.fixture
def dv_source(shared_media: Path) -> Path:
    return shared_media / "dv-p81-regular.mkv"


def encode_piece(ffmpeg: str, source: Path, start: int, end: int, out: Path, *extra: str) -> Path:
    """Frames [start, end) of the source, seeked half a frame early so the rounding of
    Matroska's millisecond timestamps cannot skip the first frame."""
    seek = max(Fraction(0), (start - Fraction(1, 2)) / DV_RATE)
    run_ffmpeg(
        ffmpeg,
        [
            *("-ss", f"{float(seek):.6f}", "-i", str(source), "-frames:v", str(end - start)),
            *("-map", "0:v:0", *DV_SVT, *extra, str(out)),
        ],
    )
    return out


def concat(ffmpeg: str, pieces: list[Path], out: Path, *extra: str) -> Path:
    listing = out.with_suffix(".txt")
    listing.write_text("".join(f"file '{p}'\n" for p in pieces))
    run_ffmpeg(
        ffmpeg, ["-f", "concat", "-safe", "0", "-i", str(listing), "-c", "copy", *extra, str(out)]
    )
    return out


def side_data(ffmpeg: str, path: Path) -> dict[str, object]:
    side = parse_stream_side_data(ffmpeg_input_dump(ffmpeg, path))["0:0"]
    return {
        "dv": side.dolby_vision,
        "compression": side.dovi_compression,
        "mastering": side.mastering_display,
        "cll": side.content_light,
    }


# --- the real Dolby Vision sample -----------------------------------------------------------


def test_real_dv_sample(dv_source: Path, ffmpeg: str) -> None:
    dump = ffmpeg_input_dump(ffmpeg, dv_source)
    assert parse_dovi_record(dump) == P81
    assert parse_stream_side_data(dump)["0:0"].dovi_compression == 0
    assert count_rpu_frames(dv_source) == (DV_FRAMES, DV_FRAMES)
    # HDR10 metadata is in the HEVC SEI (frame side data), not in the Matroska track.
    assert first_frame_hdr(dv_source) == (SAMPLE_MASTERING, SAMPLE_CLL)
    assert side_data(ffmpeg, dv_source)["mastering"] is None


def test_rpu_counted_in_annex_b_hevc(dv_source: Path, ffmpeg: str, tmp_path: Path) -> None:
    raw = tmp_path / "dv.hevc"
    run_ffmpeg(ffmpeg, ["-i", str(dv_source), "-c", "copy", "-bsf:v", "hevc_mp4toannexb", str(raw)])
    assert count_rpu_frames(raw) == (DV_FRAMES, DV_FRAMES)


def test_whole_file_av1_keeps_dolby_vision(dv_source: Path, ffmpeg: str, tmp_path: Path) -> None:
    out = tmp_path / "dv.mkv"
    run_ffmpeg(ffmpeg, ["-i", str(dv_source), *DV_SVT, str(out)])
    assert side_data(ffmpeg, out) == {
        "dv": AV1_P10,
        "compression": 0,
        "mastering": SAMPLE_MASTERING,  # passed on from the source frames, no parameters
        "cll": SAMPLE_CLL,
    }
    assert count_rpu_frames(out) == (DV_FRAMES, DV_FRAMES)
    mastering, cll = first_frame_hdr(out)
    assert close_mastering(mastering, SAMPLE_MASTERING)
    assert cll == SAMPLE_CLL


def test_dolbyvision_auto_writes_no_rpu(dv_source: Path, ffmpeg: str, tmp_path: Path) -> None:
    out = tmp_path / "auto.mkv"
    run_ffmpeg(ffmpeg, ["-i", str(dv_source), "-frames:v", "24", *SVT, str(out)])
    assert side_data(ffmpeg, out)["dv"] is None
    assert count_rpu_frames(out) == (24, 0)


@pytest.mark.parametrize("crop", [None, "crop=224:112:16:16"])
def test_segmented_av1_keeps_dolby_vision(
    dv_source: Path, ffmpeg: str, tmp_path: Path, crop: str | None
) -> None:
    extra = ["-vf", crop] if crop else []
    bounds = [0, 100, 219, 230, DV_FRAMES]
    pieces = [
        encode_piece(ffmpeg, dv_source, a, b, tmp_path / f"{i}.mkv", *extra)
        for i, (a, b) in enumerate(itertools.pairwise(bounds))
    ]
    assert [count_rpu_frames(p) for p in pieces] == [(100, 100), (119, 119), (11, 11), (29, 29)]
    joined = concat(ffmpeg, pieces, tmp_path / "joined.mkv")
    audio = tmp_path / "audio.mka"
    run_ffmpeg(ffmpeg, ["-f", "lavfi", "-i", "sine=d=10.8", "-c:a", "aac", str(audio)])
    final = tmp_path / "final.mkv"
    run_ffmpeg(
        ffmpeg,
        [
            "-i",
            str(joined),
            "-i",
            str(audio),
            "-map",
            "0:v",
            "-map",
            "1:a",
            "-c",
            "copy",
            str(final),
        ],
    )
    for path in (joined, final):
        assert side_data(ffmpeg, path) == {
            "dv": AV1_P10,
            "compression": 0,
            "mastering": SAMPLE_MASTERING,
            "cll": SAMPLE_CLL,
        }
        assert count_rpu_frames(path) == (DV_FRAMES, DV_FRAMES)


def test_ivf_pieces_lose_the_record_and_dovi_rpu_restores_it(
    dv_source: Path, ffmpeg: str, tmp_path: Path
) -> None:
    pieces = [
        encode_piece(ffmpeg, dv_source, 0, 120, tmp_path / "0.ivf"),
        encode_piece(ffmpeg, dv_source, 120, DV_FRAMES, tmp_path / "1.ivf"),
    ]
    plain = concat(ffmpeg, pieces, tmp_path / "plain.mkv")
    assert side_data(ffmpeg, plain)["dv"] is None  # IVF has no place for the record
    assert count_rpu_frames(plain) == (DV_FRAMES, DV_FRAMES)  # the RPUs are in the OBUs
    fixed = concat(ffmpeg, pieces, tmp_path / "fixed.mkv", "-bsf:v", "dovi_rpu=compression=none")
    assert side_data(ffmpeg, fixed)["dv"] == AV1_P10
    assert side_data(ffmpeg, fixed)["compression"] == 0
    assert count_rpu_frames(fixed) == (DV_FRAMES, DV_FRAMES)


def test_rpus_counted_per_frame_in_a_mixed_join(
    dv_source: Path, ffmpeg: str, tmp_path: Path
) -> None:
    with_dv = encode_piece(ffmpeg, dv_source, 0, 48, tmp_path / "dv.mkv")
    without = tmp_path / "plain.mkv"
    run_ffmpeg(ffmpeg, ["-ss", "2.0", "-i", str(dv_source), "-frames:v", "48", *SVT, str(without)])
    joined = concat(ffmpeg, [with_dv, without], tmp_path / "joined.mkv")
    assert side_data(ffmpeg, joined)["dv"] == AV1_P10  # the first piece's record
    assert count_rpu_frames(joined) == (96, 48)


def test_stripped_av1_has_no_dolby_vision(dv_source: Path, ffmpeg: str, tmp_path: Path) -> None:
    dv = encode_piece(ffmpeg, dv_source, 0, 48, tmp_path / "dv.mkv")
    stripped = tmp_path / "stripped.mkv"
    run_ffmpeg(ffmpeg, ["-i", str(dv), "-c", "copy", "-bsf:v", "dovi_rpu=strip=1", str(stripped)])
    assert side_data(ffmpeg, stripped)["dv"] is None
    assert count_rpu_frames(stripped) == (48, 0)


def patch_dovi_record(source: Path, out: Path, record: bytes) -> Path:
    """A copy whose Matroska dvvC record claims another profile (the RPUs stay 8.1):
    ffmpeg cannot make profile 5 or 7, so this is how probing of them is tested."""
    data = bytearray(source.read_bytes())
    at = data.index(b"dvvC") + 4 + 3  # BlockAddIDExtraData: ID 0x41ED, size 0x98 (24)
    assert data[at : at + 2] == b"\x01\x00"  # version 1.0
    data[at + 2 : at + 5] = record
    out.write_bytes(bytes(data))
    return out


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (
            bytes([0x0E, 0x0F, 0x60]),
            DolbyVisionInfo(profile=7, level=1, bl_compat_id=6, rpu=True, el=True, bl=True),
        ),
        (
            bytes([0x0A, 0x0D, 0x00]),
            DolbyVisionInfo(profile=5, level=1, bl_compat_id=0, rpu=True, el=False, bl=True),
        ),
    ],
)
def test_patched_records(
    dv_source: Path, ffmpeg: str, tmp_path: Path, record: bytes, expected: DolbyVisionInfo
) -> None:
    fake = patch_dovi_record(dv_source, tmp_path / "fake.mkv", record)
    assert parse_dovi_record(ffmpeg_input_dump(ffmpeg, fake)) == expected
    assert count_rpu_frames(fake) == (DV_FRAMES, DV_FRAMES)


# --- HDR10, HLG and SDR through SVT-AV1 -----------------------------------------------------


@pytest.fixture
def hdr10_source(ffmpeg: str, tmp_path: Path) -> Path:
    out = tmp_path / "hdr10.mkv"
    run_ffmpeg(
        ffmpeg,
        [
            *("-f", "lavfi", "-i", "testsrc2=s=320x240:r=24:d=1"),
            *("-vf", f"{PQ_TAGS},format=yuv420p10le", "-c:v", "libx265", "-preset", "ultrafast"),
            *("-x265-params", X265_HDR10, str(out)),
        ],
    )
    return out


def test_hdr10_source_metadata(hdr10_source: Path, ffmpeg: str) -> None:
    assert first_frame_hdr(hdr10_source) == (P3_MASTERING, ContentLight(max_cll=1000, max_fall=400))
    assert side_data(ffmpeg, hdr10_source)["mastering"] is None  # x265 in Matroska: SEI only
    assert count_rpu_frames(hdr10_source) == (24, 0)


def test_svt_passes_hdr10_on_without_parameters(
    hdr10_source: Path, ffmpeg: str, tmp_path: Path
) -> None:
    out = tmp_path / "av1.mkv"
    run_ffmpeg(ffmpeg, ["-i", str(hdr10_source), *SVT, str(out)])
    cll = ContentLight(max_cll=1000, max_fall=400)
    assert side_data(ffmpeg, out) == {
        "dv": None,
        "compression": None,
        "mastering": P3_MASTERING,
        "cll": cll,
    }
    mastering, frame_cll = first_frame_hdr(out)
    assert close_mastering(mastering, P3_MASTERING)
    assert frame_cll == cll


def test_svt_parameters_reach_the_bitstream_not_the_container(ffmpeg: str, tmp_path: Path) -> None:
    out = tmp_path / "av1.mkv"
    params = (
        "mastering-display=G(0.2650,0.6900)B(0.1500,0.0600)R(0.6800,0.3200)"
        "WP(0.3127,0.3290)L(4000,0.005):content-light=2000,500"
    )
    run_ffmpeg(
        ffmpeg,
        [
            *("-f", "lavfi", "-i", "testsrc2=s=320x240:r=24:d=0.5", "-vf", PQ_TAGS, *SVT),
            *("-svtav1-params", params, str(out)),
        ],
    )
    mastering, cll = first_frame_hdr(out)
    assert close_mastering(
        mastering, P3_MASTERING.model_copy(update={"max_luminance": 4000.0, "min_luminance": 0.005})
    )
    assert cll == ContentLight(max_cll=2000, max_fall=500)
    assert side_data(ffmpeg, out)["mastering"] is None
    assert side_data(ffmpeg, out)["cll"] is None


def test_hlg_and_sdr_carry_no_hdr10_metadata(ffmpeg: str, tmp_path: Path) -> None:
    hlg = tmp_path / "hlg.mkv"
    tags = "setparams=color_primaries=bt2020:color_trc=arib-std-b67:colorspace=bt2020nc:range=tv"
    run_ffmpeg(
        ffmpeg, ["-f", "lavfi", "-i", "testsrc2=s=320x240:r=24:d=0.5", "-vf", tags, *SVT, str(hlg)]
    )
    sdr = tmp_path / "sdr.mkv"
    run_ffmpeg(ffmpeg, ["-f", "lavfi", "-i", "testsrc2=s=320x240:r=24:d=0.5", *SVT, str(sdr)])
    for path in (hlg, sdr):
        assert first_frame_hdr(path) == (None, None)
        assert side_data(ffmpeg, path) == {
            "dv": None,
            "compression": None,
            "mastering": None,
            "cll": None,
        }
        assert count_rpu_frames(path) == (12, 0)
    assert "arib-std-b67" in ffmpeg_input_dump(ffmpeg, hlg)


# --- the parsers on exact inputs ------------------------------------------------------------


def test_parse_mastering_display_struct() -> None:
    # R, G, B, white point (x, y each), min and max luminance as AVRationals, then flags.
    rationals = [
        (34000, 50000), (16000, 50000), (13250, 50000), (34500, 50000), (7500, 50000),
        (3000, 50000), (15635, 50000), (16450, 50000), (1, 10000), (10000000, 10000),
    ]  # fmt: skip
    raw = struct.pack("<22i", *[v for pair in rationals for v in pair], 1, 1)
    assert parse_mastering_display(raw) == P3_MASTERING
    assert parse_mastering_display(raw[:80]) is None
    assert parse_mastering_display(raw[:80] + struct.pack("<2i", 1, 0)) is None


def test_parse_content_light_struct() -> None:
    assert parse_content_light(struct.pack("<2I", 1000, 400)) == ContentLight(
        max_cll=1000, max_fall=400
    )
    assert parse_content_light(b"\x00" * 4) is None


DUMP = """\
Input #0, matroska,webm, from 'x.mkv':
  Duration: 00:00:10.80, start: 0.000000, bitrate: 58 kb/s
  Stream #0:0(eng): Video: av1 (libdav1d) (Main), yuv420p10le(tv, bt2020nc/bt2020/smpte2084, progressive), 256x144, 23.98 fps (default)
    Metadata:
      DURATION        : 00:00:10.803000000
    Side data:
      Content light level metadata: MaxCLL=1000, MaxFALL=400
      Mastering display metadata: has_primaries:1 has_luminance:1 r(0.7080,0.2920) g(0.1700,0.7970) b(0.1310 0.0460) wp(0.3127, 0.3290) min_luminance=0.000100, max_luminance=1000.000000
      DOVI configuration record: version: 1.0, profile: 10, level: 1, rpu flag: 1, el flag: 0, bl flag: 1, compatibility id: 1, compression: 2
  Stream #0:1[0x101](jpn): Audio: aac (LC), 44100 Hz, mono, fltp
Output #0, null, to 'pipe:':
  Stream #0:0: Video: wrapped_avframe
    Side data:
      DOVI configuration record: version: 1.0, profile: 8, level: 1, rpu flag: 1, el flag: 0, bl flag: 1, compatibility id: 1, compression: 0
"""


def test_parse_stream_side_data_of_a_dump() -> None:
    streams = parse_stream_side_data(DUMP)
    assert list(streams) == ["0:0", "0:1"]
    video = streams["0:0"]
    assert video.kind == "Video"
    assert video.dolby_vision == AV1_P10
    assert video.dovi_compression == 2
    assert video.mastering_display == SAMPLE_MASTERING
    assert video.content_light == SAMPLE_CLL
    assert streams["0:1"].kind == "Audio"
    assert streams["0:1"].dolby_vision is None
    assert parse_dovi_record(DUMP) == AV1_P10
    assert parse_dovi_record("Input #0, matroska,webm, from 'x.mkv':\n") is None


def test_packet_parsers_reject_garbage() -> None:
    assert not av1_packet_has_rpu(b"\xff\xff\xff")
    assert not hevc_packet_has_rpu(b"\x00\x00\x00\x05\x40\x01", 4)
    assert hevc_packet_has_rpu(b"\x00\x00\x00\x03\x7c\x01\x19", 4)
    assert hevc_packet_has_rpu(b"\x00\x00\x00\x01\x7c\x01\x19", None)
    # A 300-byte RPU: its length field starts like an Annex B start code.
    long_rpu = b"\x00\x00\x01\x2c\x7c\x01" + b"\x19" * 298
    assert hevc_packet_has_rpu(long_rpu, 4)
    assert not hevc_packet_has_rpu(b"\x00\x00\x01\x2c\x40\x01" + b"\x19" * 298, 4)
