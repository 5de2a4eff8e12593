"""A folder browser showing folders and the files drapto would queue (no hidden ones)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from textual.widgets import DirectoryTree

from drapto_engine.core.names import OUTPUT_SUFFIX, VIDEO_EXTENSIONS


def browsable(path: Path) -> bool:
    """A folder, or a file the engine's folder scan would queue; nothing hidden."""
    name = path.name.lower()
    if name.startswith("."):
        return False
    if path.suffix.lower() in VIDEO_EXTENSIONS and not name.endswith(OUTPUT_SUFFIX):
        return True
    try:
        return path.is_dir()
    except OSError:
        return False


class VideoTree(DirectoryTree):
    def filter_paths(self, paths: Iterable[Path]) -> Iterable[Path]:
        return [path for path in paths if browsable(path)]
