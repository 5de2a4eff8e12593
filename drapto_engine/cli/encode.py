"""`drapto encode`: one file, with a live display on a TTY or JSON lines for scripts."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path
from typing import Any

from drapto_engine.cli import args as checks
from drapto_engine.cli.follow import (
    EXIT_LOST,
    Ending,
    Followed,
    engine_name,
    follow,
    hand_over,
    release_signals,
    stop_on_signals,
)
from drapto_engine.cli.printers import Printer, make_printer
from drapto_engine.config import Config, load_config
from drapto_engine.core.errors import DraptoError, UsageError
from drapto_engine.core.events import EntryChanged, Event, EventBus, WarningEvent
from drapto_engine.core.flags import FlagState, parse_override
from drapto_engine.core.jobs import EntryStatus, JobOptions, QueueEntry
from drapto_engine.core.models import DEFAULTS
from drapto_engine.infrastructure import paths
from drapto_engine.infrastructure.ffmpeg.toolchain import find_toolchain
from drapto_engine.server.client import EngineClient


def add_encode_parser(commands: Any) -> None:
    encode = commands.add_parser("encode", help="encode one file to AV1")
    encode.add_argument("input", type=Path, metavar="INPUT")
    encode.add_argument(
        "-o",
        "--output",
        type=checks.mkv_output,
        help="output file, .mkv (default: INPUT's stem + .av1.mkv beside it)",
    )
    encode.add_argument("--preset", type=checks.preset, help="SVT-AV1 preset, -2 to 13 (default 6)")
    encode.add_argument(
        "--crf", type=checks.crf, help="CRF, 1 to 63 (default by resolution: SD 24, HD/UHD 26)"
    )
    encode.add_argument(
        "--target-vmaf",
        type=checks.target_vmaf,
        metavar="N",
        help="pick each segment's CRF so that its measured mean VMAF is N (50 to 99); not "
        "with --crf",
    )
    encode.add_argument(
        "--crf-range",
        type=checks.crf_range,
        metavar="MIN-MAX",
        help="the CRFs --target-vmaf may choose from (default 10-63)",
    )
    encode.add_argument(
        "--workers",
        type=checks.workers,
        help="parallel segment encoders, 1 to 4 per core (default from cores and memory)",
    )
    encode.add_argument(
        "--progress",
        choices=("plain", "json"),
        help="progress format (default: live on a TTY, plain otherwise)",
    )
    encode.add_argument("--overwrite", action="store_true", help="replace an existing output")
    encode.add_argument(
        "--force",
        action="store_true",
        help="encode a source that is AV1 already (refused by default)",
    )
    encode.add_argument("--keep-work", action="store_true", help="keep the work directory")
    encode.add_argument(
        "--work-dir",
        type=Path,
        help="an existing, writable folder for the work directory (default: beside the output)",
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
    encode.add_argument(
        "--min-segment",
        type=checks.seconds("min_segment_s"),
        help="shortest segment in seconds, above 0 (default 5)",
    )
    encode.add_argument(
        "--max-segment",
        type=checks.seconds("max_segment_s"),
        help="longest segment in seconds, at least the shortest (default 20)",
    )
    encode.add_argument(
        "--flag",
        action="append",
        type=checks.flag_override,
        default=[],
        metavar="NAME=on|off|shadow",
        help="set a feature flag for this run (`drapto flags` lists them)",
    )
    encode.add_argument(
        "--hdr10-fallback",
        action="store_true",
        help="encode a Dolby Vision profile that cannot be kept as plain HDR10 instead of failing",
    )
    replace = encode.add_argument_group("replace the source")
    replace.add_argument(
        "--replace",
        action="store_true",
        help="once the output validates, put it in the source's place (as NAME.mkv) and move"
        " the original to the trash",
    )
    replace.add_argument(
        "--min-saving",
        type=checks.saving,
        help="with --replace: the least saving that replaces the original, 0 to below 1 or a"
        " percentage (default 0.10); less keeps the original and removes the output",
    )
    replace.add_argument(
        "--keep-days",
        type=checks.days,
        help="with --replace: days the original stays in the trash (default 30)",
    )
    replace.add_argument(
        "--trash-dir",
        type=Path,
        help="with --replace: the trash folder, on the source's file system (default:"
        " .drapto-trash beside the source)",
    )
    add_engine_options(encode)


def add_engine_options(encode: argparse.ArgumentParser) -> None:
    """Where the encode runs. SUPPRESS keeps `drapto --no-daemon encode` (the global
    option) from being reset by this parser's default."""
    encode.add_argument(
        "--no-daemon",
        action="store_true",
        default=argparse.SUPPRESS,
        help="encode in this process even when an engine service is running",
    )
    encode.add_argument(
        "--detach",
        action="store_true",
        default=argparse.SUPPRESS,
        help="hand the job to the engine service (started if needed) and return",
    )


def options_from(args: argparse.Namespace) -> JobOptions:
    return JobOptions(
        preset=args.preset,
        crf=args.crf,
        target_vmaf=args.target_vmaf,
        crf_range=args.crf_range,
        min_segment_s=args.min_segment,
        max_segment_s=args.max_segment,
        hdr10_fallback=args.hdr10_fallback or None,
        overwrite=args.overwrite or None,
        force=args.force or None,
        keep_work=args.keep_work or None,
        work_dir=args.work_dir,
        replace=args.replace or None,
        min_saving=args.min_saving,
        keep_days=args.keep_days,
        trash_dir=args.trash_dir.absolute() if args.trash_dir is not None else None,
    )


def check_encode(args: argparse.Namespace, config: Config) -> None:
    """What the file system and the other options decide about an encode's options, before
    any work: usage errors (exit 2) first, then the input (exit 1)."""
    if args.target_vmaf is not None and args.crf is not None:
        raise UsageError(
            "--crf and --target-vmaf do not go together: a fixed CRF or a target, not both",
            "--target-vmaf",
        )
    low = args.min_segment or config.defaults.min_segment_s or DEFAULTS.min_segment_s
    high = args.max_segment or config.defaults.max_segment_s or DEFAULTS.max_segment_s
    if low > high:
        option = "--min-segment" if args.min_segment else "--max-segment"
        raise UsageError(
            f"the shortest segment ({low:g} s) is longer than the longest ({high:g} s)", option
        )
    replace = args.replace or config.defaults.replace
    if args.replace and args.output is not None:
        raise UsageError("--replace puts the output in the source's place: leave out -o", "-o")
    for option in ("--min-saving", "--keep-days", "--trash-dir"):
        if getattr(args, option[2:].replace("-", "_")) is not None and not replace:
            raise UsageError("is only used with --replace", option)
    if args.trash_dir is not None:
        checks.check_trash_dir("--trash-dir", args.trash_dir)
    if args.output is not None:
        checks.check_output("-o/--output", args.output, args.input)
    else:
        from drapto_engine.services.library import output_path

        default = output_path(args.input, None if replace else config.defaults.output_dir)
        if default.is_dir():
            raise DraptoError("is a directory", default, hint="name the output with -o")
    if args.work_dir is not None:
        checks.check_folder("--work-dir", args.work_dir)
    if args.state_dir is not None:
        checks.check_folder("--state-dir", args.state_dir, create=True)
    checks.check_input(args.input)
    if replace:
        from drapto_engine.services.outputs import check_replace

        check_replace(args.input, args.trash_dir or config.defaults.trash_dir)


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
    from drapto_engine.cli.admin import running_engine
    from drapto_engine.services.library import ALREADY_AV1, is_av1, output_path

    source: Path = args.input
    replace = args.replace or config.defaults.replace
    output: Path = args.output or output_path(
        source, None if replace else config.defaults.output_dir
    )
    no_daemon, detach = getattr(args, "no_daemon", False), getattr(args, "detach", False)
    if detach and no_daemon:
        print("drapto: --detach needs the engine service; it cannot go with --no-daemon",
              file=sys.stderr)  # fmt: skip
        return 2
    if not (args.force or config.defaults.force) and await asyncio.to_thread(is_av1, source):
        print(f"drapto: {source}: {ALREADY_AV1} (use --force to encode it again)", file=sys.stderr)
        return 1
    if detach:
        return await _detach(args, config, source, output)
    if not no_daemon:
        client = await running_engine(config, args.config, "drapto-encode")
        if client is not None:
            return await _through_engine(args, client, source, output)
    return await _in_process(args, config, source, output)


async def _through_engine(
    args: argparse.Namespace, client: EngineClient, source: Path, output: Path
) -> int:
    """Submit the file to the running engine (its workers, its bound) and follow it:
    the same output and exit statuses as in this process; a stop interrupts the job
    in the engine (encoders stopped, finished segments kept)."""
    printer = make_printer(args.progress, sys.stdout)
    if args.workers:
        printer.handle(
            WarningEvent(message="--workers is ignored: the running engine's bound applies")
        )
    stop, stopped_by = stop_on_signals()
    try:
        followed = await follow(
            client,
            lambda c: _submit(c, args, source, output),
            _JobEvents(printer),
            stop,
        )
    except DraptoError as exc:  # refused by the engine (no such file, ...): a job error
        printer.close()
        print(f"drapto: {exc.one_line()}", file=sys.stderr)
        return 1
    finally:
        release_signals()
        printer.close()
        await client.close()
    return _outcome(followed, source, engine_name(client), stopped_by)


class _JobEvents:
    """The job's events, without the queue entry's: an encode in this process has no
    queue entry, and through the engine it prints what it prints here."""

    def __init__(self, printer: Printer) -> None:
        self.printer = printer

    def handle(self, event: Event) -> None:
        if not isinstance(event, EntryChanged):
            self.printer.handle(event)

    def close(self) -> None:
        self.printer.close()


def _outcome(followed: Followed, source: Path, engine: str, stopped_by: list[int]) -> int:
    entry = next(iter(followed.entries.values()), None)
    if followed.ending is Ending.LOST or entry is None:
        print(f"drapto: {source}: lost {engine}: {followed.lost}; the job did not finish"
              " (start the engine and encode again to resume)", file=sys.stderr)  # fmt: skip
        return EXIT_LOST
    if entry.status is EntryStatus.DONE:
        return 0
    if entry.status is EntryStatus.SKIPPED:  # only a race: add_file refuses what it skips
        print(f"skipped: {entry.input} ({entry.note})")
        return 0
    if entry.status is EntryStatus.FAILED:
        print(f"drapto: {entry.error}", file=sys.stderr)
        return 1
    if followed.ending is Ending.STOPPED and stopped_by:
        name = signal.Signals(stopped_by[0]).name
        if followed.lost:  # the engine did not confirm that it stopped the encoders
            print(f"drapto: {source}: stopped by {name}, but {followed.lost}", file=sys.stderr)
        else:
            print(f"drapto: {source}: stopped by {name}; {engine} stopped its encoders,"
                  " the next run resumes", file=sys.stderr)  # fmt: skip
        return 128 + stopped_by[0]
    print(f"drapto: {source}: {entry.status.value} in the engine", file=sys.stderr)
    return 1


async def _submit(
    client: EngineClient, args: argparse.Namespace, source: Path, output: Path
) -> list[QueueEntry]:
    flags = {name: state.value for name, state in flags_from(args).items()}
    entry = await client.add_file(
        str(source.absolute()), str(output.absolute()), options_from(args), flags
    )
    return [entry]


async def _detach(args: argparse.Namespace, config: Config, source: Path, output: Path) -> int:
    """Submit to the engine service (started if none runs) and return at once."""
    handed = await hand_over(
        config, args, "drapto-encode", source, lambda c: _submit(c, args, source, output)
    )
    if isinstance(handed, int):
        return handed
    [entry], engine = handed
    print(f"entry {entry.id}: {source} -> {entry.output} handed to {engine};"
          " `drapto status` shows its progress")  # fmt: skip
    return 0


async def _in_process(args: argparse.Namespace, config: Config, source: Path, output: Path) -> int:
    from drapto_engine.engine import Engine

    bus = EventBus()
    printer = make_printer(args.progress, sys.stdout)
    unsubscribe = bus.subscribe(printer.handle)
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
        # Beside a live engine service on the same state folder, a file waiting in its
        # queue is refused as the engine refuses it (same input, same answer).
        holder = paths.lock_holder(paths.engine_lock(engine.state_dir))
        if holder is not None and paths.held_by_another(paths.engine_lock(engine.state_dir)):
            await engine.refuse_queued(entry, holder)
        async with engine.running():
            try:
                replaced = await engine.replace_if_encoded(entry)
                if replaced is not None:  # encoded before: only its replace was left
                    printer.handle(WarningEvent(message=f"{source}: encoded before; {replaced}"))
                else:
                    await engine.encode_entry(entry)
            finally:
                # The job's own last event (done or failed) ends the output: a resource
                # sample taken while the engine shuts down is not printed after it.
                unsubscribe()
    except asyncio.CancelledError:
        if not stopped:
            raise
        printer.close()
        print(
            f"drapto: {source}: stopped by {signal.Signals(stopped[0]).name}; nothing was"
            " written; the next run resumes",
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
