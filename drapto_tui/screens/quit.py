"""Quitting: leave the engine and its encodes running (the default), or stop it."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label

LEAVE, STOP = "leave", "stop"


class QuitScreen(ModalScreen[str | None]):
    BINDINGS = [
        Binding("escape", "dismiss(None)", "Back"),
        Binding("l", "dismiss('leave')", "Leave running"),
        Binding("s", "dismiss('stop')", "Stop engine"),
    ]

    def compose(self) -> ComposeResult:
        with Vertical(id="quit-dialog"):
            yield Label("Quit drapto? The engine keeps encoding unless you stop it.")
            with Horizontal():
                yield Button("Leave running", variant="primary", id=LEAVE)
                yield Button("Stop engine", variant="error", id=STOP)
                yield Button("Back", id="back")

    def on_mount(self) -> None:
        self.query_one(f"#{LEAVE}", Button).focus()

    @on(Button.Pressed)
    def chosen(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id if event.button.id in (LEAVE, STOP) else None)
