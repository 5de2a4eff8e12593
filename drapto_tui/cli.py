"""`drapto tui [PATH...]` (and `drapto` with no command): the TUI attached to the engine,
which is started in the background when none runs.

The engine's command line finds this module through the `drapto.ui` entry point that
pyproject.toml registers (drapto_engine/cli/ui.py names what it provides)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from drapto_tui.client import load_config


def add_parser(commands: Any) -> None:
    tui = commands.add_parser("tui", help="the interactive terminal UI (the default command)")
    tui.add_argument("paths", nargs="*", metavar="PATH", help="files or folders to queue")


def run(args: argparse.Namespace) -> int:
    from drapto_tui.app import DraptoApp
    from drapto_tui.client import service_connector

    config = load_config(args.config)  # a bad file: drapto's main says so, in one line
    paths = [os.path.abspath(p) for p in getattr(args, "paths", None) or []]
    app = DraptoApp(service_connector(config, args.config), paths=paths)
    app.run()
    return app.return_code or 0
