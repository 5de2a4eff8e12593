"""Dolby Vision, HDR10, HLG and SDR through `drapto encode`, checked independently."""

from __future__ import annotations

import re
import struct
import subprocess
from pathlib import Path

import av
import pytest
from encode_helpers import encode

pytestmark = pytest.mark.slow

MASTER_DISPLAY = "G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,1)"
DV_X265 = (
    "hdr10=1:vbv-maxrate=2000:vbv-bufsize=4000:repeat-headers=1:log-level=error:"
    "master-display=G(8500,39850)B(6550,2300)R(35400,14600)WP(15635,16450)L(10000000,1):"
    "max-cll=1000,400"
)
PQ_TAGS = ["-color_primaries", "bt2020", "-color_trc", "smpte2084", "-colorspace", "bt2020nc"]


def dovi_record(ffmpeg: str, path: Path) -> tuple[int, int] | None:
    """(profile, compatibility id) from ffmpeg's own dump of the file."""
    dump = subprocess.run(
        [ffmpeg, "-hide_banner", "-i", str(path)], capture_output=True, text=True, check=False
    ).stderr
    match = re.search(r"DOVI configuration record:.*profile: (\d+).*compatibility id: (\d+)", dump)
    return (int(match[1]), int(match[2])) if match else None


def read_side_data(frame: av.VideoFrame) -> dict[str, bytes]:
    """A frame's side data by type name, from PyAV's items (up to 18.1.0: each carries its
    `type`) or its mapping from type to item (18.1.1)."""
    side = frame.side_data
    entries = list(side)
    if entries and not hasattr(entries[0], "type"):
        return {kind.name: bytes(side[kind]) for kind in entries}
    return {item.type.name: bytes(item) for item in entries}


def frame_side_data(path: Path) -> tuple[int, int, set[str], dict[str, bytes]]:
    """Decoded frames, frames with Dolby Vision metadata, side data names, first frame's data."""
    frames = with_rpu = 0
    names: set[str] = set()
    first: dict[str, bytes] = {}
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            kinds = read_side_data(frame)
            if frames == 0:
                first = kinds
            frames += 1
            names |= set(kinds)
            with_rpu += bool({"DOVI_METADATA", "DOVI_RPU_BUFFER"} & set(kinds))
    return frames, with_rpu, names, first


def colour(path: Path) -> tuple[str | None, str | None, int, int]:
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        return (
            str(frame.color_trc),
            str(frame.color_primaries),
            frame.width,
            frame.height,
        )


def mastering(raw: bytes) -> tuple[float, ...]:
    values = struct.unpack("<20i", raw[:80])
    return tuple(round(values[i] / values[i + 1], 4) for i in range(0, 20, 2))


def make_dv(
    ffmpeg: str,
    source: Path,
    out: Path,
    *,
    loops: int = 0,
    picture: tuple[int, int, int, int] = (320, 180, 0, 0),
) -> Path:
    """A Dolby Vision 8.1 HEVC file re-encoded from the real sample, RPUs kept by x265.

    The sample's frames are black, so a test picture (`picture`: width, height, x, y) is
    laid over them; overlay keeps the main input's side data, so every RPU survives."""
    w, h, x, y = picture
    graph = (
        "[0:v]scale=320:180,setsar=1[bg];"
        f"testsrc2=s={w}x{h}:r=24000/1001[fg];"
        f"[bg][fg]overlay={x}:{y}:shortest=1:format=yuv420p10[v]"
    )
    subprocess.run(
        [
            ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-stream_loop", str(loops),
            "-i", str(source), "-filter_complex", graph, "-map", "[v]", "-c:v", "libx265",
            "-preset", "ultrafast", "-dolbyvision", "1", "-x265-params", DV_X265, *PQ_TAGS, str(out),
        ],
        check=True,
    )  # fmt: skip
    return out


def test_dolby_vision_segmented(ffmpeg: str, shared_media: Path, tmp_path: Path) -> None:
    source = shared_media / "dv-p81-regular.mkv"
    output = tmp_path / "dv.mkv"
    run = encode(source, output, "--min-segment", "2", "--max-segment", "4")
    assert run.returncode == 0, run.stderr
    assert run.of("analysis")[0]["encoder"] == "svt-av1 dolby-vision"
    assert run.of("segments_planned")[0]["count"] >= 3
    assert dovi_record(ffmpeg, output) == (10, 1)
    frames, with_rpu, names, first = frame_side_data(output)
    assert (frames, with_rpu) == (259, 259)
    assert "MASTERING_DISPLAY_METADATA" in names and "CONTENT_LIGHT_LEVEL" in names
    assert struct.unpack("<2I", first["CONTENT_LIGHT_LEVEL"][:8]) == (1000, 400)


def test_dolby_vision_whole_file_flag(ffmpeg: str, shared_media: Path, tmp_path: Path) -> None:
    output = tmp_path / "dv-whole.mkv"
    run = encode(
        shared_media / "dv-p81-regular.mkv",
        output,
        "--min-segment",
        "2",
        "--max-segment",
        "4",
        "--flag",
        "segmented_dolby_vision=off",
    )
    assert run.returncode == 0, run.stderr
    assert run.of("segments_planned")[0]["count"] == 1
    assert dovi_record(ffmpeg, output) == (10, 1)
    assert frame_side_data(output)[:2] == (259, 259)


def test_longer_dolby_vision_in_many_segments(
    ffmpeg: str, shared_media: Path, tmp_path: Path
) -> None:
    # Twice the sample (21.6 s) cut at 5 s at most: five segments, each joined with its RPUs.
    source = make_dv(ffmpeg, shared_media / "dv-p81-regular.mkv", tmp_path / "dv-long.mkv", loops=1)
    assert dovi_record(ffmpeg, source) == (8, 1)
    output = tmp_path / "out.mkv"
    run = encode(source, output, "--min-segment", "2", "--max-segment", "5")
    assert run.returncode == 0, run.stderr
    assert run.of("segments_planned")[0]["count"] >= 4
    assert dovi_record(ffmpeg, output) == (10, 1)
    assert frame_side_data(output)[:2] == (518, 518)


def test_dolby_vision_crop_only_with_flag(ffmpeg: str, shared_media: Path, tmp_path: Path) -> None:
    source = make_dv(
        ffmpeg,
        shared_media / "dv-p81-regular.mkv",
        tmp_path / "dv-letterbox.mkv",
        picture=(320, 136, 0, 22),
    )
    kept = tmp_path / "kept.mkv"
    run = encode(source, kept)
    assert run.returncode == 0, run.stderr
    assert any("not cropping" in w["message"] for w in run.of("warning"))
    assert colour(kept)[2:] == (320, 180)

    cropped = tmp_path / "cropped.mkv"
    run = encode(source, cropped, "--flag", "dolby_vision_crop=on")
    assert run.returncode == 0, run.stderr
    assert colour(cropped)[2:] == (320, 136)
    assert dovi_record(ffmpeg, cropped) == (10, 1)
    assert frame_side_data(cropped)[:2] == (259, 259)


def test_hdr10_metadata_carried(make_media, ffmpeg: str, tmp_path: Path) -> None:
    source = make_media(
        "hdr10.mkv",
        duration=2.0,
        codec="libx265",
        pix_fmt="yuv420p10le",
        primaries="bt2020",
        trc="smpte2084",
        colorspace="bt2020nc",
        master_display=MASTER_DISPLAY,
        max_cll="1000,400",
    )
    output = tmp_path / "out.mkv"
    run = encode(source, output)
    assert run.returncode == 0, run.stderr
    assert run.of("analysis")[0]["dynamic_range"] == "hdr10"
    trc, primaries, _, _ = colour(output)
    assert (trc, primaries) == ("16", "9")  # SMPTE 2084, BT.2020
    _, with_rpu, _names, first = frame_side_data(output)
    assert with_rpu == 0 and dovi_record(ffmpeg, output) is None
    assert mastering(first["MASTERING_DISPLAY_METADATA"]) == pytest.approx(
        (0.68, 0.32, 0.265, 0.69, 0.15, 0.06, 0.3127, 0.329, 0.0001, 1000.0), abs=2e-4
    )
    assert struct.unpack("<2I", first["CONTENT_LIGHT_LEVEL"][:8]) == (1000, 400)


def test_hlg_keeps_its_transfer(make_media, ffmpeg: str, tmp_path: Path) -> None:
    source = make_media(
        "hlg.mkv",
        duration=2.0,
        codec="libx265",
        pix_fmt="yuv420p10le",
        primaries="bt2020",
        trc="arib-std-b67",
        colorspace="bt2020nc",
    )
    output = tmp_path / "out.mkv"
    run = encode(source, output)
    assert run.returncode == 0, run.stderr
    assert run.of("analysis")[0]["dynamic_range"] == "hlg"
    assert colour(output)[:2] == ("18", "9")  # ARIB STD-B67, BT.2020
    assert "MASTERING_DISPLAY_METADATA" not in frame_side_data(output)[2]


def test_sdr_gains_no_hdr_signalling(make_media, ffmpeg: str, tmp_path: Path) -> None:
    source = make_media("sdr.mkv", duration=2.0)
    output = tmp_path / "out.mkv"
    run = encode(source, output)
    assert run.returncode == 0, run.stderr
    _, with_rpu, names, _ = frame_side_data(output)
    assert with_rpu == 0
    assert not {"MASTERING_DISPLAY_METADATA", "CONTENT_LIGHT_LEVEL"} & names
    assert dovi_record(ffmpeg, output) is None
    assert colour(output)[0] not in ("16", "18")
