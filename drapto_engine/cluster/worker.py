"""`drapto worker`: one Dask nanny and worker offering this machine's encoder slots.

Before joining, the worker asks the engine for its toolchain fingerprint and refuses to
start when its own differs; the engine's ToolchainGate refuses such a worker too, so the
check holds even against a worker that skips this step.

Dask's scratch space and the segments' folders live under drapto's per-user scratch
folder (infrastructure/scratch.py), in folders named after their process; a starting
worker removes those that killed processes left on this machine.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import shutil
import signal
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from distributed.core import rpc
from distributed.security import Security

from drapto_engine.cluster import ClusterUsageError
from drapto_engine.cluster.node import DEBUG_ENV, QuietNanny, QuietWorker, constant
from drapto_engine.cluster.scheduler import ENCODER, PATH_MAP_KEY, TOOLCHAIN_HANDLER, TOOLCHAIN_KEY
from drapto_engine.cluster.security import (
    Address,
    address_risk,
    check_address,
    check_dashboard,
    dashboard_risk,
    is_loopback,
    worker_security,
)
from drapto_engine.cluster.tasks import PATH_MAP_ENV, PathMap, path_map_json
from drapto_engine.cluster.toolchain import differences, fingerprint
from drapto_engine.core.errors import DraptoError, ToolchainError
from drapto_engine.core.metrics import counted
from drapto_engine.core.models import ResolutionClass
from drapto_engine.infrastructure.scratch import make_folder, remove_dead
from drapto_engine.infrastructure.workers import default_workers

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 20.0


class EngineUnreachable(DraptoError):
    """The engine's scheduler could not be reached or refused this worker's certificate."""


class EngineLost(DraptoError):
    """The engine went away while this worker served it (exit 3, as clients do)."""


@dataclass(frozen=True)
class WorkerOptions:
    address: str
    bundle: Path
    slots: int | None = None
    path_map: PathMap = ()
    insecure: bool = False
    dashboard: str | None = None
    name: str | None = None
    timeout_s: float = CONNECT_TIMEOUT_S
    debug: bool = False


def default_slots() -> int:
    """As the engine's local bound: one encoder per core, fewer when memory is short
    (sized for HD, the common case)."""
    return default_workers(ResolutionClass.HD)


async def engine_toolchain(
    address: Address, security: Security, timeout_s: float = CONNECT_TIMEOUT_S
) -> str:
    """Ask the engine's scheduler for its fingerprint (this also proves TLS works)."""
    try:
        async with rpc(
            str(address),
            connection_args=security.get_connection_args("worker"),
            timeout=timeout_s,
        ) as scheduler:
            reply = await asyncio.wait_for(getattr(scheduler, TOOLCHAIN_HANDLER)(), timeout_s)
    except (OSError, TimeoutError) as exc:
        raise EngineUnreachable(
            f"cannot join the engine at {address}: {exc}",
            hint="check the address and the firewall, and that the bundle comes from this engine's `drapto cluster init`",
        ) from exc
    if not isinstance(reply, dict) or "toolchain" not in reply:
        raise EngineUnreachable(f"{address} is not a drapto engine with a cluster")
    return str(reply["toolchain"])


async def run_worker(options: WorkerOptions) -> int:
    """Run until a signal (exit 128+N) or until the engine closes this worker (exit 1)."""
    address = check_address(options.address, insecure=options.insecure)
    dashboard = check_dashboard(options.dashboard, insecure=options.insecure)
    security = worker_security(address, options.bundle)
    slots = default_slots() if options.slots is None else options.slots
    if slots < 1:
        raise ClusterUsageError("--slots must be at least 1")
    risks = [address_risk(address, "this worker's engine link and its own port")]
    if dashboard is not None and not is_loopback(dashboard.rpartition(":")[0]):
        risks.append(dashboard_risk(dashboard))
    for risk in filter(None, risks):
        print(f"drapto: warning: insecure: {risk}", file=sys.stderr, flush=True)
    for _, local in options.path_map:
        if not local.is_dir():
            log.warning("path map: %s is not a folder on this machine", local)
    worker_tools = await asyncio.to_thread(fingerprint)
    engine_tools = await engine_toolchain(address, security, options.timeout_s)
    if worker_tools != engine_tools:
        raise ToolchainError(
            f"refused: this worker's toolchain differs from the engine's: "
            f"{differences(worker_tools, engine_tools)}; "
            "segments of one file must come from one drapto and one encoder version",
            hint="install the engine's drapto and ffmpeg, or point DRAPTO_FFMPEG at the same build",
        )
    await asyncio.to_thread(remove_dead)
    scratch = make_folder("dask")
    try:
        name = options.name or f"{socket.gethostname()}-{os.getpid()}"
        nanny = QuietNanny(
            str(address),
            nthreads=slots,
            resources={ENCODER: slots},
            security=security,
            name=name,
            silence_logs=logging.CRITICAL,  # until the preload routes the log to a file
            preload=["drapto_engine.cluster.node"],
            memory_limit=0,  # encoders run in ffmpeg child processes; drapto bounds them by slots
            local_directory=str(scratch),  # Dask's scratch space: ours, not the shared /tmp
            worker_class=QuietWorker,
            dashboard_address=dashboard,
            env={
                PATH_MAP_ENV: path_map_json(options.path_map),
                DEBUG_ENV: "1" if options.debug else "0",
            },
            startup_information={
                TOOLCHAIN_KEY: functools.partial(constant, worker_tools),
                PATH_MAP_KEY: functools.partial(constant, path_map_json(options.path_map)),
            },
        )
        stopped_by: list[int] = []
        closing: list[asyncio.Task[object]] = []
        loop = asyncio.get_running_loop()

        def stop(signum: int) -> None:
            stopped_by.append(signum)
            closing.append(loop.create_task(nanny.close(reason=f"drapto worker: signal {signum}")))

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop, signum)
        try:
            await nanny
        except RuntimeError as exc:  # Dask's "Nanny failed to start", its cause in the log
            cause = exc.__cause__ or exc
            raise EngineUnreachable(f"the worker could not start: {cause}") from exc
        print(
            f"drapto: worker {name} joined {address} with {counted(slots, 'encoder slot')}",
            flush=True,
        )
        await nanny.finished()
        if stopped_by:
            return 128 + stopped_by[0]
        try:
            await engine_toolchain(address, security, min(options.timeout_s, 5.0))
        except EngineUnreachable as exc:
            raise EngineLost(f"lost the engine at {address}; worker {name} stopped") from exc
        raise EngineUnreachable(
            f"the engine at {address} closed worker {name} (see the engine's log)"
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
