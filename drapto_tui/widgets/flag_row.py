"""One feature flag: a switch, its state and where that came from, its scope and
description.

The switch shows the engine's state, not the click: toggling asks the engine (the row
says so meanwhile) and the switch moves when the engine's `flag` event comes back. A
flag the engine rolled back says so; turning it on again undoes the rollback.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import Static, Switch

from drapto_engine.core.flags import FlagSource, FlagState, FlagView

ASK_TIMEOUT_S = 5.0
"""After this, a request the engine never confirmed stops showing as pending (a refusal
is a notification of its own)."""


def describe(view: FlagView, asking: str | None = None) -> str:
    scope = view.scope.value.replace("_", " ")
    note = ""
    if view.source is FlagSource.ROLLBACK:
        note = f"  [$warning]rolled back after {view.rollbacks} failed jobs: turn on to undo[/]"
    elif view.rollbacks:
        note = f"  [$warning]{view.rollbacks} jobs rolled back[/]"
    shadow = "  (s: shadow)" if view.shadow_capable else ""
    pending = f"  [$accent]asking the engine for {asking}…[/]" if asking else ""
    return (
        f"[b]{view.name}[/b]  {view.state.value} ({view.source.value}, default "
        f"{view.default.value}, takes effect: {scope}){shadow}{note}{pending}\n"
        f"[$text-muted]{view.description}[/]"
    )


class FlagRow(Horizontal):
    asking: reactive[str | None] = reactive(None)
    """The state asked for and not yet confirmed by the engine."""

    @dataclass
    class Toggled(Message):
        """The user asked for a flag state (the engine's answer comes as a `flag` event)."""

        name: str
        state: str

    def __init__(self, view: FlagView) -> None:
        super().__init__(id=f"flag-{view.name}", classes="flag-row")
        self.view = view

    def compose(self) -> ComposeResult:
        yield Switch(value=self.view.state is not FlagState.OFF, id=f"switch-{self.view.name}")
        yield Static(describe(self.view), classes="flag-text")

    def show(self, view: FlagView) -> None:
        """The engine's word: the switch follows it."""
        self.view = view
        switch = self.query_one(Switch)
        with switch.prevent(Switch.Changed):
            switch.value = view.state is not FlagState.OFF
        self.asking = None
        self.query_one(".flag-text", Static).update(describe(view))

    def watch_asking(self, asking: str | None) -> None:
        if self.is_mounted:
            self.query_one(".flag-text", Static).update(describe(self.view, asking))

    def ask(self, state: str) -> None:
        self.asking = state
        self.set_timer(ASK_TIMEOUT_S, self._gave_up)
        self.post_message(self.Toggled(self.view.name, state))

    def _gave_up(self) -> None:
        self.asking = None

    @on(Switch.Changed)
    def asked(self, event: Switch.Changed) -> None:
        event.stop()
        wanted = "on" if event.value else "off"
        with event.switch.prevent(Switch.Changed):
            event.switch.value = self.view.state is not FlagState.OFF  # until the engine says
        self.ask(wanted)
