"""`drapto tui [PATH...]` (and `drapto` with no command): the TUI attached to the engine."""

from __future__ import annotations

import argparse
from typing import Any


def add_tui_parser(commands: Any) -> None:
    tui = commands.add_parser("tui", help="the interactive terminal UI (the default command)")
    tui.add_argument("paths", nargs="*", metavar="PATH", help="files or folders to queue")


def run_tui(args: argparse.Namespace) -> int:
    raise NotImplementedError("tui")
