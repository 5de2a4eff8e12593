"""The queue's commands in the command palette (ctrl+p): every action the keys reach,
found by name and run with a click as well as a key."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from textual.app import App, SystemCommand

COMMANDS = (
    ("Add files or folders", "Queue a file, or every video in a folder", "add"),
    ("Pause or resume the queue", "Running encodes finish either way", "toggle_pause"),
    ("Open the selected job", "Stages, analysis and segments", "detail"),
    ("Move the selected entry up", "Earlier in the queue", "move(-1)"),
    ("Move the selected entry down", "Later in the queue", "move(1)"),
    ("Retry the selected entry", "A failed or cancelled entry", "retry"),
    ("Cancel the selected entry", "Stops its encode (asks first)", "cancel_entry"),
    ("Remove the selected entry", "From the queue (not from disk); asks first", "remove"),
    (
        "Clear finished entries",
        "Done, skipped and cancelled ones (failed ones stay)",
        "clear_finished",
    ),
    ("Watched folders and schedule", "Add, remove or rescan folders; the windows", "library"),
    ("Watch a folder", "Its new videos are queued once they settle", "watch_add"),
    (
        "Override the schedule",
        "Encode now until the queue is empty (again: back to the windows)",
        "schedule_override",
    ),
    ("More workers", "Raise the bound on encoders at once", "workers(1)"),
    ("Fewer workers", "Lower the bound on encoders at once", "workers(-1)"),
    ("Reconnect to the engine", "After the connection ended; starts one if none runs", "reconnect"),
    ("Quit, leaving the engine running", "Encodes go on without the TUI", "leave(False)"),
    ("Stop the engine and quit", "Running jobs go back to the queue", "leave(True)"),
)
"""(title, help, app action)."""


def drapto_commands(app: App[Any]) -> Iterable[SystemCommand]:
    def run(action: str) -> Callable[[], Awaitable[None]]:
        async def callback() -> None:
            await app.run_action(action)

        return callback

    for title, help_text, action in COMMANDS:
        yield SystemCommand(title, help_text, run(action))
