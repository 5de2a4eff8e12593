"""Warnings, alerts, rollbacks, failures, finished jobs and flag changes, newest last."""

from __future__ import annotations

import time
from collections import deque

from rich.style import Style
from rich.text import Text
from textual.color import Color
from textual.widgets import RichLog

from drapto_tui.notices import Notice


class EventLog(RichLog):
    """A scrolling log; each line is coloured by its severity from the current theme."""

    def __init__(self, *, id: str | None = None, max_lines: int = 2000) -> None:
        super().__init__(id=id, wrap=True, max_lines=max_lines)
        self.notices: deque[Notice] = deque(maxlen=max_lines)
        """What the log holds (its lines are drawn only once it is shown)."""

    def on_mount(self) -> None:
        for notice in getattr(self.app, "history", ()):  # what came before this pane
            self.add(notice)

    def add(self, notice: Notice) -> None:
        self.notices.append(notice)
        stamp = time.strftime("%H:%M:%S", time.localtime(notice.at))
        line = Text(f"{stamp} {notice.text}", style=self._style(notice))  # Text: no markup
        self.write(line, expand=True)

    def _style(self, notice: Notice) -> Style:
        theme = self.app.current_theme
        colour = {"warning": theme.warning, "error": theme.error}.get(notice.severity)
        if colour is None:
            return Style()
        return Style(color=Color.parse(colour).rich_color, bold=notice.severity == "error")
