"""Watched folders on real files and real waiting: settling, rescans, missing folders,
remembered refusals, drapto's own files, and watchfiles' events."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from drapto_engine.core.watching import FolderState, WatchedFolder
from drapto_engine.services.watch import FolderWatch, WatchService, probe

Queued = list[Path]


class Probes:
    """The real probe, counted."""

    def __init__(self) -> None:
        self.paths: list[Path] = []

    def __call__(self, path: Path) -> str | None:
        self.paths.append(path)
        return probe(path)


def service(
    queued: Queued,
    *,
    known: Callable[[Path], str | None] = lambda _: None,
    probes: Probes | None = None,
    events: bool = False,
    rescan_s: float = 3600,
) -> WatchService:
    async def queue(_folder: WatchedFolder, paths: list[Path]) -> None:
        queued.extend(paths)

    return WatchService(
        queue, known, rescan_s=rescan_s, tick_s=0.1, events=events, probe=probes or Probes()
    )


async def until(check: Callable[[], bool], seconds: float = 10.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("not reached in time")


@pytest.mark.xdist_group("timing")  # timed (writes 0.4 s apart): one at a time with the others
async def test_a_file_written_slowly_is_queued_only_once_it_settles(
    tmp_path: Path, tiny_video: Path
) -> None:
    library = tmp_path / "library"
    library.mkdir()
    data = tiny_video.read_bytes()
    queued: Queued = []
    watcher = service(queued, rescan_s=0.2)  # no events: every sighting is a rescan's
    watcher.add(WatchedFolder(path=str(library), settle_s=1.0))
    watcher.start()
    try:
        target = library / "film.mkv"
        chunks = 8
        step = len(data) // chunks + 1
        with target.open("wb") as out:  # 8 chunks 0.4 s apart: 2.8 s, longer than settle_s
            for start in range(0, len(data), step):
                out.write(data[start : start + step])
                out.flush()
                await asyncio.sleep(0.4)
                assert queued == [], "queued while still being written"
        await until(lambda: queued == [target], 5)
    finally:
        await watcher.stop()


async def test_a_rescan_finds_what_events_missed_and_refusals_are_remembered(
    tmp_path: Path, tiny_video: Path
) -> None:
    library = tmp_path / "library"
    (library / "season 1").mkdir(parents=True)
    good = library / "season 1" / "ep1.mkv"
    shutil.copy(tiny_video, good)
    broken = library / "broken.mp4"
    broken.write_bytes(b"not a video at all" * 100)
    for own in ("ep1.av1.mkv", ".ep1.drapto-partial-12.mkv", "notes.txt"):
        (library / own).write_bytes(b"x")
    (library / ".drapto-trash").mkdir()
    shutil.copy(tiny_video, library / ".drapto-trash" / "old.mkv")
    probes = Probes()
    queued: Queued = []
    watcher = service(queued, probes=probes)  # events off: only rescans see files
    watcher.add(WatchedFolder(path=str(library), settle_s=0))
    await watcher.step()
    assert queued == [good]
    assert sorted(probes.paths) == sorted([broken, good])
    watch = watcher.folders[str(library)]
    assert watch.decided[broken].why.startswith("is not a readable media file")
    # A later rescan probes nothing again, and queues nothing twice.
    watcher.rescan()
    await watcher.step()
    assert len(probes.paths) == 2 and queued == [good]
    # A refused file that changes is looked at again.
    shutil.copy(tiny_video, broken)
    watcher.rescan()
    await watcher.step()
    assert queued == [good, broken] and len(probes.paths) == 3
    # A deleted file is forgotten by the next rescan.
    good.unlink()
    watcher.rescan()
    await watcher.step()
    assert good not in watch.decided


async def test_known_files_and_renames_are_not_probed(tmp_path: Path, tiny_video: Path) -> None:
    library = tmp_path / "library"
    library.mkdir()
    done = library / "done.mkv"
    shutil.copy(tiny_video, done)
    probes = Probes()
    queued: Queued = []
    watcher = service(queued, probes=probes, known=lambda p: "done" if p == done else None)
    watcher.add(WatchedFolder(path=str(library), settle_s=0))
    await watcher.step()
    assert queued == [] and probes.paths == []
    shutil.copy(tiny_video, library / "new.mkv")
    watcher.rescan()
    await watcher.step()
    assert queued == [library / "new.mkv"] and len(probes.paths) == 1
    (library / "new.mkv").rename(library / "renamed.mkv")
    watcher.rescan()
    await watcher.step()
    assert queued == [library / "new.mkv"] and len(probes.paths) == 1  # a rename, not new


async def test_a_folder_that_disappears_is_missing_not_emptied(
    tmp_path: Path, tiny_video: Path
) -> None:
    disk = tmp_path / "disk"
    library = disk / "library"
    library.mkdir(parents=True)
    (library / "refused.mkv").write_bytes(b"junk" * 64)
    probes = Probes()
    queued: Queued = []
    watcher = service(queued, probes=probes)
    watcher.add(WatchedFolder(path=str(library), settle_s=0.3))
    await watcher.step()
    await asyncio.sleep(0.35)
    await watcher.step()
    watch = watcher.folders[str(library)]
    assert watch.state == FolderState.WATCHING and len(watch.decided) == 1
    shutil.copy(tiny_video, library / "copying.mkv")
    watcher.rescan()
    await watcher.step()
    assert watch.pending  # seen, not settled yet
    disk.rename(tmp_path / "unmounted")  # the disk goes away
    watcher.rescan()
    await watcher.step()
    view = watcher.views()[0]
    assert view.state == FolderState.MISSING and view.problem
    assert len(watch.decided) == 1 and len(watch.pending) == 1  # nothing forgotten
    await asyncio.sleep(0.35)
    await watcher.step()
    assert queued == []  # nothing queued from a missing folder
    (tmp_path / "unmounted").rename(disk)  # back
    await watcher.step()
    assert watcher.views()[0].state == FolderState.WATCHING
    await asyncio.sleep(0.35)
    await watcher.step()
    assert queued == [library / "copying.mkv"]
    assert len(probes.paths) == 2  # the refused file was not probed again


async def test_events_see_a_new_file_without_a_rescan(tmp_path: Path, tiny_video: Path) -> None:
    library = tmp_path / ".hidden" / "library"  # a hidden folder above the root hides nothing
    (library / "deep" / "er").mkdir(parents=True)
    queued: Queued = []
    watcher = service(queued, events=True, rescan_s=3600)
    watcher.add(WatchedFolder(path=str(library), settle_s=0.2))
    watcher.start()
    try:
        await until(lambda: watcher.views()[0].state == FolderState.WATCHING)
        await asyncio.sleep(0.5)  # the watcher thread is listening
        scanned = watcher.views()[0].last_scan
        target = library / "deep" / "er" / "film.mkv"
        shutil.copy(tiny_video, target)
        await until(lambda: queued == [target])
        assert watcher.views()[0].last_scan == scanned  # found by an event: no rescan ran
        (library / ".drapto-trash").mkdir()  # drapto's own files below the root are left
        shutil.copy(tiny_video, library / ".drapto-trash" / "old.mkv")
        shutil.copy(tiny_video, library / "film.av1.mkv")
        await asyncio.sleep(1.5)
        assert queued == [target] and watcher.views()[0].pending == 0
    finally:
        await watcher.stop()


@pytest.mark.parametrize("policy", ["folder:OUT"])
async def test_a_folder_output_below_the_root_is_not_watched(
    tmp_path: Path, tiny_video: Path, policy: str
) -> None:
    library = tmp_path / "library"
    (library / "av1").mkdir(parents=True)
    shutil.copy(tiny_video, library / "av1" / "film.mkv")
    queued: Queued = []
    watcher = service(queued)
    folder = policy.replace("OUT", str(library / "av1"))
    watcher.add(WatchedFolder(path=str(library), settle_s=0, output=folder))
    await watcher.step()
    assert queued == []
    watcher.folders[str(library)].seen(library / "av1" / "film.mkv")  # as an event says
    shutil.copy(tiny_video, library / "film.mkv")  # beside it, a real new file
    os.utime(library / "av1" / "film.mkv")
    watcher.rescan()
    await watcher.step()
    assert queued == [library / "film.mkv"]


def test_a_file_that_grew_unseen_starts_its_wait_over(tmp_path: Path, tiny_video: Path) -> None:
    """No event and no rescan saw the growth: the check before queuing does."""
    library = tmp_path / "library"
    library.mkdir()
    target = library / "film.mkv"
    data = tiny_video.read_bytes()
    target.write_bytes(data[:1000])
    watch = FolderWatch(WatchedFolder(path=str(library), settle_s=0.3))
    watch.rescan()
    assert list(watch.pending) == [target]
    with target.open("ab") as out:
        out.write(data[1000:])
    time.sleep(0.35)
    assert watch.settled() == []  # grew: waits again
    time.sleep(0.35)
    assert watch.settled() == [target]
