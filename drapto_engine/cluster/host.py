"""The cluster side of the engine: the Dask scheduler it hosts beside its socket service,
its own client of it, and what `drapto status` and the TUI show of the workers.

Import only with the cluster extra (engine.py does so only when a cluster is asked for).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
from distributed import Client
from distributed.security import Security

from drapto_engine.cluster import route_dask_logs
from drapto_engine.cluster.executor import DaskExecutor, SegmentWatch
from drapto_engine.cluster.scheduler import ENCODER, QuietScheduler, start_scheduler
from drapto_engine.cluster.security import check_address, engine_security
from drapto_engine.cluster.toolchain import fingerprint
from drapto_engine.core.metrics import ClusterWorker
from drapto_engine.infrastructure.scratch import make_folder, remove_dead
from drapto_engine.services.executors.local import LocalExecutor

log = logging.getLogger(__name__)

ALLOWED_FAILURES = 2
"""Workers a segment task may take down before it fails (Dask reruns it on another one
each time): three lost workers fail the attempt."""
WORKER_TTL = "60s"
"""A worker silent this long (hung, or its machine gone) is dropped; its segments rerun."""


@dataclass(frozen=True)
class ClusterOptions:
    listen: str
    """tls://HOST:PORT the scheduler listens on (port 0: any free one)."""
    dashboard: str | None = None
    insecure: bool = False
    folder: Path | None = None
    """Where `drapto cluster init` left the engine's certificate (default: config folder)."""
    local_slots: bool = True
    """False: segments go to workers whenever one is usable (`drapto serve --workers 0`)."""
    worker_ttl: str = WORKER_TTL
    """How long a silent (hung) worker keeps its segments before the scheduler drops it."""


CLIENT_READS = ("msgpack",)
"""The only serialization the engine's client reads of what comes back (task results and
replies): plain data. It asks workers for it, and refuses a pickle (its header, or its
frames) with a TypeError before any unpickler sees it."""


def engine_client(address: str, security: Security, **kwargs: Any) -> Client:
    """The engine's Dask client of its scheduler (await it when asynchronous)."""
    return Client(address, security=security, deserializers=list(CLIENT_READS), **kwargs)


class ClusterHost:
    def __init__(self, options: ClusterOptions, ffmpeg: str | None = None) -> None:
        self.options = options
        self.ffmpeg = ffmpeg
        self.scheduler: QuietScheduler | None = None
        self.client: Client | None = None
        self.watch: SegmentWatch | None = None
        self._config: contextlib.ExitStack = contextlib.ExitStack()
        self.scratch: Path | None = None
        """The scheduler's scratch space: drapto's own (see scratch.py), not the shared
        /tmp/dask-scratch-space where another user's or worker's files lie."""

    async def start(self) -> None:
        route_dask_logs()  # into the engine's log file, not onto its stderr
        address = check_address(self.options.listen, insecure=self.options.insecure)
        security = engine_security(address, self.options.folder)
        await asyncio.to_thread(remove_dead)
        self.scratch = make_folder("engine")
        self._config.enter_context(
            dask.config.set(
                {
                    "distributed.scheduler.allowed-failures": ALLOWED_FAILURES,
                    "distributed.scheduler.worker-ttl": self.options.worker_ttl,
                    "temporary-directory": str(self.scratch),
                }
            )
        )
        toolchain = await asyncio.to_thread(fingerprint, self.ffmpeg)
        self.scheduler = await start_scheduler(
            self.options.listen,
            security,
            self.options.dashboard,
            insecure=self.options.insecure,
            toolchain=toolchain,
        )
        self.watch = SegmentWatch(self.scheduler)
        self.scheduler.add_plugin(self.watch)
        self.client = await engine_client(
            self.scheduler.address, security, asynchronous=True, set_as_default=False
        )

    @property
    def address(self) -> str:
        return self.scheduler.address if self.scheduler is not None else ""

    async def stop(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):
                await self.client.close()
        if self.scheduler is not None:
            with contextlib.suppress(Exception):
                await self.scheduler.close()
        self._config.close()
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)

    def executor(self, local: LocalExecutor, **kwargs: Any) -> DaskExecutor:
        assert self.scheduler is not None and self.client is not None and self.watch is not None
        return DaskExecutor(
            local,
            self.scheduler,
            self.client,
            self.watch,
            local_slots=self.options.local_slots,
            **kwargs,
        )

    def workers(self, busy: dict[str, int] | None = None) -> list[ClusterWorker]:
        """The workers as `drapto status` lists them: CPU and memory as each worker's
        own psutil reads its machine (cluster/node.py adds them to Dask's heartbeat)."""
        if self.scheduler is None:
            return []
        views = []
        for ws in self.scheduler.workers.values():
            machine = ws.metrics.get("drapto_host") or {}
            views.append(
                ClusterWorker(
                    name=str(ws.name),
                    address=ws.address,
                    host=str(machine.get("host") or ws.host),
                    slots=int(ws.resources.get(ENCODER, 0)),
                    running=(busy or {}).get(ws.address, len(ws.processing)),
                    cpu_percent=float(machine.get("cpu_percent", ws.metrics.get("cpu", 0.0))),
                    memory_total=int(machine.get("memory_total", 0)),
                    memory_available=int(machine.get("memory_available", 0)),
                )
            )
        return views
