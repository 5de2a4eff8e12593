"""Prefetch: an async iterator that pulls its source before anyone reads it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from drapto_engine.infrastructure.prefetch import Prefetch


async def test_source_runs_before_the_consumer_reads() -> None:
    pulled: list[int] = []
    exhausted = asyncio.Event()

    async def source() -> AsyncIterator[int]:
        for i in range(3):
            pulled.append(i)
            yield i
        exhausted.set()  # runs only when a fourth item is asked for

    ahead = Prefetch(source())
    await asyncio.wait_for(exhausted.wait(), 5)  # nobody has read yet
    assert pulled == [0, 1, 2]
    assert [i async for i in ahead] == [0, 1, 2]
    with pytest.raises(StopAsyncIteration):
        await ahead.__anext__()
    await ahead.aclose()


async def test_an_error_reaches_the_consumer_after_the_items_before_it() -> None:
    async def source() -> AsyncIterator[int]:
        yield 1
        raise ValueError("scan failed")

    ahead = Prefetch(source())
    assert await ahead.__anext__() == 1
    with pytest.raises(ValueError, match="scan failed"):
        await ahead.__anext__()
    with pytest.raises(StopAsyncIteration):
        await ahead.__anext__()


async def test_aclose_cancels_a_source_still_running() -> None:
    closed = asyncio.Event()

    async def source() -> AsyncIterator[int]:
        try:
            yield 1
            await asyncio.sleep(60)
            yield 2
        finally:
            closed.set()

    ahead = Prefetch(source())
    assert await ahead.__anext__() == 1
    await asyncio.wait_for(ahead.aclose(), 2)
    assert closed.is_set()
    with pytest.raises(StopAsyncIteration):
        await ahead.__anext__()


async def test_aclose_does_not_swallow_the_callers_own_cancellation() -> None:
    cleaning = asyncio.Event()

    async def source() -> AsyncIterator[int]:
        try:
            yield 1
            await asyncio.sleep(60)
        finally:
            cleaning.set()
            await asyncio.sleep(0.2)  # a slow cleanup, like reaping a process

    ahead = Prefetch(source())

    async def consumer() -> None:
        await ahead.__anext__()
        await ahead.aclose()

    task = asyncio.create_task(consumer())
    await asyncio.wait_for(cleaning.wait(), 5)  # the consumer is inside aclose
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
