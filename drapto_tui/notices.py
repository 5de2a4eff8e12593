"""What a person is told of: notable engine events and refused requests, as one-line
notices for the log pane; the header counts the ones that need a look (pure: tested
without a screen)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from drapto_engine.core.api import JobView
from drapto_engine.core.events import (
    Alert,
    Event,
    FlagChanged,
    JobFinished,
    RolledBack,
    WarningEvent,
)
from drapto_engine.core.flags import FlagSource
from drapto_engine.core.jobs import QueueEntry
from drapto_tui import presentation

Severity = Literal["information", "warning", "error"]
POPPED = (WarningEvent, Alert, RolledBack)
"""Events the header counts until the log is looked at, as it does failures; the rest
(finished jobs, flag changes) only go to the log."""


def now() -> float:
    return time.time()


@dataclass(frozen=True)
class Notice:
    severity: Severity
    text: str
    at: float = field(default_factory=lambda: now())
    pop_up: bool = True
    """Needs a look: counted in the header until the log is shown (nothing pops up)."""


def describe(event: Event, name: str | None = None) -> Notice | None:
    """The notice for a notable event; `name` is its job's file name when known."""
    who = f"{name or event.job}: " if event.job else ""
    pop_up = isinstance(event, POPPED)
    text: str
    severity: Severity = "warning"
    if isinstance(event, WarningEvent):
        text = event.message
    elif isinstance(event, Alert):
        segment = f" (segment {event.index})" if event.index is not None else ""
        text = f"{event.kind.replace('_', ' ')}{segment}: {event.message}"
    elif isinstance(event, RolledBack):
        text = f"{event.stage} failed; retrying with {event.flag} off (rolled back: {event.error})"
    elif isinstance(event, JobFinished):
        s = event.summary
        severity = "information"
        change = s.reduction_percent
        size = f"{change:.0f}% smaller" if change >= 0 else f"{-change:.0f}% larger"
        text = f"done: {Path(s.output).name}, {size}, {s.wall_s:.0f} s at {s.encode_fps:.1f} fps"
    elif isinstance(event, FlagChanged):
        why = f" ({event.reason})" if event.reason else ""
        severity = "warning" if event.flag.source is FlagSource.ROLLBACK else "information"
        text = (
            f"flag {event.flag.name}: {event.previous.value} -> {event.flag.state.value}"
            f" [{event.flag.source.value}]{why}"
        )
    else:
        return None
    return Notice(severity, who + text, event.at, pop_up)


def failure(entry: QueueEntry, job: JobView | None, name: str, pop_up: bool = True) -> Notice:
    """An entry that failed, with its reason, and the stage it failed in if its job had
    started (a file that cannot be read fails before it has one)."""
    stages = job.stages if job is not None else {}
    stage = f" while {max(stages, key=stages.__getitem__)}" if stages else ""
    at = entry.finished or now()
    return Notice("error", f"{name}: failed{stage}: {presentation.reason(entry)}", at, pop_up)
