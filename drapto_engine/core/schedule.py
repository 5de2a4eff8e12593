"""Encode windows (`[schedule] windows`): when new work may start, pure and clock-free.

A window is `"HH:MM-HH:MM"` (every day) or `"DAYS HH:MM-HH:MM"`, where DAYS is a day
(`Sat`), a range (`Mon-Fri`, `Fri-Mon` wraps) or a list of those (`Sat,Sun`,
`Mon-Wed,Fri`). A window whose end is not after its start crosses midnight: `22:00-06:00`
on `Fri` runs from Friday 22:00 to Saturday 06:00. `24:00` is the end of a day. No
windows means always open. Times are the local wall clock the caller passes in, so the
clock is injectable: every question takes the moment it is asked about.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_WINDOW = re.compile(
    r"\s*(?:(?P<days>[A-Za-z,\s-]+?)\s+)?(?P<start>\d\d?:\d\d)\s*-\s*(?P<end>\d\d?:\d\d)\s*"
)
_HORIZON_DAYS = 8
"""Days ahead looked at for the next change: a week of windows and one more."""


@dataclass(frozen=True)
class Window:
    """One window: the days it starts on (0 = Monday) and its start and end in minutes
    after midnight; an end not after the start is on the next day."""

    days: frozenset[int]
    start: int
    end: int
    text: str

    def spans(self, day: datetime) -> list[tuple[datetime, datetime]]:
        """The window's stretch starting on `day`'s date (none if it does not start then)."""
        if day.weekday() not in self.days:
            return []
        midnight = day.replace(hour=0, minute=0, second=0, microsecond=0)
        end_day = midnight if self.end > self.start else midnight + timedelta(days=1)
        return [(midnight + timedelta(minutes=self.start), end_day + timedelta(minutes=self.end))]


def parse_window(text: str) -> Window:
    """The window `text` says; ValueError saying what is wrong with it."""
    found = _WINDOW.fullmatch(text)
    if found is None:
        raise ValueError(f'{text!r} is not a window like "01:00-07:00" or "Mon-Fri 22:00-06:00"')
    try:
        days = _days(found.group("days")) if found.group("days") else frozenset(range(7))
    except ValueError as exc:
        raise ValueError(f"{text!r}: {exc}") from None
    try:
        start, end = _minutes(found.group("start")), _minutes(found.group("end"))
    except ValueError as exc:
        raise ValueError(f"{text!r}: {exc}") from None
    if start == 24 * 60:
        raise ValueError(f"{text!r}: a window cannot start at 24:00")
    if start == end:
        raise ValueError(f"{text!r} is empty: its start and end are the same")
    return Window(days, start, end if end != 0 else 24 * 60, text.strip())


def _minutes(text: str) -> int:
    hours, minutes = (int(part) for part in text.split(":"))
    if hours > 24 or minutes > 59 or (hours == 24 and minutes):
        raise ValueError(f"{text} is not a time of day (00:00 to 24:00)")
    return hours * 60 + minutes


def _days(text: str) -> frozenset[int]:
    days: set[int] = set()
    for part in text.split(","):
        ends = [_day(name) for name in part.split("-")]
        if len(ends) == 1:
            days.add(ends[0])
        elif len(ends) == 2:
            first, last = ends
            days.update((first + step) % 7 for step in range((last - first) % 7 + 1))
        else:
            raise ValueError(f"{part.strip()!r} is not a day or a range of days like Mon-Fri")
    return frozenset(days)


def _day(name: str) -> int:
    """A day's index from its name: `Mon` or `Monday`, in any case."""
    key = name.strip().lower()
    for index, full in enumerate(_FULL_NAMES):
        if key in (full, full[:3]):
            return index
    raise ValueError(f"{name.strip()!r} is not a day ({', '.join(DAYS)})")


_FULL_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


@dataclass(frozen=True)
class ScheduleState:
    """What the schedule says at one moment: open or not, and until when (None: for
    good, as when there are no windows)."""

    open: bool
    until: datetime | None


@dataclass(frozen=True)
class Schedule:
    """A set of windows; none means always open."""

    windows: tuple[Window, ...] = ()

    @classmethod
    def parse(cls, texts: list[str] | None) -> Schedule:
        return cls(tuple(parse_window(text) for text in texts or ()))

    @property
    def always(self) -> bool:
        return not self.windows

    def _spans(self, when: datetime) -> list[tuple[datetime, datetime]]:
        """The windows' stretches around `when`, merged where they touch or overlap."""
        spans = sorted(
            span
            for offset in range(-2, _HORIZON_DAYS + 1)
            for window in self.windows
            for span in window.spans(when + timedelta(days=offset))
        )
        merged: list[tuple[datetime, datetime]] = []
        for start, end in spans:
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((start, end))
        return merged

    def state(self, when: datetime) -> ScheduleState:
        """Open or closed at `when`, and until when (None: no change within a week)."""
        if self.always:
            return ScheduleState(True, None)
        horizon = when + timedelta(days=_HORIZON_DAYS - 1)
        for start, end in self._spans(when):
            if start <= when < end:
                return ScheduleState(True, end if end < horizon else None)
            if when < start:
                return ScheduleState(False, start)
        return ScheduleState(False, None)  # cannot happen: every window has a day

    def is_open(self, when: datetime) -> bool:
        return self.state(when).open


@dataclass
class YieldRule:
    """Yielding the CPU to the household: once other programs' share of the CPU stays
    above `share` for `hold_s`, drapto yields; once it stays at or below it for `hold_s`,
    drapto goes on. Times are the caller's clock (seconds)."""

    share: float
    hold_s: float
    yielding: bool = False
    _since: float | None = None

    def observe(self, others: float, now: float) -> bool:
        """Note other programs' share (0-1) at `now`; whether drapto yields now."""
        if (others > self.share) == self.yielding:
            self._since = None  # as it is: any change must start its wait again
        elif self._since is None:
            self._since = now
        elif now - self._since >= self.hold_s:
            self.yielding, self._since = not self.yielding, None
        return self.yielding


class ScheduleView(BaseModel):
    """What the schedule says now, as `drapto schedule`, `drapto status` and the TUI show."""

    model_config = ConfigDict(defer_build=True, frozen=True, extra="forbid")

    windows: list[str] = Field(default_factory=list)
    """The windows as written; empty: always open."""
    open: bool = True
    until: float | None = None
    """Unix time the window closes (open) or the next opens (closed); None: no change."""
    override: bool = False
    """`drapto schedule --override-until-empty`: running now, windows or not, until the
    queue is empty."""
    yield_cpu: float | None = None
    yielding: bool = False
    """Paused for other programs' CPU use."""
    others_cpu: float | None = None
    """Other programs' share of the CPU at the last sample (0-1)."""
    paused: str | None = None
    """Why encoders are paused and nothing new starts; None when drapto runs."""
    waiting: int = 0
    """Queue entries waiting for the schedule."""
