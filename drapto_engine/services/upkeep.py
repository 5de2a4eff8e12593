"""What the engine does for the library beside its jobs: at its start it finishes the
replaces a killed process left and empties the trash of originals past their keep_days;
while it runs it empties the trash every hour and sends the daily summary when due
(checked every minute, so a failed send is tried again a minute later)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from drapto_engine.infrastructure.background import BackgroundTask
from drapto_engine.services.daily_summary import DailySummary
from drapto_engine.services.replace import Replacer

log = logging.getLogger(__name__)

CHECK_S = 60.0
"""How often the daily summary is looked at."""
TRASH_EVERY_S = 3600.0
"""How often the trash is emptied of originals past their keep_days while the engine runs."""


class Upkeep:
    def __init__(
        self,
        replacer: Replacer,
        warn: Callable[[str], None],
        summary: DailySummary | None = None,
        *,
        check_s: float = CHECK_S,
        trash_every_s: float = TRASH_EVERY_S,
    ) -> None:
        self.replacer = replacer
        self.warn = warn
        self.summary = summary
        self.check_s = check_s
        self.trash_every_s = trash_every_s
        self._task = BackgroundTask(self._forever, "library-upkeep")

    async def start(self) -> None:
        """Finish half-done replaces and empty the trash, then keep at it in the background."""
        for problem in await asyncio.to_thread(self.replacer.recover):
            self.warn(f"an unfinished replace could not be finished: {problem}")
        await self._empty_trash()
        self._task.start()

    async def stop(self) -> None:
        await self._task.stop()

    async def _empty_trash(self) -> None:
        try:
            deleted = await asyncio.to_thread(self.replacer.empty_trash)
        except OSError as exc:
            self.warn(f"the trash could not be emptied: {exc}")
            return
        for path in deleted:
            log.info("deleted from the trash after keep_days: %s", path)

    async def _forever(self) -> None:
        emptied = time.monotonic()
        while True:
            await asyncio.sleep(self.check_s)
            if time.monotonic() - emptied >= self.trash_every_s:
                emptied = time.monotonic()
                await self._empty_trash()
            if self.summary is not None:
                error = await self.summary.send_if_due()
                if error is not None:
                    self.warn(f"the daily summary could not be sent: {error}")
