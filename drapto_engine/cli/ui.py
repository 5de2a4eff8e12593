"""The UI that `drapto tui` (and `drapto` with no command) runs, found as a plugin.

The engine does not import its UI: a UI package registers itself in the `drapto.ui`
entry-point group (drapto_tui does, in pyproject.toml), and the command line loads the
module so named when the `tui` command runs or the parser is built. Without a UI
installed, `drapto tui` is no command and `drapto` alone says so."""

from __future__ import annotations

import argparse
import logging
from importlib.metadata import entry_points
from typing import Any, Protocol, cast

log = logging.getLogger(__name__)

GROUP = "drapto.ui"
COMMAND = "tui"


class UserInterface(Protocol):
    """What the module an entry point of GROUP names provides."""

    def add_parser(self, commands: Any) -> None:
        """Add the `tui` command to the subparsers `commands`."""

    def run(self, args: argparse.Namespace) -> int:
        """Run the UI with the parsed command line; returns the exit status."""


def find_ui() -> UserInterface | None:
    """The installed UI, or None when none is (or its dependencies are missing)."""
    for point in entry_points(group=GROUP, name=COMMAND):
        try:
            return cast(UserInterface, point.load())
        except ImportError as exc:
            log.debug("the UI %s cannot be loaded: %s", point.value, exc)
    return None
