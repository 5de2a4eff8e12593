"""`drapto --batch queue.toml`: a library run for cron and systemd.

The queue file is checked whole before anything is queued (exit 2 when invalid).
Its jobs go to the running engine service when there is one (and are followed to
their end), otherwise to an engine in this process. Either way the same lines or
JSON events are printed, a summary table ends the run, the summary is written as
JSON in the state directory, and the exit status is 0 when every job is done or
skipped, 1 when any failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drapto_engine.cli.admin import running_engine
from drapto_engine.cli.printers import Printer, make_printer
from drapto_engine.config import Config, load_config
from drapto_engine.core.api import EngineAPI
from drapto_engine.core.errors import DraptoError
from drapto_engine.core.events import EntryChanged, Event, EventBus, Warning
from drapto_engine.core.jobs import FINAL_STATUSES, EntryStatus, JobOptions, QueueEntry
from drapto_engine.infrastructure import paths
from drapto_engine.infrastructure.ffmpeg.toolchain import find_toolchain

if TYPE_CHECKING:
    from drapto_engine.services.batch_file import BatchFile, PlannedJob

EXIT_INVALID = 2
PLAIN_STEP_PERCENT = 10.0


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
    group.add_argument("--state-dir", type=Path, help="where job state lives (batch mode)")


def run_batch(args: argparse.Namespace) -> int:
    from drapto_engine.services.batch_file import BatchFileError, expand_jobs, load_batch

    config = load_config(args.config)
    ffmpeg = find_toolchain(config.ffmpeg_path).ffmpeg
    rejected: list[tuple[Path, str]] = []
    try:
        batch = load_batch(args.batch, ffmpeg, config.defaults)
        # Scans the folders once and refuses duplicates and outputs over inputs up front;
        # an engine in this process queues exactly these jobs.
        planned = expand_jobs(batch, ffmpeg, on_rejected=lambda p, why: rejected.append((p, why)))
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
    printer = make_printer(args.progress or "plain", sys.stdout, PLAIN_STEP_PERCENT)
    state_dir = args.state_dir or paths.state_dir()
    label = f"{args.batch.name}@{time.strftime('%Y-%m-%dT%H:%M:%S')}"
    started = time.time()
    remote = None if args.no_daemon else await running_engine(config, args.config, "drapto-batch")
    stop, stopped_by = _stop_on_signals()
    try:
        if remote is not None:
            entries = await _follow_remote(remote, batch, label, printer, stop)
        else:
            for path, why in rejected:
                printer.handle(Warning(message=f"{path}: skipped: {why}"))
            entries = await _in_process(args, config, ffmpeg, batch, planned, label, printer, stop)
    finally:
        printer.close()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_signal_handler(signum)
    if stop.is_set():
        print(f"drapto: {args.batch}: stopped; the next run resumes", file=sys.stderr)
        return 128 + stopped_by[0]
    rows = summary_rows(entries)
    print_summary(rows, sys.stdout)
    path = write_summary(state_dir, label, rows, time.time() - started)
    print(f"summary: {path}")
    failed = sum(row["status"] == EntryStatus.FAILED.value for row in rows)
    await _notify(
        config,
        "drapto: batch finished",
        f"{args.batch.name}: {len(rows) - failed} of {len(rows)} jobs done or skipped"
        + (f", {failed} failed" if failed else ""),
        printer,
    )
    return 1 if failed else 0


def _stop_on_signals() -> tuple[asyncio.Event, list[int]]:
    """SIGINT and SIGTERM (systemd's stop) start nothing new and stop the encoders."""
    stop = asyncio.Event()
    stopped_by: list[int] = []
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        stopped_by.append(signum)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    return stop, stopped_by


def _flags(batch: BatchFile) -> dict[str, str]:
    return {name: state.value for name, state in batch.flags.items()}


async def _submit(api: EngineAPI, batch: BatchFile, label: str) -> list[QueueEntry]:
    """Queue the file's jobs in a running engine, which scans their folders itself."""
    entries: list[QueueEntry] = []
    for source, options in job_options(batch):
        entries += await api.add_paths(
            [str(source)], options=options, flags=_flags(batch), batch=label
        )
    return entries


async def _in_process(
    args: argparse.Namespace,
    config: Config,
    ffmpeg: str,
    batch: BatchFile,
    planned: list[PlannedJob],
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
    client: Any, batch: BatchFile, label: str, printer: Printer, stop: asyncio.Event
) -> list[QueueEntry]:
    """Submit to the running engine and print its events for our entries until they end."""
    printer.handle(Warning(message="submitting to the running engine service"))
    if batch.defaults.workers:
        printer.handle(
            Warning(message="the queue file's workers is ignored: the engine's bound applies")
        )
    try:
        await client.subscribe()
        entries = {e.id: e for e in await _submit(client, batch, label)}
        jobs: set[str] = {e.job for e in entries.values() if e.job}
        done = asyncio.Event()
        if all(e.status in FINAL_STATUSES for e in entries.values()):
            done.set()

        async def follow() -> None:
            async for event in client.events():
                if isinstance(event, EntryChanged) and event.entry.id in entries:
                    entries[event.entry.id] = event.entry
                    if event.entry.job:
                        jobs.add(event.entry.job)
                if _ours(event, entries, jobs):
                    printer.handle(event)
                if all(e.status in FINAL_STATUSES for e in entries.values()):
                    done.set()
                    return
            done.set()

        follower = asyncio.create_task(follow())
        waiters = [asyncio.create_task(done.wait()), asyncio.create_task(stop.wait())]
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for task in [follower, *waiters]:
            task.cancel()
        return list(entries.values())
    finally:
        await client.close()


def _ours(event: Event, entries: dict[int, QueueEntry], jobs: set[str]) -> bool:
    if isinstance(event, EntryChanged):
        return event.entry.id in entries
    return bool(event.job) and event.job in jobs


def _started_text(args: argparse.Namespace, batch: BatchFile) -> str:
    return f"{args.batch.name}: {len(batch.jobs)} queue file jobs"


async def _notify(config: Config, title: str, message: str, printer: Printer) -> None:
    if not config.notify_url:
        return
    from drapto_engine.infrastructure.notify import notify

    error = await notify(config.notify_url, title, message, tags=["batch"])
    if error is not None:
        printer.handle(Warning(message=f"notification to {config.notify_url} failed: {error}"))


def summary_rows(entries: Iterable[QueueEntry]) -> list[dict[str, Any]]:
    rows = []
    for e in entries:
        s = e.summary
        out = Path(e.output)
        rows.append(
            {
                "status": e.status.value,
                "input": e.input,
                "output": e.output,
                "input_bytes": s.input_bytes if s else _size(Path(e.input)),
                "output_bytes": s.output_bytes
                if s
                else (_size(out) if e.status is EntryStatus.SKIPPED else None),
                "reduction_percent": round(s.reduction_percent, 2) if s else None,
                "wall_s": round(s.wall_s, 2) if s else None,
                "fps": round(s.encode_fps, 2) if s else None,
                "note": e.error or e.note,
                "rollbacks": e.rollbacks,
            }
        )
    return rows


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def print_summary(rows: list[dict[str, Any]], out: Any) -> None:
    header = f"{'status':<9} {'input':<40} {'in MB':>8} {'out MB':>8} {'saved':>7} {'wall s':>8} {'fps':>7}"
    print("\n" + header, file=out)
    for row in rows:
        name = Path(row["input"]).name
        name = name if len(name) <= 40 else name[:37] + "..."
        print(
            f"{row['status']:<9} {name:<40} {_mb(row['input_bytes']):>8} {_mb(row['output_bytes']):>8} "
            f"{_num(row['reduction_percent'], '%'):>7} {_num(row['wall_s']):>8} {_num(row['fps']):>7}",
            file=out,
        )
        if row["status"] == EntryStatus.FAILED.value and row["note"]:
            print(f"          {row['note']}", file=out)
    out.flush()


def _mb(size: int | None) -> str:
    return "-" if size is None else f"{size / 1e6:.1f}"


def _num(value: float | None, unit: str = "") -> str:
    return "-" if value is None else f"{value:.1f}{unit}"


def write_summary(state_dir: Path, label: str, rows: list[dict[str, Any]], wall: float) -> Path:
    """The summary as JSON: one file per run and `last-batch.json` beside them."""
    folder = state_dir / "batches"
    folder.mkdir(parents=True, exist_ok=True)
    data = {"batch": label, "wall_s": round(wall, 2), "jobs": rows}
    text = json.dumps(data, indent=2, ensure_ascii=False)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = folder / f"batch-{stamp}.json"
    path.write_text(text, encoding="utf-8")
    (state_dir / "last-batch.json").write_text(text, encoding="utf-8")
    return path
