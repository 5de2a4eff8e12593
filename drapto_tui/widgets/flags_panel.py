"""Every feature flag with its description, scope and a switch.

A switch shows the engine's state, not the click: toggling asks the engine, and the
switch moves when the engine's `flag` event comes back. Flags the engine rolled back
say so, and turning them on again undoes the rollback.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import Label, Static, Switch

from drapto_engine.core.flags import FlagSource, FlagState, FlagView


@dataclass
class FlagToggled(Message):
    """The user asked for a flag state (the engine's answer comes as an event)."""

    name: str
    state: str


def describe(view: FlagView) -> str:
    scope = view.scope.value.replace("_", " ")
    note = ""
    if view.source is FlagSource.ROLLBACK:
        note = f"  [$warning]rolled back after {view.rollbacks} failures; turn on to undo[/]"
    elif view.rollbacks:
        note = f"  [$warning]{view.rollbacks} jobs rolled back[/]"
    shadow = "  (s: shadow)" if view.shadow_capable else ""
    return (
        f"[b]{view.name}[/b]  {view.state.value} ({view.source.value}, default "
        f"{view.default.value}, takes effect: {scope}){shadow}{note}\n"
        f"[$text-muted]{view.description}[/]"
    )


class FlagRow(Horizontal):
    def __init__(self, view: FlagView) -> None:
        super().__init__(id=f"flag-{view.name}", classes="flag-row")
        self.view = view

    def compose(self) -> ComposeResult:
        yield Switch(value=self.view.state is not FlagState.OFF, id=f"switch-{self.view.name}")
        yield Static(describe(self.view), classes="flag-text")

    def show(self, view: FlagView) -> None:
        self.view = view
        switch = self.query_one(Switch)
        with switch.prevent(Switch.Changed):
            switch.value = view.state is not FlagState.OFF
        self.query_one(".flag-text", Static).update(describe(view))

    @on(Switch.Changed)
    def asked(self, event: Switch.Changed) -> None:
        event.stop()
        wanted = "on" if event.value else "off"
        with event.switch.prevent(Switch.Changed):
            event.switch.value = self.view.state is not FlagState.OFF  # until the engine says
        self.post_message(FlagToggled(self.view.name, wanted))


class FlagsPanel(VerticalScroll):
    BINDINGS = [("s", "shadow", "Shadow")]

    def compose(self) -> ComposeResult:
        yield Label("Feature flags: space or click toggles; the engine confirms.")

    def show(self, views: list[FlagView]) -> None:
        for view in views:
            rows = self.query(f"#flag-{view.name}")
            if rows:
                rows.first(FlagRow).show(view)
            else:
                self.mount(FlagRow(view))

    def action_shadow(self) -> None:
        focused = self.app.focused
        row = focused.parent if focused is not None else None
        if isinstance(row, FlagRow) and row.view.shadow_capable:
            self.post_message(FlagToggled(row.view.name, FlagState.SHADOW.value))
