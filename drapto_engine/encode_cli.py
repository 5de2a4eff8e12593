"""`drapto encode`: one file, with a live display on a TTY or JSON lines for scripts."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path
from typing import Any

from drapto_engine.config import load_config
from drapto_engine.core.events import EventBus
from drapto_engine.core.flags import apply_flags, parse_override
from drapto_engine.core.models import EncodeSettings
from drapto_engine.core.state import StateManager
from drapto_engine.infrastructure.ffmpeg.toolchain import find_toolchain
from drapto_engine.infrastructure.paths import state_db
from drapto_engine.infrastructure.store import StateStore
from drapto_engine.printers import make_printer
from drapto_engine.services.orchestrator import EncodeRequest, Orchestrator


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
        metavar="NAME=on|off",
        help="set a feature flag for this run (see the README for the list)",
    )
    encode.add_argument(
        "--hdr10-fallback",
        action="store_true",
        help="encode a Dolby Vision profile that cannot be kept as plain HDR10 instead of failing",
    )


def settings_from(args: argparse.Namespace) -> EncodeSettings:
    chosen: dict[str, Any] = {
        "preset": args.preset,
        "crf": args.crf,
        "min_segment_s": args.min_segment,
        "max_segment_s": args.max_segment,
    }
    settings = EncodeSettings(**{k: v for k, v in chosen.items() if v is not None})
    settings = settings.model_copy(update={"hdr10_fallback": args.hdr10_fallback})
    states = dict(parse_override(text) for text in args.flag)
    if args.no_crop:
        states["crop_detection"] = False
    if args.no_scenes:
        states["scene_segmentation"] = False
    if args.whole:
        states["segmented_encoding"] = False
    return apply_flags(settings, states)


def default_output(source: Path) -> Path:
    return source.with_name(f"{source.stem}.av1.mkv")


async def _encode(request: EncodeRequest, progress: str | None, state_dir: Path | None) -> int:
    bus = EventBus()
    printer = make_printer(progress, sys.stdout)
    bus.subscribe(printer.handle)
    store = StateStore(state_db(state_dir))
    orchestrator = Orchestrator(
        find_toolchain(load_config().ffmpeg_path).ffmpeg, bus, StateManager(store)
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
        await orchestrator.encode(request)
    except asyncio.CancelledError:
        if not stopped:
            raise
        printer.close()
        print(
            f"drapto: {request.input}: stopped by {signal.Signals(stopped[0]).name}; nothing was written",
            file=sys.stderr,
        )
        return 128 + stopped[0]
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(signum)
        printer.close()
    return 0


def run_encode(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    request = EncodeRequest(
        input=args.input,
        output=args.output or default_output(args.input),
        settings=settings,
        workers=args.workers,
        overwrite=args.overwrite,
        keep_work=args.keep_work,
        work_root=args.work_dir,
    )
    return asyncio.run(_encode(request, args.progress, args.state_dir))
