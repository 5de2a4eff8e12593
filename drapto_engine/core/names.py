"""Which file names drapto takes for videos, and how it names its outputs (pure)."""

from __future__ import annotations

VIDEO_EXTENSIONS = frozenset(
    {
        ".mkv",
        ".mp4",
        ".m4v",
        ".mov",
        ".avi",
        ".ts",
        ".m2ts",
        ".mts",
        ".webm",
        ".wmv",
        ".mpg",
        ".mpeg",
        ".flv",
        ".vob",
    }
)
"""File name extensions (lower case) a folder scan considers; probing then confirms each."""

OUTPUT_SUFFIX = ".av1.mkv"
"""How an output written beside its input is named: `<stem>.av1.mkv`."""
