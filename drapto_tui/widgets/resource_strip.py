"""The machine in one line under the queue: system CPU, RAM in use of the total, and
the encoders running and suspended; on a tall screen, CPU and RAM sparklines too."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from drapto_engine.core.api import EngineSnapshot
from drapto_tui.widgets.resources_panel import GIB, sparkline

LABEL = "CPU 100%"
"""A sparkline starts after this much of its line."""


def strip_line(snapshot: EngineSnapshot) -> str:
    samples = snapshot.resources
    if not samples:
        return f"CPU -  RAM -  encoders: no sample yet  workers {snapshot.workers}"
    latest = samples[-1]
    used = (latest.memory_total - latest.memory_available) / GIB
    return (
        f"CPU {latest.cpu_percent:.0f}%  RAM {used:.1f} of {latest.memory_total / GIB:.1f} GiB"
        f"  encoders {latest.running - latest.suspended} running, {latest.suspended} suspended"
        f"  workers {snapshot.workers}"
    )


def memory_used(snapshot: EngineSnapshot) -> list[float]:
    return [
        100 * (1 - s.memory_available / s.memory_total)
        for s in snapshot.resources
        if s.memory_total
    ]


class ResourceStrip(Static):
    """One line; with `sparklines` (a tall screen) two more, CPU and RAM over time."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.sparklines = False
        self._shown = ""

    def show(self, snapshot: EngineSnapshot) -> None:
        lines = [strip_line(snapshot)]
        if self.sparklines:
            width = max(10, self.size.width - len(LABEL) - 3)
            cpu = sparkline([s.cpu_percent for s in snapshot.resources], width)
            lines.append(f"{'CPU':<{len(LABEL)}} {cpu}")
            lines.append(f"{'RAM':<{len(LABEL)}} {sparkline(memory_used(snapshot), width)}")
        text = "\n".join(lines)
        if text != self._shown:  # an unchanged strip costs no redraw
            self._shown = text
            self.update(Text(text), layout=False)

    def text(self) -> str:
        return self._shown
