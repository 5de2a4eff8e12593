"""The encoder's identity: segments of one file must all come from one ffmpeg and one
SVT-AV1 build, so engine and workers compare these strings before any work is shared."""

from __future__ import annotations

import functools
import re
import subprocess

from drapto_engine.core.errors import ToolchainError
from drapto_engine.infrastructure.ffmpeg.toolchain import find_toolchain

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


def fingerprint(configured: str | None = None) -> str:
    """'ffmpeg version ..., SVT-AV1 v...' for the ffmpeg drapto would use here."""
    toolchain = find_toolchain(configured)
    return f"{_ffmpeg_version(toolchain.version)}, {_svtav1_version(toolchain.ffmpeg)}"
