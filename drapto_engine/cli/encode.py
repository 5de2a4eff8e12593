"""`drapto encode`: one file, with a live display on a TTY or JSON lines for scripts."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path
from typing import Any

from drapto_engine.cli.printers import make_printer
from drapto_engine.config import Config, load_config
from drapto_engine.core.events import EventBus
from drapto_engine.core.flags import FlagState, parse_override
from drapto_engine.core.jobs import JobOptions, QueueEntry
from drapto_engine.infrastructure.ffmpeg.toolchain import find_toolchain


def add_encode_parser(commands: Any) -> None:
    encode = commands.add_parser("encode", help="encode one file to AV1")
    encode.add_argument("input", type=Path, metavar="INPUT")
    encode.add_argument(
        "-o", "--output", type=Path, help="output file (default: INPUT's stem + .av1.mkv beside it)"
    )
    encode.add_argument("--preset", type=int, help="SVT-AV1 preset (default 6)")
    encode.add_argument("--crf", type=int, help="CRF (default by resolution: SD 24, HD/UHD 26)")
    encode.add_argument(
        "--workers", type=int, help="parallel segment encoders (default from cores and memory)"
    )
    encode.add_argument(
        "--progress",
        choices=("plain", "json"),
        help="progress format (default: live on a TTY, plain otherwise)",
    )
    encode.add_argument("--overwrite", action="store_true", help="replace an existing output")
    encode.add_argument("--keep-work", action="store_true", help="keep the work directory")
    encode.add_argument(
        "--work-dir", type=Path, help="where the work directory goes (default: beside the output)"
    )
    encode.add_argument(
        "--state-dir", type=Path, help="where job state lives (default: the XDG state directory)"
    )
    encode.add_argument("--no-crop", action="store_true", help="never crop")
    encode.add_argument(
        "--no-scenes", action="store_true", help="fixed-length segments instead of scene cuts"
    )
    encode.add_argument(
        "--whole", action="store_true", help="one whole-file encode instead of segments"
    )
    encode.add_argument("--min-segment", type=float, help="shortest segment in seconds (default 5)")
    encode.add_argument("--max-segment", type=float, help="longest segment in seconds (default 20)")
    encode.add_argument(
        "--flag",
        action="append",
        default=[],
        metavar="NAME=on|off|shadow",
        help="set a feature flag for this run (see the README for the list)",
    )
    encode.add_argument(
        "--hdr10-fallback",
        action="store_true",
        help="encode a Dolby Vision profile that cannot be kept as plain HDR10 instead of failing",
    )


def options_from(args: argparse.Namespace) -> JobOptions:
    return JobOptions(
        preset=args.preset,
        crf=args.crf,
        min_segment_s=args.min_segment,
        max_segment_s=args.max_segment,
        hdr10_fallback=args.hdr10_fallback or None,
        overwrite=args.overwrite or None,
        keep_work=args.keep_work or None,
        work_dir=args.work_dir,
    )


def flags_from(args: argparse.Namespace) -> dict[str, FlagState]:
    states = dict(parse_override(text) for text in args.flag)
    if args.no_crop:
        states["crop_detection"] = FlagState.OFF
    if args.no_scenes:
        states["scene_segmentation"] = FlagState.OFF
    if args.whole:
        states["segmented_encoding"] = FlagState.OFF
    return states


async def _encode(args: argparse.Namespace, config: Config) -> int:
    from drapto_engine.engine import Engine
    from drapto_engine.services.library import output_path

    source: Path = args.input
    output: Path = args.output or output_path(source, config.defaults.output_dir)
    bus = EventBus()
    printer = make_printer(args.progress, sys.stdout)
    bus.subscribe(printer.handle)
    engine = Engine(
        find_toolchain(config.ffmpeg_path).ffmpeg,
        config=config,
        state_dir=args.state_dir,
        config_path=args.config,
        run_flags=flags_from(args),
        workers=args.workers,
        bus=bus,
    )
    entry = QueueEntry(
        id=0,
        input=str(source.absolute()),
        output=str(output.absolute()),
        position=0,
        options=options_from(args),
    )
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    stopped: list[int] = []

    def stop(signum: int) -> None:
        stopped.append(signum)
        task.cancel()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop, signum)
    try:
        async with engine.running():
            await engine.encode_entry(entry)
    except asyncio.CancelledError:
        if not stopped:
            raise
        printer.close()
        print(
            f"drapto: {source}: stopped by {signal.Signals(stopped[0]).name}; nothing was written",
            file=sys.stderr,
        )
        return 128 + stopped[0]
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(signum)
        printer.close()
        engine.close()
    return 0


def run_encode(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    return asyncio.run(_encode(args, config))
