"""The daily summary of the space saved, sent to notify_url at `notify_daily` (config.py).

It is due once a local day, at or after the configured time; the day it was last sent is
kept in the state database (meta `savings_summary_day`), so an engine restarted the same
day does not send it twice, and one started after the time sends that day's at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from drapto_engine.core.savings import saved_text
from drapto_engine.infrastructure.savings import SavingsStore

SENT_KEY = "savings_summary_day"
DAY_S = 86400.0


class Meta(Protocol):
    """Where the day last sent is kept (the queue store's meta values)."""

    def get_meta(self, key: str) -> str | None: ...
    def set_meta(self, key: str, value: str) -> None: ...


Send = Callable[[str, str], Awaitable[str | None]]
"""(title, message) -> None once sent, else why not (infrastructure/notify.py)."""


class DailySummary:
    def __init__(
        self,
        savings: SavingsStore,
        meta: Meta,
        at: tuple[int, int],
        send: Send,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.savings = savings
        self.meta = meta
        self.at = at
        self.send = send
        self.clock = clock

    def due(self) -> bool:
        now = time.localtime(self.clock())
        if (now.tm_hour, now.tm_min) < self.at:
            return False
        return self.meta.get_meta(SENT_KEY) != time.strftime("%Y-%m-%d", now)

    def message(self) -> str:
        """`Last 24 hours: 2 files, ... saved ...` then the same in total."""
        day = self.savings.report(since=self.clock() - DAY_S).total
        total = self.savings.report().total
        last = saved_text(day) if day.files else "nothing encoded"
        return f"Last 24 hours: {last}.\nIn total: {saved_text(total)}."

    async def send_if_due(self) -> str | None:
        """Send the summary when it is due; None when sent or not due, else why it failed
        (it is tried again at the next check)."""
        if not await asyncio.to_thread(self.due):
            return None
        message = await asyncio.to_thread(self.message)
        error = await self.send("drapto: space saved today", message)
        if error is None:
            day = time.strftime("%Y-%m-%d", time.localtime(self.clock()))
            await asyncio.to_thread(self.meta.set_meta, SENT_KEY, day)
        return error
