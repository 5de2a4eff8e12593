"""Leaving drapto alone with a library: the watched folders and the encode schedule of one
engine, behind the calls its API declares (`watch_*`, `get_schedule`,
`override_schedule`). The engine gives it its queue (to add to and to ask what it has),
its resource manager (to hold) and its event bus (to tell clients)."""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from drapto_engine.core.errors import UsageError
from drapto_engine.core.events import (
    Event,
    ScheduleChanged,
    WarningEvent,
    WatchChanged,
    WatchRemoved,
)
from drapto_engine.core.jobs import JobOptions
from drapto_engine.core.schedule import Schedule, ScheduleView
from drapto_engine.core.watching import (
    FolderState,
    WatchedFolder,
    WatchView,
    check_policy,
    job_options,
)
from drapto_engine.infrastructure.resources import ResourceManager
from drapto_engine.services.library import output_path
from drapto_engine.services.outputs import named_outputs
from drapto_engine.services.pacing import Pacer
from drapto_engine.services.watch import DEFAULT_RESCAN_S, Known
from drapto_engine.services.watched import Meta, WatchedFolders

log = logging.getLogger(__name__)

AddFiles = Callable[[list[tuple[Path, Path]], JobOptions], Awaitable[object]]
"""Queues (input, output) pairs with the options of the folder they were found in."""


class Household:
    def __init__(
        self,
        resources: ResourceManager,
        emit: Callable[[Event], None],
        add_files: AddFiles,
        known: Known,
        *,
        meta: Meta | None,
        watches: Sequence[WatchedFolder] = (),
        rescan_s: float = DEFAULT_RESCAN_S,
        schedule: Schedule | None = None,
        yield_cpu: float | None = None,
        yield_hold_s: float = 30.0,
        events: bool = True,
        waiting: Callable[[], int] | None = None,
    ) -> None:
        self._emit = emit
        self._add_files = add_files
        self._states: dict[str, FolderState] = {}
        self._known = known
        self.folders = WatchedFolders(
            meta,
            list(watches),
            self._queue,
            self._known_or_done,
            rescan_s=rescan_s,
            events=events,
            changed=self._watch_changed,
        )
        self.pacer = Pacer(
            resources,
            schedule or Schedule(),
            yield_cpu=yield_cpu,
            yield_hold_s=yield_hold_s,
            changed=lambda view: emit(ScheduleChanged(view=view)),
            waiting=waiting,
        )

    def _watch_changed(self, view: WatchView) -> None:
        """Tell clients; a folder that went missing or came back is a warning too."""
        path = view.folder.path
        before = self._states.get(path)
        self._states[path] = view.state
        if view.state == FolderState.MISSING and before != FolderState.MISSING:
            self._emit(WarningEvent(message=f"{path}: watched folder is missing ({view.problem})"))
        elif before == FolderState.MISSING and view.state == FolderState.WATCHING:
            self._emit(WarningEvent(message=f"{path}: watched folder is back; watching it again"))
        self._emit(WatchChanged(view=view))

    def _folder(self, path: Path) -> WatchedFolder | None:
        text = str(path)
        for root, watch in self.folders.service.folders.items():
            if text.startswith(root + os.sep):
                return watch.folder
        return None

    @staticmethod
    def _output(folder: WatchedFolder, path: Path) -> Path:
        options = job_options(folder.output, Path(folder.path))
        return output_path(path, options.output_dir, root=Path(folder.path))

    def _known_or_done(self, path: Path) -> str | None:
        """Why the engine has this file already, or that its output exists (no probe)."""
        why = self._known(path)
        if why is not None:
            return why
        folder = self._folder(path)
        if folder is not None and self._output(folder, path).exists():
            return "its output exists"
        return None

    async def _queue(self, folder: WatchedFolder, paths: list[Path]) -> None:
        options = job_options(folder.output, Path(folder.path), folder.min_saving, folder.keep_days)
        pairs, refused = named_outputs([(path, self._output(folder, path)) for path in paths])
        for source, _output, why in refused:
            log.warning("watched file %s not queued: %s", source, why)
        if pairs:
            await self._add_files(pairs, options)

    def start(self) -> None:
        self.folders.start()
        self.pacer.start()

    async def stop(self) -> None:
        await self.folders.stop()
        await self.pacer.stop()

    # --- the API's calls ----------------------------------------------------------

    async def watch_add(self, path: str, output: str, settle_s: float | None) -> WatchView:
        try:
            policy = check_policy(output)
        except ValueError as exc:
            raise UsageError(str(exc), "--output") from None
        view = self.folders.add(path, policy, settle_s)
        self._emit(WatchChanged(view=view))
        return view

    async def watch_remove(self, path: str) -> bool:
        removed = await self.folders.remove(path)
        if removed:
            self._emit(WatchRemoved(path=str(Path(path))))
        return removed

    def watch_list(self) -> list[WatchView]:
        return self.folders.views()

    def watch_rescan(self, path: str | None) -> list[WatchView]:
        return self.folders.rescan(path)

    async def get_schedule(self, waiting: int) -> ScheduleView:
        return await self.pacer.update(waiting)

    async def override_schedule(self, on: bool, waiting: int) -> ScheduleView:
        self.pacer.waiting = waiting
        return await self.pacer.set_override(on)
