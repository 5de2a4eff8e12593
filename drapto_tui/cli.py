"""`drapto tui [PATH...]` (and `drapto` with no command): the TUI attached to the engine,
which is started in the background when none runs."""

from __future__ import annotations

import argparse
import os
from typing import Any

from drapto_engine.config import load_config
from drapto_engine.server.autostart import connect_or_start
from drapto_tui.link import Client


def add_tui_parser(commands: Any) -> None:
    tui = commands.add_parser("tui", help="the interactive terminal UI (the default command)")
    tui.add_argument("paths", nargs="*", metavar="PATH", help="files or folders to queue")


def run_tui(args: argparse.Namespace) -> int:
    from drapto_tui.app import DraptoApp

    config = load_config(args.config)

    async def connect() -> Client:
        client = await connect_or_start(
            config.socket_path,
            state_dir=None,
            config_path=args.config,
            start=True,
            client_name="drapto-tui",
        )
        assert client is not None  # start=True either connects or raises
        return client

    app = DraptoApp(connect, paths=[os.path.abspath(p) for p in args.paths])
    app.run()
    return app.return_code or 0
