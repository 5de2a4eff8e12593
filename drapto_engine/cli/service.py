"""`drapto serve` and `drapto status`: the engine service and a one-screen summary of it."""

from __future__ import annotations

import argparse
import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

from drapto_engine.cli.args import socket_path, workers
from drapto_engine.config import Config, load_config
from drapto_engine.core.api import EngineSnapshot, JobView
from drapto_engine.core.errors import UsageError
from drapto_engine.core.jobs import FINAL_STATUSES, EntryStatus, QueueEntry
from drapto_engine.core.metrics import ClusterWorker, ResourceSnapshot, counted
from drapto_engine.core.text import model_json
from drapto_engine.server.protocol import Hello

GIB = 1 << 30
NO_ENGINE_HINT = "start one with `drapto serve`, or run `drapto`: the TUI starts one"


def add_service_parsers(commands: Any) -> None:
    serve = commands.add_parser(
        "serve",
        help="run the engine service in the foreground",
        description="Run the engine (queue, encoders, flags) and serve it to this user's"
        " clients on a Unix socket until SIGTERM/SIGINT or a client's shutdown.",
    )
    _socket_argument(serve)
    serve.add_argument(
        "--state-dir", type=Path, help="where the queue and job state live (default: XDG state)"
    )
    serve.add_argument(
        "--workers",
        type=serve_workers,
        help="most encoders at once, 1 to 4 per core (default: saved, config, or cores);"
        " 0 with --cluster: every segment goes to the cluster's workers while one is there",
    )
    serve.add_argument(
        "--cluster",
        metavar="ADDRESS",
        help="host a Dask scheduler for `drapto worker`s here, e.g. tls://0.0.0.0:8786"
        " (needs the cluster extra and `drapto cluster init`)",
    )
    serve.add_argument(
        "--dashboard",
        metavar="HOST:PORT",
        help="with --cluster: serve Dask's dashboard there (loopback unless --insecure)",
    )
    serve.add_argument(
        "--insecure",
        action="store_true",
        help="with --cluster: allow plain tcp:// or a dashboard beyond loopback (Dask runs"
        " pickled code: anyone reaching the port can run programs here)",
    )
    status = commands.add_parser("status", help="a one-screen summary from the running engine")
    _socket_argument(status)
    status.add_argument("--json", action="store_true", help="the engine's full snapshot as JSON")


def _socket_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--socket",
        type=socket_path,
        help="the engine's socket (default: config socket_path, else"
        " $XDG_RUNTIME_DIR/drapto/engine.sock, else ${TMPDIR:-/tmp}/drapto-UID/engine.sock)",
    )


def run_service(args: argparse.Namespace) -> int:
    if args.command == "serve":
        return _serve(args)
    return asyncio.run(_status(args))


def _socket(args: argparse.Namespace, configured: Path | None) -> Path:
    from drapto_engine.server.location import default_socket

    path: Path = args.socket or configured or default_socket()
    return path.absolute()


def serve_workers(text: str) -> int:
    """--workers of `drapto serve`: as everywhere, or 0 (no local encoders, with --cluster)."""
    return 0 if text.strip() == "0" else workers(text)


def _serve(args: argparse.Namespace) -> int:
    from drapto_engine.server.service import serve

    config = load_config(args.config)
    cluster = _cluster_options(args, config)
    return asyncio.run(
        serve(
            config,
            socket_path=_socket(args, config.socket_path),
            state_dir=args.state_dir,
            config_path=args.config,
            workers=args.workers or None,
            cluster=cluster,
        )
    )


def _cluster_options(args: argparse.Namespace, config: Config) -> Any:
    """The cluster the engine hosts (--cluster, else config.toml's [cluster]), checked
    before anything starts (exit 2, one line)."""
    if args.cluster is None and config.cluster is not None:
        args.cluster = config.cluster.listen
        args.dashboard = args.dashboard or config.cluster.dashboard
        args.insecure = args.insecure or config.cluster.insecure
    if args.cluster is None:
        for option, given in (
            ("--workers 0", args.workers == 0),
            ("--dashboard", args.dashboard is not None),
            ("--insecure", args.insecure),
        ):
            if given:
                raise UsageError("only goes with --cluster", option)
        return None
    from drapto_engine.cluster import INSTALL_HINT, ClusterUsageError, available

    if not available():
        raise UsageError(INSTALL_HINT.replace("cluster commands", "it"), "--cluster")
    from drapto_engine.cluster.certs import engine_files
    from drapto_engine.cluster.host import ClusterOptions
    from drapto_engine.cluster.security import check_address, check_dashboard

    try:
        address = check_address(args.cluster, insecure=args.insecure)
        check_dashboard(args.dashboard, insecure=args.insecure)
        if address.scheme == "tls":
            engine_files()
    except ClusterUsageError as exc:
        raise UsageError(exc.problem, exc.path or "--cluster", hint=exc.hint) from None
    return ClusterOptions(
        listen=args.cluster,
        dashboard=args.dashboard,
        insecure=args.insecure,
        local_slots=args.workers != 0,
    )


async def _status(args: argparse.Namespace) -> int:
    from drapto_engine.server.client import EngineClient, EngineUnavailable

    path = _socket(args, load_config(args.config).socket_path)
    try:
        client = await EngineClient.connect(path, client_name="drapto status")
    except EngineUnavailable:
        raise EngineUnavailable(
            "no engine is running on this socket",
            path,
            hint=NO_ENGINE_HINT,
        ) from None
    try:
        snapshot = await client.get_snapshot()
    finally:
        await client.close()
    if args.json:
        print(model_json(snapshot))
    else:
        print("\n".join(status_lines(snapshot, client.server, path)))
    return 0


def status_lines(snapshot: EngineSnapshot, server: Hello, socket_path: Path) -> list[str]:
    """The summary `drapto status` prints: a screen at most, the running jobs first."""
    lines = [
        f"engine     {server.name}, pid {server.pid}, on {socket_path}",
        f"queue      {_counts(snapshot.entries)}{', paused' if snapshot.paused else ''}",
        f"workers    {_workers(snapshot)}",
    ]
    if snapshot.resources:
        lines.append(f"resources  {_resources(snapshot.resources[-1])}")
    if snapshot.cluster is not None:
        lines.append(
            f"cluster    {snapshot.cluster}, {counted(len(snapshot.cluster_workers), 'worker')}"
        )
        lines += [f"  {_cluster_worker(w)}" for w in snapshot.cluster_workers]
    held = snapshot.schedule
    if held.paused:
        lines.append(f"schedule   {held.waiting} waiting: {held.paused}")
    changed = [f for f in snapshot.flags if f.state != f.default]
    if changed:
        flags = ", ".join(f"{f.name} {f.state.value} ({f.source.value})" for f in changed)
        lines.append(f"flags      {flags}")
    batches = batch_lines(snapshot)
    if batches:
        lines.append("batches")
        lines += [f"  {line}" for line in batches]
    running = [e for e in snapshot.entries if e.status is EntryStatus.RUNNING]
    if running:
        lines.append("running")
        lines += [f"  {_running(e, snapshot.jobs.get(e.job or ''))}" for e in running]
    lines += ended_lines(snapshot.entries)
    return lines


ENDED_SHOWN = 10
"""Failed and cancelled entries `drapto status` lists with their reason (the latest)."""


def ended_lines(entries: list[QueueEntry]) -> list[str]:
    """Why each failed entry failed, and whether a cancelled one resumes: the latest
    ENDED_SHOWN of them, so that the summary stays one screen."""
    ended = [e for e in entries if e.status in (EntryStatus.FAILED, EntryStatus.CANCELLED)]
    if not ended:
        return []
    ended.sort(key=lambda e: (e.finished or 0.0, e.id))
    shown = ended[-ENDED_SHOWN:]
    lines = ["failed or cancelled"]
    for entry in shown:
        why = entry.error or entry.note
        text = f"#{entry.id} {Path(entry.input).name} {entry.status.value}"
        lines.append(f"  {text}: {why}" if why else f"  {text}")
    if len(ended) > len(shown):
        lines.append(f"  and {len(ended) - len(shown)} more (drapto status --json lists them)")
    return lines


def batch_lines(snapshot: EngineSnapshot) -> list[str]:
    """One line per batch with jobs still to run (a detached batch's progress):
    its entries by status and how far its running jobs are."""
    groups: dict[str, list[QueueEntry]] = {}
    for entry in snapshot.entries:
        if entry.batch:
            groups.setdefault(entry.batch, []).append(entry)
    lines = []
    for name, entries in groups.items():
        if all(e.status in FINAL_STATUSES for e in entries):
            continue
        text = f"{name}: {len(entries)} jobs, {_counts(entries)}"
        running = [e for e in entries if e.status is EntryStatus.RUNNING]
        percents = [_percent(snapshot.jobs.get(e.job or "")) for e in running]
        if percents:
            text += ", running at " + ", ".join(f"{p:.0f}%" for p in percents)
        lines.append(text)
    return lines


def _percent(job: JobView | None) -> float:
    if job is None or not job.segments:
        return 0.0
    frames = sum(s.frames for s in job.segments.values())
    return 100 * job.frames_done / frames if frames else 0.0


def _counts(entries: list[QueueEntry]) -> str:
    if not entries:
        return "empty"
    counts = Counter(e.status for e in entries)
    return ", ".join(f"{counts[s]} {s.value}" for s in EntryStatus if counts[s])


def _workers(snapshot: EngineSnapshot) -> str:
    """The encoders this engine runs at once; with `--workers 0` none while a cluster
    worker is there, and the bound that applies when none is."""
    if not snapshot.local_slots:
        return f"0 here while a cluster worker is connected ({snapshot.workers} when none is)"
    return str(snapshot.workers)


def _resources(sample: ResourceSnapshot) -> str:
    used = sample.memory_total - sample.memory_available
    text = (
        f"CPU {sample.cpu_percent:.0f}%, RAM {used / GIB:.1f} of"
        f" {sample.memory_total / GIB:.1f} GiB used, {sample.running} encoders"
    )
    return text + (f" ({sample.suspended} suspended)" if sample.suspended else "")


def _cluster_worker(worker: ClusterWorker) -> str:
    text = (
        f"{worker.name} on {worker.host}: {counted(worker.slots, 'slot')}, {worker.running} running,"
        f" CPU {worker.cpu_percent:.0f}%"
    )
    if worker.memory_total:
        used = worker.memory_total - worker.memory_available
        text += f", RAM {used / GIB:.1f} of {worker.memory_total / GIB:.1f} GiB used"
    return text


def _running(entry: QueueEntry, job: JobView | None) -> str:
    text = f"#{entry.id} {Path(entry.input).name}: {entry.stage or 'starting'}"
    if job is None or not job.segments:
        return text
    segments = job.segments.values()
    done = sum(1 for s in segments if s.state == "done")
    active = sum(1 for s in segments if s.state == "running")
    frames = sum(s.frames for s in segments)
    percent = 100 * job.frames_done / frames if frames else 0.0
    return f"{text}, segments {done}/{len(segments)} done, {active} encoding, {percent:.0f}%"
