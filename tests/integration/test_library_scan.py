"""scan_folder on a real tree: nested videos found in natural order, drapto's own files,
hidden files and non-videos left out, symlink loops ended."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from drapto_engine.services.library import (
    Scan,
    is_video_file,
    natural_key,
    output_path,
    scan_folder,
)
from drapto_engine.services.outputs import partial_name
from drapto_engine.services.workdir import WORK_PREFIX


@pytest.fixture
def video(tiny_video: Path, tmp_path: Path) -> Path:
    """A copy of the worker's tiny real video (conftest.py)."""
    path = tmp_path / "source" / "video.mkv"
    path.parent.mkdir()
    shutil.copyfile(tiny_video, path)
    return path


def place(video: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(video, target)
    return target


@pytest.fixture
def library(tmp_path: Path, video: Path) -> Path:
    root = tmp_path / "library"
    for name in (
        "Show/Season 1/Ep 10.mkv",
        "Show/Season 1/Ep 2.mkv",
        "Show/Season 1/ep 1.MP4",
        "Film (2019).mkv",
        "films/Zed.mov",
        # drapto's own files and hidden things, all real videos, none to be queued
        "Film (2019).av1.mkv",
        ".hidden.mkv",
        ".hidden-folder/inside.mkv",
        f"{WORK_PREFIX}x/segment-0001.mkv",
        "Show/Season 1/" + partial_name(Path("Ep 3.mkv")).name,
        "av1/Film (2019).mkv",  # an output folder inside the library
    ):
        place(video, root / name)
    (root / "Show" / "notes.txt").write_text("not a candidate: no video extension")
    (root / "Show" / "fake.mkv").write_text("a text file renamed .mkv\n" * 10)
    (root / "Show" / "Season 1" / "loop").symlink_to(root / "Show", target_is_directory=True)
    return root


def test_scan_finds_the_videos_in_natural_order(library: Path, ffmpeg: str) -> None:
    scan = scan_folder(library, ffmpeg, skip=[library / "av1"])
    assert scan.videos == [
        library / "Film (2019).mkv",  # "film (" sorts before "films"
        library / "films" / "Zed.mov",
        library / "Show" / "Season 1" / "ep 1.MP4",
        library / "Show" / "Season 1" / "Ep 2.mkv",
        library / "Show" / "Season 1" / "Ep 10.mkv",
    ]
    assert [path for path, _ in scan.rejected] == [library / "Show" / "fake.mkv"]
    assert "not a readable media file" in scan.rejected[0][1]


def test_without_skip_the_output_folder_is_scanned(library: Path, ffmpeg: str) -> None:
    scan = scan_folder(library, ffmpeg)
    assert library / "av1" / "Film (2019).mkv" in scan.videos
    assert len(scan.videos) == 6


def test_drapto_names_are_hidden_by_construction() -> None:
    # The scan leaves work folders and partial outputs out only because they are hidden.
    assert WORK_PREFIX.startswith(".")
    assert partial_name(Path("/x/Film.mkv")).name.startswith(".")


def test_symlinked_folder_is_scanned_once(tmp_path: Path, video: Path, ffmpeg: str) -> None:
    root = tmp_path / "root"
    real = place(video, tmp_path / "elsewhere" / "a.mkv")
    root.mkdir()
    os.symlink(tmp_path / "elsewhere", root / "link1")
    os.symlink(tmp_path / "elsewhere", root / "link2")
    os.symlink(real, root / "b.mkv")  # a second name for the same file
    os.symlink(root, root / "self")  # a loop back to the top
    scan = scan_folder(root, ffmpeg)
    assert scan == Scan(videos=[root / "b.mkv"], rejected=[])


def test_relative_folder_gives_absolute_paths(
    tmp_path: Path, video: Path, ffmpeg: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    place(video, tmp_path / "lib" / "a.mkv")
    monkeypatch.chdir(tmp_path)
    assert scan_folder(Path("lib"), ffmpeg).videos == [tmp_path / "lib" / "a.mkv"]


def test_unreadable_folder_is_reported(tmp_path: Path, video: Path, ffmpeg: str) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads every folder")
    place(video, tmp_path / "lib" / "locked" / "a.mkv")
    (tmp_path / "lib" / "locked").chmod(0)
    try:
        scan = scan_folder(tmp_path / "lib", ffmpeg)
    finally:
        (tmp_path / "lib" / "locked").chmod(0o755)
    assert scan.videos == []
    assert scan.rejected[0][0] == tmp_path / "lib" / "locked"


def test_is_video_file(tmp_path: Path, video: Path, ffmpeg: str) -> None:
    assert is_video_file(video, ffmpeg) is None
    empty = tmp_path / "empty.mkv"
    empty.touch()
    assert is_video_file(empty, ffmpeg) == "is empty (0 bytes)"
    assert is_video_file(tmp_path / "gone.mkv", ffmpeg) == "no such file"


def test_natural_key_orders_numbers_as_numbers() -> None:
    names = ["Ep 10.mkv", "ep 1.mkv", "Ep 2.mkv", "Ep 2b.mkv", "10 Things.mkv", "A.mkv"]
    ordered = sorted(names, key=lambda n: natural_key(Path(n)))
    assert ordered == ["10 Things.mkv", "A.mkv", "ep 1.mkv", "Ep 2.mkv", "Ep 2b.mkv", "Ep 10.mkv"]


def test_output_path() -> None:
    source = Path("/lib/Show/S1/Ep 1.mp4")
    assert output_path(source, None) == Path("/lib/Show/S1/Ep 1.av1.mkv")
    assert output_path(source, Path("/out")) == Path("/out/Ep 1.mkv")
    assert output_path(source, Path("/out"), root=Path("/lib")) == Path("/out/Show/S1/Ep 1.mkv")
