"""A recorded engine state, served without an engine, for snapshot tests only.

`fixtures/encoding.json` is what a real session showed mid-encode (saved by
`python tools/screenshots.py --fixture`). A screenshot of a live engine changes
every run; this one does not. Requests that would change it are refused.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from drapto_engine.core.api import APICall, EngineSnapshot, ForwardsEngineAPI
from drapto_engine.core.errors import DraptoError
from drapto_engine.core.events import Event
from drapto_engine.core.flags import FlagView
from drapto_engine.core.savings import SavingsReport

FIXTURE = Path(__file__).with_name("fixtures") / "encoding.json"


class ReplayClient(ForwardsEngineAPI):
    """The recording, with every EngineAPI call: the reads answer from it, the calls
    that would change it are refused (derived from the declaration)."""

    def __init__(self, snapshot: EngineSnapshot | None = None) -> None:
        self.snapshot = snapshot or EngineSnapshot.model_validate_json(FIXTURE.read_text())
        self.savings = SavingsReport()
        """What get_savings answers (nothing saved, unless a test says)."""
        self.script: asyncio.Queue[Event] = asyncio.Queue()
        """Events a test plays after the recording, as the engine would send them."""

    async def subscribe(self) -> EngineSnapshot:
        return self.snapshot.model_copy(deep=True)

    async def events(self) -> AsyncIterator[Event]:
        while True:  # a recording has no more events than a test plays
            yield await self.script.get()

    def play(self, *events: Event) -> None:
        for event in events:
            self.script.put_nowait(event)

    async def close(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None

    def _refuse(self) -> DraptoError:
        return DraptoError("this is a recorded engine state: it cannot change")

    async def forward(self, call: APICall, arguments: dict[str, Any]) -> Any:
        """Every declared call not written here would change the state: refused."""
        raise self._refuse()

    async def get_config(self) -> dict[str, Any]:
        return {}

    async def get_flags(self) -> list[FlagView]:
        return list(self.snapshot.flags)

    async def get_savings(self) -> SavingsReport:
        return self.savings

    async def get_snapshot(self) -> EngineSnapshot:
        return self.snapshot.model_copy(deep=True)
