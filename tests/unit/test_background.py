"""BackgroundTask: the one way a component starts and stops its repeating asyncio task."""

from __future__ import annotations

import asyncio

from drapto_engine.infrastructure.background import BackgroundTask


async def test_start_runs_one_task_however_often_it_is_called_and_stop_ends_it() -> None:
    runs: list[int] = []
    ended = asyncio.Event()

    async def forever() -> None:
        runs.append(len(runs))
        try:
            await asyncio.Event().wait()
        finally:
            ended.set()

    background = BackgroundTask(forever, "test-forever")
    background.start()
    background.start()
    await asyncio.sleep(0)
    assert runs == [0] and background.running
    assert {t.get_name() for t in asyncio.all_tasks()} >= {"test-forever"}
    await background.stop()
    assert ended.is_set() and not background.running
    await background.stop()  # stopping twice, or before starting, does nothing
    background.start()  # a stopped task starts again
    await asyncio.sleep(0)
    assert runs == [0, 1]
    await background.stop()


async def test_a_task_that_ended_on_its_own_is_started_again() -> None:
    runs: list[int] = []

    async def once() -> None:
        runs.append(len(runs))

    background = BackgroundTask(once, "test-once")
    background.start()
    await asyncio.sleep(0)
    assert runs == [0] and not background.running
    background.start()
    await asyncio.sleep(0)
    assert runs == [0, 1]
    await background.stop()
