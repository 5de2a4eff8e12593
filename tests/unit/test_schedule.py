"""Encode windows with an injected clock: open or closed at a moment, and until when."""

from __future__ import annotations

from datetime import datetime

import pytest

from drapto_engine.core.schedule import Schedule, ScheduleState, YieldRule, parse_window

# 2026-12-07 is a Monday.
MON = "2026-12-07"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_no_windows_is_always_open() -> None:
    assert Schedule.parse(None).state(at(f"{MON} 03:00")) == ScheduleState(True, None)


@pytest.mark.parametrize(
    ("when", "state"),
    [
        (f"{MON} 00:59", ScheduleState(False, at(f"{MON} 01:00"))),
        (f"{MON} 01:00", ScheduleState(True, at(f"{MON} 07:00"))),
        (f"{MON} 06:59:59", ScheduleState(True, at(f"{MON} 07:00"))),
        (f"{MON} 07:00", ScheduleState(False, at("2026-12-08 01:00"))),
    ],
)
def test_a_daily_window(when: str, state: ScheduleState) -> None:
    assert Schedule.parse(["01:00-07:00"]).state(at(when)) == state


def test_a_window_across_midnight_on_weekdays() -> None:
    schedule = Schedule.parse(["Mon-Fri 22:00-06:00"])
    assert schedule.state(at(f"{MON} 21:00")) == ScheduleState(False, at(f"{MON} 22:00"))
    assert schedule.state(at(f"{MON} 23:00")) == ScheduleState(True, at("2026-12-08 06:00"))
    # Monday's early hours belong to Sunday's window, and Sunday has none.
    assert schedule.state(at(f"{MON} 05:00")) == ScheduleState(False, at(f"{MON} 22:00"))
    # Friday's window runs into Saturday; then closed until Monday night.
    assert schedule.state(at("2026-12-12 05:59")).open
    assert schedule.state(at("2026-12-12 06:00")) == ScheduleState(False, at("2026-12-14 22:00"))


def test_days_lists_and_wrapping_ranges() -> None:
    schedule = Schedule.parse(["Sat,Sun 10:00-12:00", "fri-mon 20:00-21:00"])
    assert schedule.state(at("2026-12-12 11:00")) == ScheduleState(True, at("2026-12-12 12:00"))
    assert not schedule.is_open(at(f"{MON} 11:00"))
    assert schedule.is_open(at(f"{MON} 20:30"))
    assert not schedule.is_open(at("2026-12-08 20:30"))  # Tuesday
    assert schedule.is_open(at("2026-12-11 20:30"))  # Friday


def test_touching_windows_merge_and_a_full_week_never_closes() -> None:
    schedule = Schedule.parse(["01:00-03:00", "03:00-05:00"])
    assert schedule.state(at(f"{MON} 02:00")) == ScheduleState(True, at(f"{MON} 05:00"))
    assert Schedule.parse(["00:00-24:00"]).state(at(f"{MON} 12:00")) == ScheduleState(True, None)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("25:00-01:00", "'25:00-01:00': 25:00 is not a time of day (00:00 to 24:00)"),
        ("01:60-02:00", "'01:60-02:00': 01:60 is not a time of day (00:00 to 24:00)"),
        (
            "Mox 01:00-02:00",
            "'Mox 01:00-02:00': 'Mox' is not a day (Mon, Tue, Wed, Thu, Fri, Sat, Sun)",
        ),
        ("01:00-01:00", "'01:00-01:00' is empty: its start and end are the same"),
        ("24:00-01:00", "'24:00-01:00': a window cannot start at 24:00"),
        ("1-7", '\'1-7\' is not a window like "01:00-07:00" or "Mon-Fri 22:00-06:00"'),
    ],
)
def test_bad_windows_say_why(text: str, problem: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_window(text)
    assert str(caught.value) == problem


def test_yielding_needs_the_share_held_both_ways() -> None:
    rule = YieldRule(share=0.5, hold_s=30)
    assert not rule.observe(0.9, 0)
    assert not rule.observe(0.9, 29)
    assert not rule.observe(0.2, 29.5)  # a dip starts the wait over
    assert not rule.observe(0.9, 30)
    assert not rule.observe(0.9, 59)
    assert rule.observe(0.9, 60)
    assert rule.observe(0.5, 70)  # at the share is not above it: the wait to go on starts
    assert rule.observe(0.6, 80)  # above again: the wait starts over
    assert rule.observe(0.1, 81)
    assert rule.observe(0.1, 110)
    assert not rule.observe(0.1, 111)
