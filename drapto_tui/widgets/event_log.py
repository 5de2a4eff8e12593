"""Warnings, alerts, rollbacks, failures and flag changes, newest last."""

from __future__ import annotations

import time
from pathlib import Path

from rich.text import Text
from textual.widgets import RichLog

from drapto_engine.core.events import (
    Alert,
    Event,
    FlagChanged,
    JobFailed,
    JobFinished,
    RolledBack,
    Warning,
)


def describe(event: Event) -> tuple[str, str] | None:
    """(severity, text) for a notable event."""
    job = f"[{event.job}] " if event.job else ""
    if isinstance(event, Warning):
        return "warning", f"{job}{event.message}"
    if isinstance(event, Alert):
        return "warning", f"{job}{event.kind.replace('_', ' ')}: {event.message}"
    if isinstance(event, RolledBack):
        return "warning", f"{job}rollback: {event.stage} failed; retrying with {event.flag} off"
    if isinstance(event, JobFailed):
        return "error", f"{job}failed while {event.stage}: {event.error}"
    if isinstance(event, JobFinished):
        s = event.summary
        return (
            "information",
            f"{job}done: {Path(s.output).name}, {s.reduction_percent:.0f}% smaller, "
            f"{s.wall_s:.0f} s at {s.encode_fps:.1f} fps",
        )
    if isinstance(event, FlagChanged):
        why = f" ({event.reason})" if event.reason else ""
        return (
            "information",
            f"flag {event.flag.name}: {event.previous.value} -> {event.flag.state.value}"
            f" [{event.flag.source.value}]{why}",
        )
    return None


class EventLog(RichLog):
    def add(self, event: Event) -> None:
        described = describe(event)
        if described is None:
            return
        severity, text = described
        stamp = time.strftime("%H:%M:%S", time.localtime(event.at))
        style = {"warning": "yellow", "error": "bold red"}.get(severity, "")
        self.write(Text(f"{stamp} {text}", style=style))  # Text: job ids look like markup
