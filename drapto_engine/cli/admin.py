"""`drapto flags` and `drapto config`: what the engine would run with, and changing flags.

Both ask the running engine service when there is one (its live state is the truth);
otherwise they read the config file and the saved flags directly.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from drapto_engine.cli.args import flag_state
from drapto_engine.config import (
    Config,
    load_config,
    load_saved_flags,
    save_flags,
    saved_flags_file,
)
from drapto_engine.core.flags import FlagSet, FlagSource, FlagView
from drapto_engine.core.text import model_json
from drapto_engine.infrastructure.paths import config_file
from drapto_engine.server.autostart import connect_or_start
from drapto_engine.server.client import EngineClient


def add_admin_parsers(commands: Any) -> None:
    flags = commands.add_parser("flags", help="list feature flags, or set one")
    flags.add_argument("--json", action="store_true", help="one JSON object per flag per line")
    actions = flags.add_subparsers(dest="flags_action", metavar="ACTION")
    change = actions.add_parser("set", help="set a flag (live when the engine runs) and save it")
    change.add_argument("name", metavar="NAME")
    change.add_argument("state", metavar="STATE", help="on, off or shadow")
    config = commands.add_parser("config", help="print the effective configuration")
    config.add_argument("--json", action="store_true", help="as JSON instead of TOML")


async def running_engine(
    config: Config, config_path: Path | None, client_name: str = "drapto"
) -> EngineClient | None:
    """A client of the running engine service, or None when none runs."""
    return await connect_or_start(
        config.socket_path, state_dir=None, config_path=config_path, start=False,
        client_name=client_name,
    )  # fmt: skip


def offline_flags(config: Config, config_path: Path | None) -> FlagSet:
    saved = load_saved_flags(saved_flags_file(config_path))
    return FlagSet({FlagSource.CONFIG: config.flags, FlagSource.SAVED: saved})


async def _flags(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    client = await running_engine(config, args.config)
    try:
        if getattr(args, "flags_action", None) == "set":
            state = flag_state(args.name, args.state)  # a usage error (exit 2) names it
            if client is not None:
                view = await client.set_flag(args.name, state.value)
            else:
                path = saved_flags_file(args.config)
                saved = load_saved_flags(path)
                saved[args.name] = state
                save_flags(path, saved)
                view = offline_flags(config, args.config).view(args.name)
            print(_flag_line(view))
            return 0
        views = await client.get_flags() if client is not None else None
        views = views or offline_flags(config, args.config).views()
    finally:
        if client is not None:
            await client.close()
    if args.json:
        for view in views:
            print(model_json(view))
        return 0
    where = "running engine" if client is not None else "config and saved flags"
    print(f"feature flags (from the {where}):")
    for view in views:
        print(_flag_line(view))
        print(f"    {view.description}; takes effect: {view.scope.value.replace('_', ' ')}")
    return 0


def _flag_line(view: FlagView) -> str:
    note = f", {view.rollbacks} rollbacks" if view.rollbacks else ""
    return (
        f"{view.name:<24} {view.state.value:<7} ({view.source.value}, default "
        f"{view.default.value}{note})"
    )


async def _engine_view(config: Config, config_path: Path | None) -> dict[str, Any] | None:
    """What the running engine uses (its workers bound, flags and config), or None."""
    client = await running_engine(config, config_path, "drapto config")
    if client is None:
        return None
    try:
        snapshot = await client.get_snapshot()
        engine_config = await client.get_config()
    finally:
        await client.close()
    return {
        "pid": client.server.pid,
        "socket": str(client.socket_path),
        "workers": snapshot.workers,
        "flags": {v.name: v.state.value for v in snapshot.flags},
        "flag_sources": {v.name: v.source.value for v in snapshot.flags},
        "config": engine_config,
    }


async def _config(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    path = args.config or config_file()
    flags = offline_flags(config, args.config)
    engine = await _engine_view(config, args.config)
    if args.json:
        data = config.model_dump(mode="json")
        data["effective_flags"] = {v.name: v.state.value for v in flags.views()}
        data["config_file"] = str(path)
        if engine is not None:
            del engine["flag_sources"]
        data["engine"] = engine
        print(json.dumps(data, indent=2))
        return 0
    exists = "" if path.is_file() else " (not present: defaults)"
    print(f"# config file: {path}{exists}")
    print(f"# saved flags: {saved_flags_file(args.config)}")
    print(config.to_toml(), end="")
    print("\n# effective flags (config file and saved flags)")
    print("\n".join(f"# {v.name} = {v.state.value} ({v.source.value})" for v in flags.views()))
    print("\n" + "\n".join(_engine_lines(engine, config)))
    return 0


def _engine_lines(engine: dict[str, Any] | None, config: Config) -> list[str]:
    if engine is None:
        return ["# running engine: none (`drapto serve` starts one; so does the TUI)"]
    lines = [
        f"# running engine: pid {engine['pid']} on {engine['socket']}",
        f"#   workers = {engine['workers']} (its bound now)",
    ]
    lines += [
        f"#   {name} = {state} ({engine['flag_sources'][name]})"
        for name, state in engine["flags"].items()
    ]
    mine = config.model_dump(mode="json")
    differ = sorted(k for k, v in engine["config"].items() if mine.get(k) != v)
    if differ:
        lines.append(
            "#   it started with a different config: "
            + ", ".join(f"{k} = {engine['config'][k]!r}" for k in differ)
        )
    return lines


def run_admin(args: argparse.Namespace) -> int:
    if args.command == "flags":
        return asyncio.run(_flags(args))
    return asyncio.run(_config(args))
