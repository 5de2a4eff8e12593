"""Shared fixtures: the checked ffmpeg, the real media folder, synthetic media."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mediagen import MakeMedia, make_video

from drapto_engine.infrastructure.ffmpeg.toolchain import find_toolchain

REPO_ROOT = Path(__file__).resolve().parents[1]
# The small real files (see their README.md) live outside the repository: by default in
# ../shared/media beside the checkout, or wherever DRAPTO_TEST_MEDIA points.
SHARED_MEDIA = Path(os.environ.get("DRAPTO_TEST_MEDIA") or REPO_ROOT.parent / "shared" / "media")
MEDIA_MISSING = (
    f"real test media not found at {SHARED_MEDIA} "
    "(set DRAPTO_TEST_MEDIA to the folder of sample files)"
)


def under_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1")


def pytest_configure(config: pytest.Config) -> None:
    """Under CI the real media are required: a run without them stops before any test,
    instead of skipping every test that needs them (which `-q` does not even list)."""
    if under_ci() and not (SHARED_MEDIA / "README.md").is_file():
        raise pytest.UsageError(f"{MEDIA_MISSING}; CI=true needs them")


@pytest.fixture(scope="session", autouse=True)
def isolated_user_dirs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Config, state and runtime folders of the test session's own: a developer's saved
    flags, queue or running engine must never change what a test sees (subprocesses
    inherit the environment)."""
    root = tmp_path_factory.mktemp("user")
    for var, name in (
        ("XDG_CONFIG_HOME", "config"),
        ("XDG_STATE_HOME", "state"),
        ("XDG_RUNTIME_DIR", "run"),
    ):
        folder = root / name
        folder.mkdir(mode=0o700)
        os.environ[var] = str(folder)
    os.environ.pop("DRAPTO_STATE_DIR", None)
    return root


@pytest.fixture(scope="session")
def ffmpeg() -> str:
    """The ffmpeg binary drapto itself would use, after its capability check."""
    return find_toolchain().ffmpeg


@pytest.fixture(scope="session")
def shared_media() -> Path:
    """The folder of small real files (see its README.md); skips when absent, fails
    under CI."""
    if not (SHARED_MEDIA / "README.md").is_file():
        if under_ci():
            pytest.fail(f"{MEDIA_MISSING}; CI=true needs them")
        pytest.skip(MEDIA_MISSING)
    return SHARED_MEDIA


@pytest.fixture(scope="session")
def tiny_video(ffmpeg: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real 64x64, 1 s video, made once per worker: tests copy it (never change it)."""
    return make_video(
        ffmpeg, tmp_path_factory.mktemp("tiny") / "video.mkv", size=(64, 64), duration=1.0
    )


@pytest.fixture
def make_media(ffmpeg: str, tmp_path: Path) -> MakeMedia:
    """make_media("name.mkv", **make_video options) writes a synthetic file in tmp_path."""

    def make(name: str, **options: Any) -> Path:
        return make_video(ffmpeg, tmp_path / name, **options)

    return make
