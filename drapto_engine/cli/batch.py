"""`drapto --batch queue.toml`: a library run for cron and systemd.

The queue file is checked whole before anything is queued (exit 2 when invalid).
Its jobs go to the running engine service when there is one (and are followed to
their end), otherwise to an engine in this process. Either way the same lines or
JSON events are printed, a summary table ends the run, the summary is written as
JSON in the state directory, and the exit status is 0 when every job is done or
skipped, 1 when any failed (a file in a queued folder that cannot be read counts),
3 when the engine was lost before the jobs ended (they are listed as interrupted),
128+N when signal N stopped the run (a followed engine stops our encoders; the next
run resumes). With --detach the jobs are handed to the engine and the client returns.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from drapto_engine.cli.admin import running_engine
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
from drapto_engine.cli.summary import (
    INTERRUPTED,
    print_summary,
    size_text,
    summary_rows,
    write_summary,
)
from drapto_engine.config import Config, load_config
from drapto_engine.core.api import EngineAPI
from drapto_engine.core.errors import DraptoError
from drapto_engine.core.events import EventBus, WarningEvent
from drapto_engine.core.jobs import EntryStatus, JobOptions, QueueEntry
from drapto_engine.infrastructure import paths
from drapto_engine.infrastructure.ffmpeg.toolchain import find_toolchain
from drapto_engine.server.client import EngineClient
from drapto_engine.services.library import output_path

if TYPE_CHECKING:
    from drapto_engine.services.batch_file import BatchFile, PlannedJob

EXIT_INVALID = 2
PLAIN_STEP_PERCENT = 10.0
"""A job's status in the summary when the run ended before it did (stopped, or the
engine was lost); the next run resumes it."""


def add_batch_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("batch mode")
    group.add_argument(
        "--batch", type=Path, metavar="QUEUE.TOML", help="encode a queue file headless"
    )
    group.add_argument(
        "--progress", choices=("plain", "json"), help="batch output (default: plain lines)"
    )
    group.add_argument(
        "--no-daemon",
        action="store_true",
        help="run in this process even when an engine service is running",
    )
    group.add_argument(
        "--detach",
        action="store_true",
        help="hand the jobs to the engine service (started if needed), print the batch id"
        " and return; `drapto status` follows them",
    )
    group.add_argument("--state-dir", type=Path, help="where job state lives (batch mode)")


def run_batch(args: argparse.Namespace) -> int:
    from drapto_engine.services.batch_file import BatchFileError, read_batch

    if args.detach and args.no_daemon:
        print("drapto: --detach needs the engine service; it cannot go with --no-daemon",
              file=sys.stderr)  # fmt: skip
        return EXIT_INVALID
    config = load_config(args.config)
    ffmpeg = find_toolchain(config.ffmpeg_path).ffmpeg
    rejected: list[tuple[Path, str]] = []
    try:
        # Scans the folders once and refuses duplicates and outputs over inputs up front,
        # with every other problem of the file; an engine in this process queues exactly
        # these jobs, and a file that is no video as a failed entry.
        batch, planned = read_batch(
            args.batch,
            ffmpeg,
            config.defaults,
            on_rejected=lambda p, why: rejected.append((p, why)),
        )
    except BatchFileError as exc:
        for problem in exc.problems:
            print(f"drapto: {problem}", file=sys.stderr)
        return EXIT_INVALID
    except DraptoError as exc:
        print(f"drapto: {exc.one_line()}", file=sys.stderr)
        return EXIT_INVALID
    return asyncio.run(_batch(args, config, ffmpeg, batch, planned, rejected))


def job_options(batch: BatchFile) -> list[tuple[Path, JobOptions]]:
    return [(job.input, job.options(batch.defaults)) for job in batch.jobs]


async def _batch(
    args: argparse.Namespace,
    config: Config,
    ffmpeg: str,
    batch: BatchFile,
    planned: list[PlannedJob],
    rejected: list[tuple[Path, str]],
) -> int:
    label = f"{args.batch.name}@{time.strftime('%Y-%m-%dT%H:%M:%S')}"
    if args.detach:
        return await _detach(args, config, batch, label)
    printer = make_printer(args.progress or "plain", sys.stdout, PLAIN_STEP_PERCENT)
    state_dir = args.state_dir or paths.state_dir()
    started = time.time()
    remote = None if args.no_daemon else await running_engine(config, args.config, "drapto-batch")
    stop, stopped_by = stop_on_signals()
    lost_engine: str | None = None
    try:
        if remote is not None:
            followed = await _follow_remote(remote, batch, label, printer, stop)
            entries = list(followed.entries.values())
            if followed.ending is not Ending.FINISHED and followed.lost:
                lost_engine = f"{engine_name(remote)}: {followed.lost}"
        else:
            failures = _failures(batch, rejected)
            entries = await _in_process(
                args, config, ffmpeg, batch, planned, failures, label, printer, stop
            )
    finally:
        printer.close()
        release_signals()
    rows = summary_rows(entries)
    print_summary(rows, sys.stdout)
    path = write_summary(state_dir, label, rows, time.time() - started)
    print(f"summary: {path}")
    counts = Counter(row["status"] for row in rows)
    failed, unfinished = counts[EntryStatus.FAILED.value], counts[INTERRUPTED]
    text = (
        f"{args.batch.name}: {counts[EntryStatus.DONE.value] + counts[EntryStatus.SKIPPED.value]}"
    )
    text += f" of {len(rows)} jobs done or skipped"
    text += (f", {failed} failed" if failed else "") + (
        f", {unfinished} interrupted" if unfinished else ""
    )
    text += size_text(rows)
    finished = not unfinished and not stop.is_set() and lost_engine is None
    await _notify(
        config, f"drapto: batch {'finished' if finished else 'interrupted'}", text, printer
    )
    if lost_engine is not None:
        print(
            f"drapto: {args.batch}: lost {lost_engine}; {_jobs(unfinished, 'unfinished')} marked"
            " interrupted (start the engine and run the batch again to resume)",
            file=sys.stderr,
        )
        return EXIT_LOST
    if stop.is_set() and unfinished:
        where = "the engine stopped its encoders; " if remote is not None else ""
        print(
            f"drapto: {args.batch}: stopped by {signal.Signals(stopped_by[0]).name}; {where}"
            "the next run resumes",
            file=sys.stderr,
        )
        return 128 + stopped_by[0]
    return 1 if failed else 0


def _jobs(count: int, what: str) -> str:
    return f"{count} {what} job is" if count == 1 else f"{count} {what} jobs are"


def _failures(batch: BatchFile, rejected: list[tuple[Path, str]]) -> list[tuple[Path, Path, str]]:
    """The files named or found in a folder that are no videos, as (input, output, why)."""
    failures = []
    for path, why in rejected:
        output = path
        for job in batch.jobs:
            root = job.input.absolute()
            if path == root:
                output = output_path(path, job.options(batch.defaults).output_dir)
                break
            if path.is_relative_to(root):
                output = output_path(path, job.options(batch.defaults).output_dir, root=root)
                break
        failures.append((path, output, f"{path}: {why}"))
    return failures


def _flags(batch: BatchFile) -> dict[str, str]:
    return {name: state.value for name, state in batch.flags.items()}


async def _submit(api: EngineAPI, batch: BatchFile, label: str) -> list[QueueEntry]:
    """Queue the file's jobs in a running engine, which scans their folders itself."""
    entries: list[QueueEntry] = []
    for source, options in job_options(batch):
        entries += await api.add_paths(
            [str(source.absolute())], options=options, flags=_flags(batch), batch=label
        )
    return entries


async def _detach(args: argparse.Namespace, config: Config, batch: BatchFile, label: str) -> int:
    """Submit to the engine service (started if none runs) and return at once."""

    async def submit(client: EngineClient) -> tuple[list[QueueEntry], bool]:
        return await _submit(client, batch, label), (await client.get_snapshot()).paused

    handed = await hand_over(config, args, "drapto-batch", args.batch, submit)
    if isinstance(handed, int):
        return handed
    (entries, paused), engine = handed
    failed = [e for e in entries if e.status is EntryStatus.FAILED]
    print(f"batch: {label}")
    print(
        f"{len(entries)} jobs handed to {engine}"
        + (f", {len(failed)} of them failed at once" if failed else "")
        + ("; the engine is paused: they wait until it is resumed" if paused else "")
        + "; `drapto status` shows their progress"
    )
    for entry in failed:
        print(f"drapto: {entry.error}", file=sys.stderr)
    return 1 if failed else 0


async def _in_process(
    args: argparse.Namespace,
    config: Config,
    ffmpeg: str,
    batch: BatchFile,
    planned: list[PlannedJob],
    failures: list[tuple[Path, Path, str]],
    label: str,
    printer: Printer,
    stop: asyncio.Event,
) -> list[QueueEntry]:
    from drapto_engine.engine import Engine

    bus = EventBus()
    bus.subscribe(printer.handle)
    engine = Engine(
        ffmpeg,
        config=config,
        state_dir=args.state_dir,
        config_path=args.config,
        workers=batch.defaults.workers,
        bus=bus,
    )
    try:
        async with engine.running():
            await _notify(config, "drapto: batch started", _started_text(args, batch), printer)
            entries: list[QueueEntry] = []
            for job in planned:
                entries += await engine.add(
                    [(job.input, job.output)], options=job.options, flags=_flags(batch), batch=label
                )
            entries += await engine.add_failed(failures, flags=_flags(batch), batch=label)
            runner = asyncio.create_task(
                engine.run(only={e.id for e in entries}, ignore_pause=True)
            )
            stopper = asyncio.create_task(stop.wait())
            await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if not runner.done():
                runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
        return [engine.entry(e.id) for e in entries]
    finally:
        engine.close()


async def _follow_remote(
    client: EngineClient, batch: BatchFile, label: str, printer: Printer, stop: asyncio.Event
) -> Followed:
    """Submit to the running engine and print its events for our entries until they
    end, the user stops us (the engine then interrupts them) or the engine is lost."""
    printer.handle(WarningEvent(message="submitting to the running engine service"))
    if batch.defaults.workers:
        printer.handle(
            WarningEvent(message="the queue file's workers is ignored: the engine's bound applies")
        )
    try:
        return await follow(client, lambda c: _submit(c, batch, label), printer, stop)
    finally:
        await client.close()


def _started_text(args: argparse.Namespace, batch: BatchFile) -> str:
    return f"{args.batch.name}: {len(batch.jobs)} queue file jobs"


async def _notify(config: Config, title: str, message: str, printer: Printer) -> None:
    if not config.notify_url:
        return
    from drapto_engine.infrastructure.notify import notify

    error = await notify(config.notify_url, title, message, tags=["batch"])
    if error is not None:
        printer.handle(WarningEvent(message=f"notification to {config.notify_url} failed: {error}"))
