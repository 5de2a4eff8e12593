"""An async iterator that runs ahead of its consumer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class _Item(Generic[T]):
    value: T


@dataclass(frozen=True)
class _Failed:
    error: Exception


class _End:
    pass


class Prefetch(AsyncIterator[T]):
    """Pulls `source` from the moment it is made, whether or not anyone reads yet.

    Items wait in an unbounded queue, so make it only over a source that yields little
    (a segment plan, not frames). An exception in `source` reaches the consumer at the
    point where it happened. `aclose()` stops the source (it is cancelled) and must be
    called when the consumer stops early.
    """

    def __init__(self, source: AsyncIterator[T]) -> None:
        self._queue: asyncio.Queue[_Item[T] | _Failed | _End] = asyncio.Queue()
        self._done = False
        self._task = asyncio.create_task(self._pump(source))

    async def _pump(self, source: AsyncIterator[T]) -> None:
        try:
            async for item in source:
                self._queue.put_nowait(_Item(item))
        except Exception as exc:  # handed to the consumer; cancellation is not
            self._queue.put_nowait(_Failed(exc))
        else:
            self._queue.put_nowait(_End())

    def __aiter__(self) -> Prefetch[T]:
        return self

    async def __anext__(self) -> T:
        if self._done:
            raise StopAsyncIteration
        entry = await self._queue.get()
        if isinstance(entry, _Item):
            return entry.value
        self._done = True
        if isinstance(entry, _Failed):
            raise entry.error
        raise StopAsyncIteration

    async def aclose(self) -> None:
        self._done = True
        self._task.cancel()
        # The source's own cancellation is returned, not raised; ours still is.
        await asyncio.gather(self._task, return_exceptions=True)
