"""When drapto encodes: the encode windows, the override, and yielding the CPU.

Outside the windows (and while other programs keep more than `yield_cpu` of the CPU
busy) the pacer *holds* the resource manager: every running encoder is stopped with
SIGSTOP (its children too) and continued with SIGCONT when the hold ends, and no new
encoder is admitted; the engine starts no new queue entry meanwhile. Stopping rather
than letting a segment finish: a segment can take many minutes at a slow preset, and a
window's end or a viewer's transcode wants the CPU now; a stopped encoder loses nothing
(it goes on from the frame it was at), only its memory stays held.

Other programs' share is the whole machine's busy share less drapto's encoders' (their
process trees, as the resource manager samples them), so a paused drapto still sees the
household's load and goes on once it has stayed low for `hold_s`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime

from drapto_engine.core.metrics import ResourceSnapshot
from drapto_engine.core.schedule import Schedule, ScheduleView, YieldRule
from drapto_engine.infrastructure.background import BackgroundTask
from drapto_engine.infrastructure.resources import ResourceManager
from drapto_engine.infrastructure.workers import cpu_count

log = logging.getLogger(__name__)

TICK_S = 1.0


def others_share(snapshot: ResourceSnapshot, cores: int) -> float:
    """Other programs' share of all cores (0-1): busy less drapto's encoders."""
    encoders = sum(e.cpu_percent for e in snapshot.encoders if not e.suspended)
    return max(0.0, min(1.0, snapshot.cpu_percent / 100 - encoders / (100 * max(1, cores))))


class Pacer:
    """Holds the resource manager outside the windows and while yielding; says why.

    `now` is the local wall clock (windows are in local time), `clock` the monotonic one
    for the yield's hold time: both injectable."""

    def __init__(
        self,
        resources: ResourceManager,
        schedule: Schedule,
        *,
        yield_cpu: float | None = None,
        yield_hold_s: float = 30.0,
        tick_s: float = TICK_S,
        now: Callable[[], datetime] = datetime.now,
        clock: Callable[[], float] = time.monotonic,
        cores: int | None = None,
        changed: Callable[[ScheduleView], None] | None = None,
        waiting: Callable[[], int] | None = None,
    ) -> None:
        self.resources = resources
        self.schedule = schedule
        self.rule = YieldRule(yield_cpu, yield_hold_s) if yield_cpu is not None else None
        self.tick_s = tick_s
        self._now = now
        self._clock = clock
        self._cores = cores or cpu_count()
        self._changed = changed
        self.override = False
        self.others: float | None = None
        self.waiting = 0
        """Queue entries waiting (set by `update`, or counted by `waiting` each time)."""
        self._count_waiting = waiting
        self._view = self._compute()
        self._opened = asyncio.Event()
        self._task = BackgroundTask(self._run, "drapto-pacer")

    # --- the view -----------------------------------------------------------------

    def _compute(self) -> ScheduleView:
        now = self._now()
        state = self.schedule.state(now)
        yielding = self.rule.yielding if self.rule is not None else False
        paused: str | None = None
        if not state.open and not self.override:
            until = f" until {_clock_text(state.until, now)}" if state.until else ""
            paused = f"outside the encode windows{until}"
        elif yielding:
            share = f"{100 * self.others:.0f}%" if self.others is not None else "much"
            paused = f"yielding the CPU: other programs use {share} of it"
        return ScheduleView(
            windows=[w.text for w in self.schedule.windows],
            open=state.open,
            until=state.until.timestamp() if state.until else None,
            override=self.override,
            yield_cpu=self.rule.share if self.rule is not None else None,
            yielding=yielding,
            others_cpu=self.others,
            paused=paused,
            waiting=self.waiting if paused else 0,
        )

    def view(self) -> ScheduleView:
        return self._view

    @property
    def paused(self) -> str | None:
        return self._view.paused

    # --- acting -------------------------------------------------------------------

    async def update(self, waiting: int | None = None) -> ScheduleView:
        """Look at the clock and the CPU now; hold or release the encoders."""
        if waiting is not None:
            self.waiting = waiting
        elif self._count_waiting is not None:
            self.waiting = self._count_waiting()
        latest = self.resources.latest
        if self.rule is not None and latest is not None:
            self.others = others_share(latest, self._cores)
            self.rule.observe(self.others, self._clock())
        view = self._compute()
        if view.paused != self.resources.hold:
            await self.resources.set_hold(view.paused)
        if view != self._view:
            if (view.paused is None) != (self._view.paused is None):
                log.info("encoding %s", f"paused: {view.paused}" if view.paused else "resumed")
            self._view = view
            if self._changed is not None:
                self._changed(view)
        if view.paused is None:
            self._opened.set()
        else:
            self._opened.clear()
        return view

    async def set_override(self, on: bool) -> ScheduleView:
        """`--override-until-empty`: run now, windows or not (the engine turns it off
        when its queue is empty)."""
        self.override = on
        return await self.update()

    async def wait_open(self) -> None:
        """Until nothing holds drapto back (the engine's gate before a new entry)."""
        await self.update()
        while self.paused is not None:
            self._opened.clear()
            await self._opened.wait()

    def start(self) -> None:
        self._task.start()

    async def stop(self) -> None:
        await self._task.stop()
        await self.resources.set_hold(None)

    async def _run(self) -> None:
        while True:
            try:
                await self.update()
            except Exception:  # pacing must never stop the engine
                log.exception("pacing failed")
            await asyncio.sleep(self.tick_s)


def _clock_text(when: datetime, now: datetime) -> str:
    """`07:00`, or `Mon 07:00` when not today."""
    if when.date() == now.date():
        return when.strftime("%H:%M")
    return when.strftime("%a %H:%M")
