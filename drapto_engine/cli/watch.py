"""`drapto watch add|list|remove|rescan` and `drapto schedule`: the running engine's
watched folders and encode windows, through the service's protocol (as the TUI asks)."""

from __future__ import annotations

import argparse
import asyncio
import math
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drapto_engine.config import load_config
from drapto_engine.core.errors import DraptoError, UsageError
from drapto_engine.core.metrics import counted
from drapto_engine.core.schedule import ScheduleView
from drapto_engine.core.text import model_json
from drapto_engine.core.watching import WatchView, check_policy

if TYPE_CHECKING:
    from drapto_engine.server.client import EngineClient

NO_ENGINE = "no engine is running"
NO_ENGINE_HINT = "start one with `drapto serve` (or open `drapto`): it keeps the watched folders"


def add_watch_parsers(commands: Any) -> None:
    watch = commands.add_parser("watch", help="folders whose new videos are queued as they settle")
    actions = watch.add_subparsers(dest="watch_action", metavar="ACTION")
    add = actions.add_parser("add", help="watch a folder (kept across restarts)")
    add.add_argument("folder", type=Path, metavar="DIR")
    add.add_argument(
        "--output",
        type=_policy,
        default="beside",
        metavar="POLICY",
        help='"beside" (default), "replace" or "folder:/path"',
    )
    add.add_argument(
        "--settle-s",
        type=nonnegative_seconds,
        default=None,
        metavar="N",
        help="seconds a file must stay unchanged before it is queued (default 60)",
    )
    listing = actions.add_parser("list", help="the watched folders and how each goes")
    listing.add_argument("--json", action="store_true", help="one JSON object per folder")
    remove = actions.add_parser("remove", help="stop watching a folder")
    remove.add_argument("folder", type=Path, metavar="DIR")
    rescan = actions.add_parser("rescan", help="look through a folder (or all) now")
    rescan.add_argument("folder", type=Path, metavar="DIR", nargs="?")
    schedule = commands.add_parser("schedule", help="the encode windows: open or not, and until")
    schedule.add_argument(
        "--override-until-empty",
        action="store_true",
        help="encode now, windows or not, until the queue is empty",
    )
    schedule.add_argument("--json", action="store_true", help="as one JSON object")


def nonnegative_seconds(text: str) -> float:
    """A finite number of seconds, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, 0 or more, not {text!r}")
    return value


def _policy(text: str) -> str:
    try:
        return check_policy(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def run_watch(args: argparse.Namespace) -> int:
    return asyncio.run(_watch(args) if args.command == "watch" else _schedule(args))


async def _client(args: argparse.Namespace, *, start: bool = False) -> EngineClient:
    """The running engine's client (imported here: the other commands never load it);
    with `start`, an engine service is started when none runs (`watch add`: the engine
    is what watches, so a folder added is watched from now on)."""
    from drapto_engine.server.autostart import connect_or_start
    from drapto_engine.server.client import EngineClient, EngineUnavailable
    from drapto_engine.server.location import default_socket

    config = load_config(args.config)
    path = config.socket_path or default_socket()
    if start:
        client = await connect_or_start(
            path, state_dir=args.state_dir, config_path=args.config, start=True,
            client_name=f"drapto {args.command}",
        )  # fmt: skip
        assert client is not None
        return client
    try:
        return await EngineClient.connect(path, client_name=f"drapto {args.command}")
    except EngineUnavailable:
        raise EngineUnavailable(NO_ENGINE, path, hint=NO_ENGINE_HINT) from None


async def _watch(args: argparse.Namespace) -> int:
    action = getattr(args, "watch_action", None) or "list"
    folder = Path(args.folder).absolute() if getattr(args, "folder", None) else None
    if action == "add":
        assert folder is not None
        if not folder.is_dir():
            raise DraptoError(
                "no such folder" if not folder.exists() else "is not a folder", folder
            )
    client = await _client(args, start=action == "add")
    try:
        if action == "add":
            view = await client.watch_add(str(folder), args.output, args.settle_s)
            print(f"watching {view.folder.path} ({_policy_text(view.folder.output)})")
        elif action == "remove":
            if not await client.watch_remove(str(folder)):
                raise UsageError("is not a watched folder (drapto watch list)", folder)
            print(f"no longer watching {folder}")
        elif action == "rescan":
            views = await client.watch_rescan(str(folder) if folder else None)
            if folder is not None and not views:
                raise UsageError("is not a watched folder (drapto watch list)", folder)
            print(f"rescanning {counted(len(views), 'folder')}")
        else:
            views = await client.watch_list()
            if getattr(args, "json", False):
                for view in views:
                    print(model_json(view))
            else:
                print("\n".join(watch_lines(views)))
    finally:
        await client.close()
    return 0


def _policy_text(policy: str) -> str:
    if policy.startswith("folder:"):
        return f"outputs under {policy.removeprefix('folder:')}"
    return "replaces the originals" if policy == "replace" else "outputs beside the sources"


def _ago(when: float | None, now: float) -> str:
    if when is None:
        return "not yet"
    seconds = max(0, int(now - when))
    if seconds < 60:
        return f"{seconds} s ago"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    return f"{seconds // 3600} h ago"


def watch_lines(views: list[WatchView], now: float | None = None) -> list[str]:
    """`drapto watch list`: a line per folder, then its state."""
    if not views:
        return ["no watched folders (drapto watch add DIR, or [[watch]] in config.toml)"]
    now = time.time() if now is None else now
    lines: list[str] = []
    for view in views:
        source = " (config)" if view.folder.from_config else ""
        lines.append(f"{view.folder.path}{source}")
        took = f", took {view.last_scan_s:.1f} s" if view.last_scan_s is not None else ""
        lines.append(
            f"  {view.state.value}; {view.folder.output}, settle {view.folder.settle_s:g} s; "
            f"{view.pending} pending, {view.queued} queued; "
            f"last rescan {_ago(view.last_scan, now)}{took}"
        )
        if view.problem:
            lines.append(f"  {view.problem}")
    return lines


async def _schedule(args: argparse.Namespace) -> int:
    client = await _client(args)
    try:
        if args.override_until_empty:
            view = await client.override_schedule(True)
        else:
            view = await client.get_schedule()
    finally:
        await client.close()
    if args.json:
        print(model_json(view))
    else:
        print("\n".join(schedule_lines(view)))
    return 0


def until_text(when: float | None, now: float | None = None) -> str:
    """`07:00`, or `Tue 07:00` when not today."""
    if when is None:
        return ""
    at = datetime.fromtimestamp(when)
    today = datetime.fromtimestamp(time.time() if now is None else now).date()
    return at.strftime("%H:%M") if at.date() == today else at.strftime("%a %H:%M")


def schedule_lines(view: ScheduleView, now: float | None = None) -> list[str]:
    """`drapto schedule`: the windows, open or not and until when, and what waits."""
    windows = ", ".join(view.windows) if view.windows else "always (no [schedule] windows)"
    lines = [f"windows    {windows}"]
    if view.windows:
        state = "open" if view.open else "closed"
        until = until_text(view.until, now)
        change = (" until " if view.open else ", opens ") + until if until else ""
        lines.append(f"now        {state}{change}")
    if view.override:
        lines.append("override   encoding now until the queue is empty")
    if view.yield_cpu is not None:
        others = f"; others use {100 * view.others_cpu:.0f}%" if view.others_cpu is not None else ""
        lines.append(
            f"yield      when other programs use more than {100 * view.yield_cpu:.0f}% of the CPU"
            f"{others}{' (yielding)' if view.yielding else ''}"
        )
    if view.paused:
        lines.append(
            f"paused     {view.paused}; {view.waiting} {'entry' if view.waiting == 1 else 'entries'} waiting"
        )
    else:
        lines.append("running    nothing holds the queue back")
    return lines
