"""`drapto` entry points. Errors are one line; tracebacks only with --debug."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from drapto_engine import __version__
from drapto_engine.config import load_config
from drapto_engine.core.errors import DraptoError
from drapto_engine.infrastructure.ffmpeg.toolchain import find_toolchain
from drapto_engine.logging_setup import configure

log = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="drapto", description="Scene-segmented AV1 batch encoder")
    parser.add_argument("--version", action="version", version=f"drapto {__version__}")
    parser.add_argument("--debug", action="store_true", help="log to stderr and show tracebacks")
    parser.add_argument(
        "--config", type=Path, help="config file (default: ~/.config/drapto/config.toml)"
    )
    from drapto_engine.cli.batch import add_batch_options

    add_batch_options(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    probe = commands.add_parser("probe", help="print media info and analysis for files")
    probe.add_argument("files", nargs="+", type=Path, metavar="FILE")
    probe.add_argument("--json", action="store_true", help="one JSON object per file per line")
    probe.add_argument("--no-crop", action="store_true", help="skip crop detection")

    from drapto_engine.cli.encode import add_encode_parser

    add_encode_parser(commands)
    from drapto_engine.cli.admin import add_admin_parsers
    from drapto_engine.cli.service import add_service_parsers

    add_admin_parsers(commands)

    add_service_parsers(commands)
    try:  # the engine must work without the UI package's dependencies
        from drapto_tui.cli import add_tui_parser
    except ImportError:
        pass
    else:
        add_tui_parser(commands)
    return parser


async def _probe(args: argparse.Namespace) -> int:
    # Imported here: the TUI's start-up must not pay for numpy and PyAV.
    from drapto_engine.core.reports import probe_json, probe_text
    from drapto_engine.services.detection import analyze_video

    ffmpeg = find_toolchain(load_config(args.config).ffmpeg_path).ffmpeg
    status = 0
    for path in args.files:
        try:
            analysis = await analyze_video(path, ffmpeg, crop_detection=not args.no_crop)
        except DraptoError as exc:
            print(f"drapto: {exc.one_line()}", file=sys.stderr)
            log.debug("probe failed", exc_info=True)
            status = 1
            continue
        if args.json:
            print(json.dumps(probe_json(analysis), ensure_ascii=False), flush=True)
        else:
            print(probe_text(analysis), flush=True)
    return status


def _dispatch(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.batch is not None:
        if args.command is not None:
            parser.error("--batch takes no command")
        from drapto_engine.cli.batch import run_batch

        return run_batch(args)
    if args.command == "probe":
        return asyncio.run(_probe(args))
    if args.command == "encode":
        from drapto_engine.cli.encode import run_encode

        return run_encode(args)
    if args.command in ("flags", "config"):
        from drapto_engine.cli.admin import run_admin

        return run_admin(args)
    if args.command in ("serve", "status"):
        from drapto_engine.cli.service import run_service

        return run_service(args)
    if args.command in ("tui", None):
        if args.command is None and not sys.stdout.isatty():
            parser.print_help()
            return 2
        from drapto_tui.cli import run_tui

        args.paths = getattr(args, "paths", [])
        return run_tui(args)
    parser.print_help()
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    configure(debug=args.debug)
    log.info("drapto %s: %s", __version__, " ".join(sys.argv))
    try:
        return _dispatch(parser, args)
    except DraptoError as exc:
        if args.debug:
            raise
        print(f"drapto: {exc.one_line()}", file=sys.stderr)
        return int(getattr(exc, "exit_status", 1))  # 2: a bad queue or config file
    except BrokenPipeError:  # `drapto flags | head`: the reader has gone, nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("drapto: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
