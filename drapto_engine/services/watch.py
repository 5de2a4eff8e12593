"""Watched folders: new videos are queued once they have settled and open as media.

Two ways of seeing a file, because neither is enough alone: `watchfiles` (inotify and
its kin) tells about a change at once, and a periodic rescan (`os.scandir`, one stat a
file, compared with the size and modification time remembered for each path) finds
what the first missed: network mounts (NFS, SMB) send no events, and an event queue
overflows. Either way a file only becomes *pending*.

A pending file is decided once its size and modification time have been seen the same
`settle_s` apart (a file still being written, however slowly, changes one of them):

- a path the engine knows (in the queue, done, or the output of a finished entry) or a
  rename of a file already decided (same inode, size and time): remembered, not probed;
- otherwise one cheap probe (the container's header): not media, or AV1 already, is
  remembered with its size and time, so no rescan probes it again until it changes;
- otherwise it is queued.

A watched folder that is not there (an unmounted disk) is *missing*: nothing it held is
forgotten, and it is watched again when it comes back. drapto's own files are never
candidates: `*.av1.mkv` outputs, hidden names (partial files, `.drapto-work-*` and
`.drapto-trash/`), and anything in a `folder:` output below the root.

Blocking work (a rescan, a probe) runs in a thread; the clock is injectable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from drapto_engine.core.names import OUTPUT_SUFFIX, VIDEO_EXTENSIONS
from drapto_engine.core.watching import FolderState, WatchedFolder, WatchView
from drapto_engine.services.library import ALREADY_AV1, is_av1, is_video_file

log = logging.getLogger(__name__)

DEFAULT_RESCAN_S = 600.0
"""Seconds between full rescans of every watched folder."""
TICK_S = 1.0
"""How often settled files are looked for and a missing folder is checked for."""

Stamp = tuple[int, int]
"""A file's size and modification time (ns): what says it has not changed."""


@dataclass
class _Pending:
    stamp: Stamp
    since: float
    """Clock time the stamp was first seen as it is."""


@dataclass
class Decision:
    """Why a settled file was not queued, kept with its stamp: a rescan that finds the
    same stamp leaves it alone."""

    stamp: Stamp
    inode: int
    why: str


Known = Callable[[Path], str | None]
"""Why the engine already has this path (queued, done, an output), or None; called on
the event loop (it may read the engine's queue)."""
Probe = Callable[[Path], str | None]
"""Why a settled file is not to be encoded (not media, AV1 already), or None."""


def probe(path: Path) -> str | None:
    """The cheap probe of a settled file: its header only."""
    why = is_video_file(path)
    if why is not None:
        return why
    return ALREADY_AV1 if is_av1(path) else None


def _is_candidate(name: str) -> bool:
    lower = name.lower()
    if lower.startswith(".") or lower.endswith(OUTPUT_SUFFIX):
        return False
    return os.path.splitext(lower)[1] in VIDEO_EXTENSIONS


@dataclass(frozen=True)
class Walk:
    """What one walk of a folder found: each candidate's stamp and inode, the folders
    that could not be read (their files are not forgotten), and how long it took."""

    found: dict[Path, tuple[Stamp, int]]
    unreadable: list[str]
    seconds: float


@dataclass
class FolderWatch:
    """One watched folder's bookkeeping, driven by rescans, events and ticks.

    Pure of threads and tasks: `rescan` walks the disk (call it in a thread), `seen` and
    `gone` take events, `settled` says which pending files are due and `decide` decides
    one. `decisions` is what to persist (why each remembered file is not queued)."""

    folder: WatchedFolder
    clock: Callable[[], float] = time.monotonic
    pending: dict[Path, _Pending] = field(default_factory=dict)
    decided: dict[Path, Decision] = field(default_factory=dict)
    vanished: dict[tuple[int, Stamp], Decision] = field(default_factory=dict)
    """Decisions about files the last rescan missed, by inode and stamp: the same file
    under a new name (a rename) keeps its decision."""
    state: FolderState = FolderState.STARTING
    last_scan: float | None = None
    last_scan_s: float | None = None
    queued: int = 0
    problem: str | None = None
    _earliest: float = float("inf")
    """No pending file was first seen before this: until settle_s after it, none is due."""

    @property
    def root(self) -> Path:
        return Path(self.folder.path)

    def _skipped_roots(self) -> list[str]:
        output = self.folder.output
        if output.startswith("folder:"):
            return [os.path.abspath(output.removeprefix("folder:"))]
        return []

    def view(self) -> WatchView:
        return WatchView(
            folder=self.folder,
            state=self.state,
            pending=len(self.pending),
            queued=self.queued,
            last_scan=self.last_scan,
            last_scan_s=self.last_scan_s,
            problem=self.problem,
        )

    def present(self) -> bool:
        """Whether the root is there; marks the folder missing or watching."""
        try:
            there = stat.S_ISDIR(os.stat(self.root).st_mode)
        except OSError:
            there = False
        if not there:
            if self.state != FolderState.MISSING:
                log.warning("watched folder %s is missing", self.root)
            self.state = FolderState.MISSING
            self.problem = "missing: not there or not mounted"
        elif self.state == FolderState.MISSING:
            log.info("watched folder %s is back", self.root)
            self.state, self.problem = FolderState.WATCHING, None
        return there

    def rescan(self) -> int:
        """Walk the folder and compare with what is remembered: new and changed files
        become pending, vanished ones are forgotten. Nothing happens to a missing
        folder. The number of files looked at. (The service walks in a thread and
        merges on its loop, where events change the same maps: `walk`, `merge`.)"""
        walked = self.walk()
        return self.merge(walked) if walked is not None else 0

    def walk(self) -> Walk | None:
        """The candidate files under the root, with the folders that could not be read;
        None for a missing folder. Blocking, and touches nothing of this object's."""
        began = time.monotonic()
        if not self.present():
            return None
        found: dict[Path, tuple[Stamp, int]] = {}
        unreadable: list[str] = []
        skipped = self._skipped_roots()
        pending = [str(self.root)]
        while pending:
            current = pending.pop()
            try:
                with os.scandir(current) as entries:
                    for entry in entries:
                        name = entry.name
                        if name.startswith("."):
                            continue
                        try:
                            if entry.is_dir(follow_symlinks=False):
                                if entry.path not in skipped:
                                    pending.append(entry.path)
                                continue
                            if not _is_candidate(name):
                                continue
                            info = entry.stat()
                        except OSError:
                            continue
                        if stat.S_ISREG(info.st_mode):
                            found[Path(entry.path)] = (
                                (info.st_size, info.st_mtime_ns),
                                info.st_ino,
                            )
            except OSError:
                unreadable.append(current + os.sep)
        if not self.present():  # gone while walking: keep everything
            return None
        return Walk(found, unreadable, time.monotonic() - began)

    def merge(self, walked: Walk) -> int:
        """Take a walk's findings in (see `rescan`)."""
        self._merge(walked.found, walked.unreadable)
        if self.state == FolderState.STARTING:
            self.state = FolderState.WATCHING
        self.last_scan = time.time()
        self.last_scan_s = walked.seconds
        return len(walked.found)

    def _merge(self, found: dict[Path, tuple[Stamp, int]], unreadable: list[str]) -> None:
        now = self.clock()

        def kept(path: Path) -> bool:  # not seen, but under a folder that could not be read
            text = str(path)
            return any(text.startswith(folder) for folder in unreadable)

        for path in [p for p in self.pending if p not in found and not kept(p)]:
            del self.pending[path]
        self.vanished = {}
        for path in [p for p in self.decided if p not in found and not kept(p)]:
            gone = self.decided.pop(path)
            self.vanished[(gone.inode, gone.stamp)] = gone
        for path, (stamp, _inode) in found.items():
            decision = self.decided.get(path)
            if decision is not None and decision.stamp == stamp:
                continue
            self._note(path, stamp, now)

    def _note(self, path: Path, stamp: Stamp, now: float) -> None:
        self.decided.pop(path, None)
        waiting = self.pending.get(path)
        if waiting is None or waiting.stamp != stamp:
            self.pending[path] = _Pending(stamp, now)
            self._earliest = min(self._earliest, now)

    def seen(self, path: Path) -> None:
        """An event says `path` was added or changed."""
        try:
            below = path.relative_to(self.root).parts  # the root itself may be hidden
        except ValueError:
            return
        if not _is_candidate(path.name) or any(p.startswith(".") for p in below):
            return
        if any(str(path).startswith(root + os.sep) for root in self._skipped_roots()):
            return
        stamp = _stamp(path)
        if stamp is None:
            self.gone(path)
            return
        decision = self.decided.get(path)
        if decision is None or decision.stamp != stamp:
            self._note(path, stamp, self.clock())

    def gone(self, path: Path) -> None:
        """An event says `path` was deleted or renamed away: a pending file is forgotten
        (what was decided stays until a rescan of a present folder misses it)."""
        self.pending.pop(path, None)

    def settled(self) -> list[Path]:
        """Pending files whose stamp is unchanged `settle_s` after it was first seen:
        each is stat'ed again now, so a file still growing starts its wait over."""
        now = self.clock()
        due: list[Path] = []
        if not self.pending or now - self._earliest < self.folder.settle_s:
            return due  # nothing can be due yet: no walk over a big pending map each tick
        self._earliest = now
        for path, waiting in list(self.pending.items()):
            if now - waiting.since < self.folder.settle_s:
                self._earliest = min(self._earliest, waiting.since)
                continue
            stamp = _stamp(path)
            if stamp is None:
                del self.pending[path]
            elif stamp != waiting.stamp:
                self.pending[path] = _Pending(stamp, now)
                self._earliest = min(self._earliest, now)
            else:
                due.append(path)
        return due

    def renamed_from(self, path: Path) -> Decision | None:
        """A decision about the same file under another name (a rename keeps the inode,
        size and time)."""
        try:
            info = path.stat()
        except OSError:
            return None
        stamp = (info.st_size, info.st_mtime_ns)
        moved = self.vanished.get((info.st_ino, stamp))
        if moved is not None:
            return moved
        for other, decision in list(self.decided.items()):  # events change it meanwhile
            if other != path and decision.inode == info.st_ino and decision.stamp == stamp:
                return decision
        return None

    def decide(self, path: Path, known: str | None, probe: Probe) -> bool:
        """Decide a settled file, `known` saying why the engine has it already (or
        None): True to queue it. Blocking (it may probe)."""
        waiting = self.pending.pop(path, None)
        if waiting is None:
            return False
        inode = _inode(path)
        why = known
        if why is None:
            earlier = self.renamed_from(path)
            why = earlier.why if earlier is not None else None
        if why is None:
            why = probe(path)
        if why is not None:
            self.decided[path] = Decision(waiting.stamp, inode, why)
            return False
        self.decided[path] = Decision(waiting.stamp, inode, "queued")
        self.queued += 1
        return True


def _stamp(path: Path) -> Stamp | None:
    try:
        info = path.stat()
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    return (info.st_size, info.st_mtime_ns)


def _inode(path: Path) -> int:
    try:
        return path.stat().st_ino
    except OSError:
        return 0


Queue = Callable[[WatchedFolder, list[Path]], Awaitable[None]]
"""Puts settled files of a watched folder in the engine's queue."""


class WatchService:
    """Every watched folder of one engine: the event watchers, the ticks and the rescans.

    `queue` gets each settled batch of files; `changed` is called when a folder's view
    changes (an engine publishes it). `events=False` leaves watchfiles out (tests of the
    rescan alone, and mounts where it cannot work)."""

    def __init__(
        self,
        queue: Queue,
        known: Known,
        *,
        rescan_s: float = DEFAULT_RESCAN_S,
        tick_s: float = TICK_S,
        events: bool = True,
        probe: Probe = probe,
        changed: Callable[[WatchView], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._queue = queue
        self._known = known
        self._probe = probe
        self._changed = changed
        self._clock = clock
        self.rescan_s = rescan_s
        self.tick_s = tick_s
        self.events = events
        self.folders: dict[str, FolderWatch] = {}
        self._watchers: dict[str, tuple[asyncio.Task[None], asyncio.Event]] = {}
        self._loop: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._rescan_now: set[str] = set()
        self._stopping = False
        self._reported: dict[str, WatchView] = {}

    # --- folders ------------------------------------------------------------------

    def add(self, folder: WatchedFolder, decided: dict[Path, Decision] | None = None) -> None:
        watch = FolderWatch(folder, clock=self._clock, decided=dict(decided or {}))
        self.folders[folder.path] = watch
        self._rescan_now.add(folder.path)
        self._wake.set()

    async def remove(self, path: str) -> bool:
        watch = self.folders.pop(path, None)
        await self._stop_watcher(path)
        return watch is not None

    async def _stop_watcher(self, path: str) -> None:
        """End a folder's event watcher: its thread sees the stop event within a step
        (watchfiles waits for the thread, so a plain cancel would wait for its timeout)."""
        running = self._watchers.pop(path, None)
        if running is not None:
            task, stop = running
            stop.set()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def rescan(self, path: str | None = None) -> None:
        """Ask for a rescan of one folder (or all) at the next tick."""
        self._rescan_now.update([path] if path is not None else self.folders)
        self._wake.set()

    def views(self) -> list[WatchView]:
        return [watch.view() for watch in self.folders.values()]

    # --- running ------------------------------------------------------------------

    def start(self) -> None:
        if self._loop is None or self._loop.done():
            self._loop = asyncio.create_task(self._run(), name="drapto-watch")

    async def stop(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None:  # the flag too: a cancel that meets a wake-up can be lost
            self._stopping = True
            self._wake.set()
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop
            self._stopping = False
        for path in list(self._watchers):
            await self._stop_watcher(path)

    async def _run(self) -> None:
        next_rescan = self._clock() + self.rescan_s
        while not self._stopping:
            if self._clock() >= next_rescan:
                self._rescan_now.update(self.folders)
                next_rescan = self._clock() + self.rescan_s
            try:
                await self.step()
            except Exception:  # a watcher never takes the engine down: log, go on
                log.exception("watching failed; trying again at the next tick")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.tick_s):
                    await self._wake.wait()

    async def step(self) -> None:
        """One tick: rescans asked for, missing folders, event watchers, settled files."""
        asked, self._rescan_now = self._rescan_now, set()
        for path, watch in list(self.folders.items()):
            last = self._reported.get(path)
            was_missing = watch.state == FolderState.MISSING or (
                last is not None and last.state == FolderState.MISSING
            )
            if path in asked:
                await self._rescan(watch)
            else:  # in a thread: a hung network mount blocks a stat, not the engine
                await asyncio.to_thread(watch.present)
            if watch.state == FolderState.MISSING:
                await self._stop_watcher(path)
            if watch.state == FolderState.WATCHING:
                self._ensure_watcher(watch)
                if was_missing and path not in asked:
                    await self._rescan(watch)  # back: catch up at once
            due = await asyncio.to_thread(watch.settled) if watch.pending else []
            known = [(file, self._known(file)) for file in due]  # on the loop: the queue's own
            ready = await asyncio.to_thread(self._decide_all, watch, known) if due else []
            if ready and self.folders.get(path) is watch:
                await self._queue(watch.folder, ready)
            view = watch.view()
            if self._changed is not None and view != self._reported.get(path):
                self._reported[path] = view  # against what was said last: events change it too
                self._changed(view)

    @staticmethod
    async def _rescan(watch: FolderWatch) -> None:
        """Walk in a thread; merge here, on the loop, where events change the same maps."""
        walked = await asyncio.to_thread(watch.walk)
        if walked is not None:
            watch.merge(walked)

    def _decide_all(self, watch: FolderWatch, due: list[tuple[Path, str | None]]) -> list[Path]:
        """Decide settled files in one thread hop (an import of thousands settles at once)."""
        return [path for path, known in due if watch.decide(path, known, self._probe)]

    def _ensure_watcher(self, watch: FolderWatch) -> None:
        if not self.events:
            return
        running = self._watchers.get(watch.folder.path)
        if running is None or running[0].done():
            stop = asyncio.Event()
            task = asyncio.create_task(
                self._watch_events(watch, stop), name=f"drapto-watch-events {watch.root}"
            )
            self._watchers[watch.folder.path] = (task, stop)

    async def _watch_events(self, watch: FolderWatch, stop: asyncio.Event) -> None:
        """watchfiles' events for one folder until it goes missing (the tick restarts it
        when the folder is back)."""
        from watchfiles import Change, awatch

        try:
            async for changes in awatch(
                watch.root,
                watch_filter=None,
                recursive=True,
                step=500,
                stop_event=stop,
                rust_timeout=0,
                yield_on_timeout=False,
                ignore_permission_denied=True,
            ):
                current = self.folders.get(watch.folder.path)
                if current is None:
                    return  # no longer watched
                for change, name in changes:  # to the folder's watch as it is now (re-added)
                    path = Path(name)
                    if change == Change.deleted:
                        current.gone(path)
                    else:
                        current.seen(path)
                self._wake.set()
                if not os.path.isdir(current.root):  # gone: the tick says so, and restarts this
                    return
        except (OSError, RuntimeError) as exc:  # the folder went away under the watcher
            log.info("events for %s stopped: %s", watch.root, exc)


def decisions_json(folders: Iterable[FolderWatch]) -> dict[str, list[list[object]]]:
    """What is remembered about each folder's files, to store between runs."""
    return {
        watch.folder.path: [
            [str(path), d.stamp[0], d.stamp[1], d.inode, d.why]
            for path, d in watch.decided.items()
            if d.why != "queued"  # the engine's queue remembers those
        ]
        for watch in folders
    }


def decisions_from(rows: list[list[object]]) -> dict[Path, Decision]:
    """`decisions_json`'s rows for one folder back as decisions (bad rows left out)."""
    found: dict[Path, Decision] = {}
    for row in rows:
        match row:
            case [str(path), int(size), int(mtime), int(inode), str(why)]:
                found[Path(path)] = Decision((size, mtime), inode, why)
    return found
