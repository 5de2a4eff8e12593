"""Phone videos (a display matrix turned 90, 180 or 270 degrees) come out as a player
shows the source; files drapto cannot take (too small to encode, a name too long for its
partial file, a FIFO, a symlink loop) are refused in one line before any work."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from encode_helpers import DRAPTO, encode, inspect
from mediagen import MakeMedia, run_ffmpeg

from drapto_engine.core.errors import ValidationError
from drapto_engine.core.models import EncodeSettings
from drapto_engine.monitoring import rollback_flag
from drapto_engine.services.validation import Expected, check_output

COPY = ["-c", "copy"]
PGM = ["-c:v", "pgm", "-f", "image2pipe", "-"]


def player_view(ffmpeg: str, path: Path) -> np.ndarray:
    """The first frame's luma as a player shows it: ffmpeg's decoder with its autorotate
    (on by default) applying the display matrix, as mpv and ffplay do."""
    done = subprocess.run(
        [ffmpeg, "-v", "error", "-i", str(path), "-frames:v", "1", "-vf", "format=gray", *PGM],
        capture_output=True,
        check=True,
    )
    magic, size, depth, data = done.stdout.split(b"\n", 3)
    assert magic == b"P5" and depth == b"255"
    width, height = map(int, size.split())
    return np.frombuffer(data[: width * height], np.uint8).reshape(height, width)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


def phone_video(
    ffmpeg: str, make_media: MakeMedia, folder: Path, rotation: int, *matrix: str, **options: Any
) -> Path:
    """An H.264 MP4 whose display matrix turns the picture `rotation` degrees (and
    flips it by the `matrix` options), as a phone writes it: the pixels stay as the
    sensor saw them."""
    plain = make_media(f"plain{rotation}.mp4", size=(160, 96), duration=1.0, **options)
    turned = folder / f"phone{rotation}{''.join(matrix)}.mp4"
    run_ffmpeg(
        ffmpeg,
        ["-display_rotation:v", str(rotation), *matrix, "-i", str(plain), *COPY, str(turned)],
    )
    return turned


@pytest.mark.slow
@pytest.mark.parametrize(
    ("rotation", "matrix", "codec"),
    [
        (90, (), "libx264"),
        (180, (), "libx264"),
        (270, (), "libx265"),
        (0, ("-display_hflip:v",), "libx264"),
        (90, ("-display_vflip:v",), "libx264"),
    ],
    ids=["90", "180", "270-hevc", "mirrored", "90-flipped"],
)
def test_phone_video_looks_as_the_source_in_a_player(
    ffmpeg: str,
    make_media: MakeMedia,
    tmp_path: Path,
    rotation: int,
    matrix: tuple[str, ...],
    codec: str,
) -> None:
    source = phone_video(ffmpeg, make_media, tmp_path, rotation, *matrix, codec=codec)
    output = tmp_path / f"phone{rotation}.mkv"
    run = encode(source, output)
    assert run.returncode == 0, run.stderr
    assert len(run.of("rolled_back")) == 0
    want, got = player_view(ffmpeg, source), player_view(ffmpeg, output)
    assert got.shape == want.shape == ((160, 96) if rotation % 180 else (96, 160))
    # The right orientation is a close copy; a wrong one (even a 180-degree turn or a
    # mirror of the same size) is far off: testsrc2 is not symmetric.
    assert psnr(got, want) > 28, psnr(got, want)
    assert psnr(got, np.rot90(want, 2)) < 20
    assert psnr(got, want[:, ::-1]) < 20
    assert inspect(output).frames_decoded == inspect(source).frames_decoded == 25


def test_a_turn_other_than_a_quarter_is_refused_before_any_work(
    ffmpeg: str, make_media: MakeMedia, tmp_path: Path
) -> None:
    source = phone_video(ffmpeg, make_media, tmp_path, 45)
    run = encode(source, tmp_path / "askew.mkv")
    assert run.returncode == 1
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "45 degrees" in lines[0] and str(source) in lines[0], run.stderr
    assert run.of("segment_started") == []


@pytest.mark.slow
def test_phone_video_with_bars_is_cropped_where_the_player_shows_them(
    ffmpeg: str, make_media: MakeMedia, tmp_path: Path
) -> None:
    # Bars above and below the sensor's picture: turned 90 degrees they stand left and right.
    source = phone_video(ffmpeg, make_media, tmp_path, 90, pad=(160, 64, 0, 16))
    output = tmp_path / "bars.mkv"
    run = encode(source, output)
    assert run.returncode == 0, run.stderr
    want, got = player_view(ffmpeg, source), player_view(ffmpeg, output)
    assert want.shape == (160, 96) and got.shape == (160, 64)
    assert psnr(got, want[:, 16:80]) > 28, psnr(got, want[:, 16:80])


def test_a_failure_segmenting_cannot_cause_is_not_rolled_back(
    ffmpeg: str, make_media: MakeMedia, tmp_path: Path
) -> None:
    """A size mismatch does not depend on segmenting: no retry with it off. A frame
    count mismatch may: that one is retried."""
    output = make_media(
        "out.mkv", size=(64, 64), duration=0.4, codec="libsvtav1", pix_fmt="yuv420p10le"
    )
    right = Expected(width=64, height=64, frames=10, duration_s=0.4, frame_duration_s=0.04)
    settings = EncodeSettings()
    wrong_size = check_output(output, Expected(**{**right.__dict__, "width": 32}), ffmpeg)
    assert any("size 64x64, expected 32x64" in f for f in wrong_size), wrong_size
    error = ValidationError(output, wrong_size)
    assert rollback_flag("validating", None, settings, error) is None
    wrong_count = check_output(output, Expected(**{**right.__dict__, "frames": 11}), ffmpeg)
    assert any("video frames" in f for f in wrong_count), wrong_count
    error = ValidationError(output, wrong_count)
    assert rollback_flag("validating", None, settings, error) == "segmented_encoding"


@pytest.mark.parametrize("size", [(1, 1), (2, 2)])
def test_a_picture_too_small_to_encode_is_refused_before_any_work(
    make_media: MakeMedia, tmp_path: Path, size: tuple[int, int]
) -> None:
    # 2x2 is refused although some pictures of it encode: SVT-AV1 fails a picture whose
    # coded size tops 8 times its raw size, which a small one of rich content does.
    source = make_media(
        f"tiny{size[0]}.mkv", size=size, duration=0.4, pix_fmt="yuv444p", source="color"
    )
    output = tmp_path / "tiny.mkv"
    run = encode(source, output)
    assert run.returncode == 1
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert str(source) in lines[0] and f"{size[0]}x{size[1]}" in lines[0], lines[0]
    assert run.of("segment_started") == []
    assert sorted(p.name for p in tmp_path.iterdir()) == [source.name]


def test_a_stem_too_long_for_the_partial_name_is_refused_before_any_work(
    tiny_video: Path, tmp_path: Path
) -> None:
    output = tmp_path / ("s" * 246 + ".mkv")  # 250 bytes: a legal final name
    run = encode(tiny_video, output)
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert "too long" in lines[0] and "-o" in lines[0], lines[0]
    assert run.of("segment_started") == []
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "fifo.mp4"
    os.mkfifo(path)
    return path


@pytest.mark.parametrize(
    "argv",
    [
        ["probe", "{fifo}"],
        ["encode", "{fifo}", "--no-daemon"],
        ["encode", "{fifo}", "--detach"],
    ],
    ids=["probe", "encode", "detach"],
)
def test_a_fifo_is_refused_without_opening_it(fifo: Path, tmp_path: Path, argv: list[str]) -> None:
    env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp_path), "XDG_STATE_HOME": str(tmp_path)}
    done = subprocess.run(
        [*DRAPTO, *(a.replace("{fifo}", str(fifo)) for a in argv)],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert str(fifo) in lines[0] and "FIFO" in lines[0], lines[0]


def test_a_symlink_loop_is_called_a_loop(tmp_path: Path) -> None:
    from drapto_engine.services.library import is_video_file

    loop = tmp_path / "loop.mkv"
    loop.symlink_to(loop)
    assert is_video_file(loop) == "is a symbolic link loop"


async def test_the_engine_names_a_fifo_as_a_fifo(fifo: Path, tmp_path: Path, ffmpeg: str) -> None:
    from engine_helpers import make_engine

    from drapto_engine.core.errors import DraptoError

    session = make_engine(tmp_path, ffmpeg)
    with pytest.raises(DraptoError, match="is a FIFO"):
        await session.engine.add_file(str(fifo), str(tmp_path / "out.mkv"))
    with pytest.raises(DraptoError, match="is a FIFO"):
        await session.engine.add_paths([str(fifo)])
    session.engine.close()


def test_a_phone_video_segment_shipped_to_a_worker_is_turned_as_a_local_one(
    ffmpeg: str, make_media: MakeMedia, tmp_path: Path
) -> None:
    """A worker encodes a segment from the packets shipped to it, in a container of its
    own: it turns the picture as the plan says, whatever matrix that container keeps."""
    import asyncio

    pytest.importorskip("distributed")
    from drapto_engine.cluster.tasks import encode_shipped_segment, packet_index, ship_segment
    from drapto_engine.core.models import Segment
    from drapto_engine.services.detection import analyze_video
    from drapto_engine.services.encoding.plan import VideoPlan

    source = phone_video(ffmpeg, make_media, tmp_path, 270)
    analysis = asyncio.run(analyze_video(source, ffmpeg))
    plan = VideoPlan.make(ffmpeg, analysis, EncodeSettings(preset=12))
    packets, preroll = ship_segment(source, 0, 10)
    segment = Segment(index=0, start_frame=0, end_frame=10, start_s=0.0, end_s=0.4)
    remote = tmp_path / "remote.mp4"
    remote.write_bytes(
        encode_shipped_segment(packets, preroll, plan, segment, 1, packet_index(source).time_base)
    )
    want, got = player_view(ffmpeg, source), player_view(ffmpeg, remote)
    assert got.shape == want.shape == (160, 96)
    assert psnr(got, want) > 28, psnr(got, want)
