"""Add files or folders: a path input that completes, and a folder browser."""

from __future__ import annotations

import os
from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.suggester import Suggester
from textual.widgets import Button, DirectoryTree, Input, Label

from drapto_tui.widgets.video_tree import VideoTree


class PathSuggester(Suggester):
    """Completes the last path component from what is on disk (case-insensitive)."""

    def __init__(self) -> None:
        super().__init__(use_cache=False, case_sensitive=True)

    async def get_suggestion(self, value: str) -> str | None:
        if not value:
            return None
        path = Path(os.path.expanduser(value))
        folder, stem = (path, "") if value.endswith("/") else (path.parent, path.name)
        try:
            names = sorted(e.name for e in os.scandir(folder) if not e.name.startswith("."))
        except OSError:
            return None
        match = next((n for n in names if n.lower().startswith(stem.lower()) and n != stem), None)
        if match is None:
            return None
        completed = value[: len(value) - len(stem)] + match
        return completed + "/" if (folder / match).is_dir() else completed


class AddScreen(ModalScreen[str | None]):
    """Returns the chosen path, or None when cancelled."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, start: Path | None = None) -> None:
        super().__init__()
        self.start = start or Path.home()

    def compose(self) -> ComposeResult:
        with Vertical(id="add-dialog"):
            yield Label(
                "Add a file or a folder (every video in it, recursively): → completes the path"
            )
            yield Input(
                value=f"{self.start}/",
                placeholder="/path/to/film.mkv or /path/to/folder/",
                suggester=PathSuggester(),
                id="path",
            )
            yield VideoTree(str(self.start), id="browser")
            with Horizontal(id="add-buttons"):
                yield Button("Add", variant="primary", id="add")
                yield Button("Cancel", id="cancel")

    @on(DirectoryTree.FileSelected)
    @on(DirectoryTree.DirectorySelected)
    def picked(self, event: DirectoryTree.FileSelected | DirectoryTree.DirectorySelected) -> None:
        self.query_one("#path", Input).value = str(event.path)

    @on(Input.Submitted)
    @on(Button.Pressed, "#add")
    def add(self) -> None:
        value = self.query_one("#path", Input).value.strip()
        self.dismiss(os.path.expanduser(value) if value else None)

    @on(Button.Pressed, "#cancel")
    def cancel(self) -> None:
        self.dismiss(None)
