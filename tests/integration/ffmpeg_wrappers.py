"""ffmpeg stand-ins for cluster tests: shell scripts that run the real ffmpeg and then
spoil what it made, so that a check downstream has something real to catch."""

from __future__ import annotations

from pathlib import Path

from drapto_engine.services.encoding.svt import SEGMENT_SUFFIX


def cutting_ffmpeg(ffmpeg: str, path: Path) -> Path:
    """An ffmpeg whose segment encodes (output `segment-*SEGMENT_SUFFIX`) keep 2 frames;
    everything else, its version line included, is the real one's."""
    path.write_text(
        "#!/bin/sh\n"
        'for a in "$@"; do last="$a"; done\n'
        f'case "$last" in */segment-*{SEGMENT_SUFFIX})\n'
        f'  "{ffmpeg}" "$@" || exit $?\n'
        f'  "{ffmpeg}" -v error -y -i "$last" -c copy -frames:v 2 "$last.cut{SEGMENT_SUFFIX}" &&'
        f' mv "$last.cut{SEGMENT_SUFFIX}" "$last"\n'
        "  exit 0;;\nesac\n"
        f'exec "{ffmpeg}" "$@"\n'
    )
    path.chmod(0o755)
    return path
