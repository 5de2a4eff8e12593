"""Following jobs in the running engine service from a foreground client.

`drapto --batch` and `drapto encode` submit their jobs to the engine when one runs and
follow them to their end. Three things can end the wait, and each is reported as what
it is, never as success: every entry reached a final status; the user stopped the
client (its entries are interrupted in the engine: encoders stopped, work kept); the
connection was lost (the engine died: nothing is known to have finished). With
`--detach` they hand their jobs over (`hand_over`) and return at once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import TypeVar

from drapto_engine.cli.printers import Printer
from drapto_engine.config import Config
from drapto_engine.core.errors import DraptoError
from drapto_engine.core.events import EntryChanged, Event, WarningEvent
from drapto_engine.core.jobs import FINAL_STATUSES, QueueEntry
from drapto_engine.server.client import EngineClient, EngineLost

EXIT_LOST = 3
"""Exit status of a client that lost its engine before its jobs ended."""
INTERRUPT_TIMEOUT_S = 15.0
"""How long a stopping client waits for the engine to stop its encoders."""

Submitted = TypeVar("Submitted")


class Ending(Enum):
    FINISHED = "finished"
    STOPPED = "stopped"
    LOST = "lost"


@dataclass
class Followed:
    """What a foreground client knows of its entries, and how the wait ended."""

    entries: dict[int, QueueEntry] = field(default_factory=dict)
    jobs: set[str] = field(default_factory=set)
    ending: Ending = Ending.FINISHED
    lost: str | None = None
    """Why the connection ended, when it did."""

    def take(self, entries: list[QueueEntry]) -> None:
        for entry in entries:
            self.entries[entry.id] = entry
            if entry.job:
                self.jobs.add(entry.job)

    @property
    def finished(self) -> bool:
        return all(e.status in FINAL_STATUSES for e in self.entries.values())

    def ours(self, event: Event) -> bool:
        if isinstance(event, EntryChanged):
            return event.entry.id in self.entries
        return bool(event.job) and event.job in self.jobs


async def follow(
    client: EngineClient,
    submit: Callable[[EngineClient], Awaitable[list[QueueEntry]]],
    printer: Printer,
    stop: asyncio.Event,
) -> Followed:
    """Subscribe, submit, and print the events of what was submitted until the entries
    end, `stop` is set (then the engine interrupts them) or the connection is lost."""
    state = Followed()
    try:
        snapshot = await client.subscribe()  # before submitting: no event of ours is missed
        if snapshot.paused:
            printer.handle(WarningEvent(message="the engine is paused: jobs wait until it resumes"))
        state.take(await submit(client))
    except EngineLost as exc:
        state.ending, state.lost = Ending.LOST, client.lost or exc.problem
        return state
    finished = asyncio.Event()
    if state.finished:
        finished.set()

    async def read() -> None:
        async for event in client.events():
            if isinstance(event, EntryChanged) and event.entry.id in state.entries:
                state.take([event.entry])
            if state.ours(event):
                printer.handle(event)
            if state.finished:
                finished.set()
        finished.set()  # the stream ended: the connection is gone

    reader = asyncio.create_task(read(), name="follow-events")
    waits = [asyncio.create_task(finished.wait()), asyncio.create_task(stop.wait())]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        if not client.connected and not state.finished:
            state.ending, state.lost = Ending.LOST, client.lost
        elif stop.is_set() and not state.finished:
            state.ending = Ending.STOPPED
            await _interrupt(client, state)
    finally:
        for task in [reader, *waits]:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
    return state


async def _interrupt(client: EngineClient, state: Followed) -> None:
    """Ask the engine to stop our entries (it replies once their encoders have exited)
    and read their statuses back."""
    try:
        async with asyncio.timeout(INTERRUPT_TIMEOUT_S):
            await client.interrupt(list(state.entries))
            snapshot = await client.get_snapshot()
    except EngineLost as exc:
        state.ending, state.lost = Ending.LOST, client.lost or exc.problem
        return
    except (TimeoutError, DraptoError) as exc:
        # The engine is there but did not confirm: say so rather than claim a stop.
        state.lost = f"the engine did not confirm the stop: {exc or 'no answer'}"
        return
    for entry in snapshot.entries:
        if entry.id in state.entries:
            state.entries[entry.id] = entry


def stop_on_signals() -> tuple[asyncio.Event, list[int]]:
    """SIGINT and SIGTERM (systemd's stop) set the event; the list holds the signal."""
    stop = asyncio.Event()
    stopped_by: list[int] = []
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        stopped_by.append(signum)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    return stop, stopped_by


def release_signals() -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(Exception):
            loop.remove_signal_handler(signum)


def engine_name(client: EngineClient) -> str:
    return f"the engine (pid {client.server.pid})" if client.server.pid else "the engine"


async def hand_over(
    config: Config,
    args: argparse.Namespace,
    client_name: str,
    what: object,
    submit: Callable[[EngineClient], Awaitable[Submitted]],
) -> tuple[Submitted, str] | int:
    """Submit to the engine service (started if none runs) without following: what
    `submit` returned and the engine's name, or EXIT_LOST once a line naming `what`
    says that the engine was lost."""
    from drapto_engine.server.autostart import connect_or_start

    client = await connect_or_start(
        config.socket_path, state_dir=args.state_dir, config_path=args.config, start=True,
        client_name=client_name,
    )  # fmt: skip
    assert client is not None
    try:
        submitted = await submit(client)
    except EngineLost as exc:
        print(f"drapto: {what}: lost {engine_name(client)}: {exc.problem}", file=sys.stderr)
        return EXIT_LOST
    finally:
        await client.close()
    return submitted, engine_name(client)
