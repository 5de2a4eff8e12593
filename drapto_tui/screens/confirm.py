"""Asking before a destructive action: it names what it acts on; enter or y confirms,
escape or n backs out."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label


class ConfirmScreen(ModalScreen[bool]):
    BINDINGS = [
        Binding("escape,n", "dismiss(False)", "Back"),
        Binding("y", "dismiss(True)", "Yes"),
    ]

    def __init__(self, question: str, action: str) -> None:
        super().__init__()
        self.question = question
        self.action_label = action

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-dialog"):
            yield Label(self.question, id="confirm-question", markup=False)
            with Horizontal():
                yield Button(f"{self.action_label} (y)", variant="error", id="confirm")
                yield Button("Back (esc)", id="back")

    def on_mount(self) -> None:
        self.query_one("#confirm", Button).focus()  # enter confirms

    @on(Button.Pressed)
    def chosen(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm")
