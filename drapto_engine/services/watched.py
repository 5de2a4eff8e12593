"""The engine's watched folders: those of `[[watch]]` tables and those `drapto watch add`
added, kept in the state store's meta table across restarts, with what is remembered
about their files (refusals, AV1 sources) so that a restart probes nothing again."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from typing import Protocol

from drapto_engine.core.errors import DraptoError, UsageError
from drapto_engine.core.watching import WatchedFolder, WatchView
from drapto_engine.services.watch import (
    DEFAULT_RESCAN_S,
    Known,
    Queue,
    WatchService,
    decisions_from,
    decisions_json,
)

log = logging.getLogger(__name__)

FOLDERS_KEY = "watch_folders"
"""Meta key: the folders `drapto watch add` added (a JSON list of WatchedFolder)."""
DECISIONS_KEY = "watch_decisions"
"""Meta key: per folder, the files not queued and why, with their size and time."""
SAVE_EVERY_S = 30.0
"""Remembered decisions are written at most this often (and when the engine stops)."""


class Meta(Protocol):
    """The state store's meta table (QueueStore)."""

    def get_meta(self, key: str) -> str | None: ...
    def set_meta(self, key: str, value: str) -> None: ...


class WatchedFolders:
    """The folders an engine watches and the service watching them."""

    def __init__(
        self,
        meta: Meta | None,
        configured: list[WatchedFolder],
        queue: Queue,
        known: Known,
        *,
        rescan_s: float = DEFAULT_RESCAN_S,
        events: bool = True,
        changed: Callable[[WatchView], None] | None = None,
    ) -> None:
        self._meta = meta
        self._configured = {folder.path: folder for folder in configured}
        self._added: dict[str, WatchedFolder] = {}
        self._saved_at = 0.0
        self.service = WatchService(
            queue, known, rescan_s=rescan_s, events=events, changed=self._changed
        )
        self._on_change = changed
        self._load()

    def _load(self) -> None:
        added: list[WatchedFolder] = []
        decisions: dict[str, list[list[object]]] = {}
        if self._meta is not None:
            try:
                added = [
                    WatchedFolder.model_validate(item)
                    for item in json.loads(self._meta.get_meta(FOLDERS_KEY) or "[]")
                ]
                decisions = json.loads(self._meta.get_meta(DECISIONS_KEY) or "{}")
            except (ValueError, TypeError) as exc:  # damaged: the folders' own files say more
                log.warning("stored watched folders unreadable, ignored: %s", exc)
        self._added = {f.path: f for f in added if f.path not in self._configured}
        for folder in [*self._configured.values(), *self._added.values()]:
            rows = decisions.get(folder.path)
            self.service.add(folder, decisions_from(rows) if isinstance(rows, list) else None)

    def _changed(self, view: WatchView) -> None:
        if time.monotonic() - self._saved_at >= SAVE_EVERY_S:
            self.save_decisions()
        if self._on_change is not None:
            self._on_change(view)

    def save_decisions(self) -> None:
        self._saved_at = time.monotonic()
        if self._meta is not None:
            data = decisions_json(self.service.folders.values())
            self._meta.set_meta(DECISIONS_KEY, json.dumps(data))

    def _save_folders(self) -> None:
        if self._meta is not None:
            data = [f.model_dump(mode="json") for f in self._added.values()]
            self._meta.set_meta(FOLDERS_KEY, json.dumps(data))

    # --- the API's calls ----------------------------------------------------------

    def add(self, path: str, output: str, settle_s: float | None) -> WatchView:
        folder_path = os.path.normpath(path)
        if folder_path in self._configured:
            raise UsageError("is watched already, by a [[watch]] table in config.toml", path)
        if not os.path.isdir(folder_path):
            raise DraptoError(
                "no such folder" if not os.path.exists(folder_path) else "is not a folder", path
            )
        for other in self.service.folders:
            if other != folder_path and (
                folder_path.startswith(other + os.sep) or other.startswith(folder_path + os.sep)
            ):
                raise UsageError(f"is inside or around a watched folder, {other}", path)
        settle = {} if settle_s is None else {"settle_s": settle_s}
        folder = WatchedFolder(path=folder_path, output=output, **settle)
        self._added[folder_path] = folder
        self._save_folders()
        old = self.service.folders.get(folder_path)
        self.service.add(folder, old.decided if old is not None else None)
        return self.service.folders[folder_path].view()

    async def remove(self, path: str) -> bool:
        folder_path = os.path.normpath(path)
        if folder_path in self._configured:
            raise UsageError("is watched by a [[watch]] table: remove it from config.toml", path)
        if folder_path not in self._added:
            return False
        del self._added[folder_path]
        self._save_folders()
        await self.service.remove(folder_path)
        self.save_decisions()
        return True

    def rescan(self, path: str | None) -> list[WatchView]:
        if path is None:
            self.service.rescan()
            return self.service.views()
        folder_path = os.path.normpath(path)
        if folder_path not in self.service.folders:
            return []
        self.service.rescan(folder_path)
        return [self.service.folders[folder_path].view()]

    def views(self) -> list[WatchView]:
        return self.service.views()

    def start(self) -> None:
        self.service.start()

    async def stop(self) -> None:
        await self.service.stop()
        self.save_decisions()
