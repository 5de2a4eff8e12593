"""Every feature flag with its description, scope and a switch (see flag_row.py)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Label

from drapto_engine.core.flags import FlagState, FlagView
from drapto_tui.widgets.flag_row import FlagRow


class FlagsPanel(VerticalScroll):
    BINDINGS = [
        ("s", "shadow", "Shadow"),
        ("up", "app.focus_previous", "Previous flag"),
        ("down", "app.focus_next", "Next flag"),
    ]

    def compose(self) -> ComposeResult:
        yield Label("Feature flags: ↑/↓ choose, space or a click toggles; the engine confirms.")

    def show(self, views: list[FlagView]) -> None:
        for view in views:
            rows = self.query(f"#flag-{view.name}")
            if rows:
                row = rows.first(FlagRow)
                if row.view != view:
                    row.show(view)
            else:
                self.mount(FlagRow(view))

    def action_shadow(self) -> None:
        focused = self.app.focused
        row = focused.parent if focused is not None else None
        if isinstance(row, FlagRow) and row.view.shadow_capable:
            row.ask(FlagState.SHADOW.value)
