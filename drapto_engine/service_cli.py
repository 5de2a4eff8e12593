"""`drapto serve` and `drapto status`: the engine service and a one-screen summary of it."""

from __future__ import annotations

import argparse
from typing import Any


def add_service_parsers(commands: Any) -> None:
    commands.add_parser("serve", help="run the engine service in the foreground")
    commands.add_parser("status", help="a one-screen summary from the running engine")


def run_service(args: argparse.Namespace) -> int:
    raise NotImplementedError(args.command)
