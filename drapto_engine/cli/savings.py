"""`drapto stats` (the space saved) and `drapto restore` (an original back from the trash).

Both ask the running engine service when there is one, as `drapto flags` does; without
one (or with --state-dir) they read and change the state folder themselves.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from drapto_engine.cli.admin import running_engine
from drapto_engine.cli.args import check_folder
from drapto_engine.config import load_config
from drapto_engine.core.errors import DraptoError
from drapto_engine.core.savings import SavingsReport, saved_text


def add_savings_parsers(commands: Any) -> None:
    stats = commands.add_parser(
        "stats", help="the space saved: in total, per watched folder and per day"
    )
    stats.add_argument(
        "--json", action="store_true", help="one JSON object (files, bytes_before, bytes_after,"
        " bytes_saved, then folders and days)"
    )  # fmt: skip
    _state_argument(stats)
    restore = commands.add_parser(
        "restore",
        help="put a replaced original back from the trash (the AV1 file stays as NAME.av1.mkv)",
    )
    restore.add_argument("path", type=Path, metavar="PATH", help="the original's path")
    _state_argument(restore)


def _state_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir",
        type=Path,
        help="read this state folder instead of asking the running engine (default: the"
        " engine's, else the XDG state folder)",
    )


def run_savings(args: argparse.Namespace) -> int:
    if args.state_dir is not None:
        check_folder("--state-dir", args.state_dir)
    if args.command == "stats":
        return asyncio.run(_stats(args))
    return asyncio.run(_restore(args))


async def _stats(args: argparse.Namespace) -> int:
    report = await _ask(args, "get_savings")
    assert isinstance(report, SavingsReport)
    if args.json:
        data = report.total.model_dump()
        data["folders"] = {k: v.model_dump() for k, v in report.folders.items()}
        data["days"] = {k: v.model_dump() for k, v in report.days.items()}
        print(json.dumps(data))
        return 0
    if not report.total.files:
        print("space saved: none yet")
        return 0
    print(f"space saved: {saved_text(report.total)}")
    width = max(len(name) for name in [*report.folders, *report.days])
    print("per folder:")
    for name, totals in report.folders.items():
        print(f"  {name:<{width}}  {saved_text(totals)}")
    print("per day:")
    for name, totals in report.days.items():
        print(f"  {name:<{width}}  {saved_text(totals)}")
    return 0


async def _restore(args: argparse.Namespace) -> int:
    path = args.path.absolute()
    aside = await _ask(args, "restore", str(path))
    print(f"restored {path}; the AV1 file is now {aside}")
    return 0


async def _ask(args: argparse.Namespace, call: str, *arguments: Any) -> Any:
    """The running engine's answer to `call`, or this process's from the state folder."""
    if args.state_dir is None:
        config = load_config(args.config)
        client = await running_engine(config, args.config, f"drapto {args.command}")
        if client is not None:
            try:
                return await getattr(client, call)(*arguments)
            finally:
                await client.close()
    return await asyncio.to_thread(_offline, args.state_dir, call, *arguments)


def _offline(state_dir: Path | None, call: str, *arguments: Any) -> Any:
    from drapto_engine.infrastructure import paths
    from drapto_engine.infrastructure.savings import SavingsStore
    from drapto_engine.infrastructure.store import StateStore
    from drapto_engine.services.replace import Replacer

    folder = state_dir or paths.state_dir()
    if not paths.state_db(folder).is_file():  # nothing encoded here: nothing to make
        if call == "get_savings":
            return SavingsReport()
        raise DraptoError("drapto has no original of this file in its trash", arguments[0])
    store = StateStore(paths.state_db(folder))
    try:
        savings = SavingsStore(store)
        if call == "get_savings":
            return savings.report()
        return str(Replacer(folder, savings).restore(Path(arguments[0])))
    finally:
        store.close()
