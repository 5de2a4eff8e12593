"""The encoder's identity: segments of one file must all come from one drapto, one
ffmpeg and one SVT-AV1 build, encoding with the same arguments, so engine and workers
compare these strings before any work is shared."""

from __future__ import annotations

import functools
import hashlib
import json
import re
import subprocess
from fractions import Fraction
from pathlib import Path

import drapto_engine
from drapto_engine.core.errors import ToolchainError
from drapto_engine.infrastructure.ffmpeg.toolchain import find_toolchain

SEPARATOR = "; "

SVT_VERSION = re.compile(r"SVT-AV1 Encoder Lib (v?\S+)")


def _ffmpeg_version(banner_line: str) -> str:
    """'ffmpeg version n9.0.2-17-g2a571b6068-20260930' (the banner without its copyright)."""
    return banner_line.split(" Copyright")[0].strip()


@functools.cache
def _svtav1_version(ffmpeg: str) -> str:
    """The SVT-AV1 library ffmpeg links, as the library itself reports it on one frame."""
    argv = [
        ffmpeg,
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "info",
        "-f",
        "lavfi",
        "-i",
        "color=s=64x64:r=25:d=0.04",
        "-frames:v",
        "1",
        "-c:v",
        "libsvtav1",
        "-preset",
        "12",
        "-f",
        "null",
        "-",
    ]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ToolchainError(f"cannot run ffmpeg for the SVT-AV1 version: {exc}", ffmpeg) from exc
    match = SVT_VERSION.search(done.stderr)
    if match is None:
        raise ToolchainError("libsvtav1 did not report its version", ffmpeg)
    return f"SVT-AV1 {match[1]}"


def encoder_arguments() -> str:
    """A hash of the arguments this drapto builds for segment encodes: the real builders
    (local, Dolby Vision, shipped) applied to one fixed made-up segment, ffmpeg's own
    path left out. Two drapto builds that encode a segment differently differ here."""
    from drapto_engine.cluster.tasks import shipped_argv
    from drapto_engine.core.models import (
        Crop,
        DynamicRange,
        EncodeSettings,
        MediaInfo,
        Rational,
        ResolutionClass,
        VideoAnalysis,
        VideoStream,
    )
    from drapto_engine.core.models import Segment as Seg
    from drapto_engine.services.encoding.plan import VideoPlan
    from drapto_engine.services.encoding.svt import DolbyVisionEncoder, encoder_for

    source, output = Path("/source.mkv"), Path("/segment.mp4")
    video = VideoStream(
        index=0,
        codec="h264",
        width=1920,
        height=1080,
        pix_fmt="yuv420p10le",
        bit_depth=10,
        frame_rate=Rational(num=24000, den=1001),
        frame_count=1000,
        color_primaries="bt2020",
        color_transfer="smpte2084",
        color_matrix="bt2020nc",
        color_range="tv",
    )
    media = MediaInfo(path=source, container="matroska", size_bytes=1, duration_s=41.7, video=video)
    analysis = VideoAnalysis(
        media=media,
        dynamic_range=DynamicRange.HDR10,
        crop=Crop(width=1920, height=800, x=0, y=140),
        resolution_class=ResolutionClass.HD,
        default_crf=26,
    )
    plan = VideoPlan.make("ffmpeg", analysis, EncodeSettings())
    segment = Seg(index=3, start_frame=100, end_frame=200, start_s=4.17, end_s=8.34)
    argvs = [
        encoder_for(plan).segment_argv(plan, segment, output, 2),
        DolbyVisionEncoder().segment_argv(plan, segment, output, 2),
        shipped_argv(plan, segment, source, output, 12, 2, Fraction(1, 1000)),
    ]
    text = json.dumps([argv[1:] for argv in argvs])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def fingerprint(configured: str | None = None) -> str:
    """'drapto 0.3.0; ffmpeg version ...; SVT-AV1 v...; encoder arguments <hash>' for
    this drapto and the ffmpeg it would use here (parts joined by SEPARATOR)."""
    toolchain = find_toolchain(configured)
    return SEPARATOR.join(
        [
            f"drapto {drapto_engine.__version__}",
            _ffmpeg_version(toolchain.version),
            _svtav1_version(toolchain.ffmpeg),
            f"encoder arguments {encoder_arguments()}",
        ]
    )


def differences(worker: str, engine: str) -> str:
    """The parts of a worker's fingerprint that differ from the engine's, each as
    'WORKER'S (engine: ENGINE'S)'."""
    a, b = worker.split(SEPARATOR), engine.split(SEPARATOR)
    if len(a) != len(b):
        return f"{worker} (engine: {engine})"
    return SEPARATOR.join(f"{x} (engine: {y})" for x, y in zip(a, b, strict=True) if x != y)
