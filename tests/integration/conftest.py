"""Encodes several tests only inspect: made once per worker and shared, read-only."""

from __future__ import annotations

from pathlib import Path

import pytest
from encode_helpers import Run, encode


@pytest.fixture(scope="session")
def anime_encode(shared_media: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Run, Path]:
    """issue-236-split-copy.mkv encoded with the default settings: the run and its output.

    Tests must not change the output; mark them ANIME_GROUP."""
    output = tmp_path_factory.mktemp("anime") / "anime.mkv"
    return encode(shared_media / "issue-236-split-copy.mkv", output), output
