"""Finding the ffmpeg binary and checking, once, that it can do drapto's work."""

from __future__ import annotations

import functools
import logging
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from drapto_engine.core.errors import ToolchainError

log = logging.getLogger(__name__)

MIN_VERSION = (7, 1)
ENV_VAR = "DRAPTO_FFMPEG"
REQUIRED_ENCODERS = ("libsvtav1", "libopus")


@dataclass(frozen=True)
class Toolchain:
    """A checked ffmpeg binary."""

    ffmpeg: str
    version: str
    has_libdav1d: bool


def embedded_ffmpeg() -> str:
    """The ffmpeg bundled with the imageio-ffmpeg wheel."""
    try:
        import imageio_ffmpeg

        return str(imageio_ffmpeg.get_ffmpeg_exe())
    except Exception as exc:  # the wheel raises RuntimeError when its binary is absent
        raise ToolchainError(
            f"the bundled ffmpeg is not available: {exc}",
            hint=f"reinstall drapto, or set {ENV_VAR} to an ffmpeg binary",
        ) from exc


def _parse_version(banner: str) -> tuple[int, int] | None:
    match = re.search(r"ffmpeg version n?(\d+)\.(\d+)", banner)
    return (int(match[1]), int(match[2])) if match else None


def _run(binary: str, *args: str) -> str:
    try:
        done = subprocess.run(
            [binary, "-hide_banner", *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except OSError as exc:
        raise ToolchainError(f"cannot run ffmpeg: {exc.strerror}", binary) from exc
    return done.stdout + done.stderr


def check_binary(binary: str) -> Toolchain:
    """Check a binary has the version, encoders and options drapto needs."""
    resolved = shutil.which(binary) or binary
    if not Path(resolved).is_file():
        raise ToolchainError("no such ffmpeg binary", binary, hint=f"set {ENV_VAR} or ffmpeg_path")
    banner = _run(resolved, "-version")
    version = _parse_version(banner)
    missing: list[str] = []
    if version is None:
        missing.append("a recognisable 'ffmpeg version' banner")
    elif version < MIN_VERSION:
        missing.append(
            f"version >= {MIN_VERSION[0]}.{MIN_VERSION[1]} (found {version[0]}.{version[1]})"
        )
    encoders = _run(resolved, "-encoders")
    missing += [f"encoder {name}" for name in REQUIRED_ENCODERS if f" {name} " not in encoders]
    if "encoder libsvtav1" not in missing and "-dolbyvision" not in _run(
        resolved, "-h", "encoder=libsvtav1"
    ):
        missing.append("the -dolbyvision option of libsvtav1")
    if missing:
        raise ToolchainError(
            "this ffmpeg lacks " + ", ".join(missing),
            resolved,
            hint=f"unset {ENV_VAR} to use the bundled ffmpeg, or point it at a build with them",
        )
    decoders = _run(resolved, "-decoders")
    first_line = banner.splitlines()[0] if banner else ""
    return Toolchain(ffmpeg=resolved, version=first_line, has_libdav1d="libdav1d" in decoders)


@functools.cache
def _cached_check(binary: str) -> Toolchain:
    toolchain = check_binary(binary)
    log.info("using %s (%s)", toolchain.ffmpeg, toolchain.version)
    return toolchain


def find_toolchain(configured: str | None = None) -> Toolchain:
    """The ffmpeg to use: DRAPTO_FFMPEG, then the configured path, then the bundled one."""
    binary = os.environ.get(ENV_VAR) or configured or embedded_ffmpeg()
    return _cached_check(binary)
