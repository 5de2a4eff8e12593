"""The Dask worker and nanny classes `drapto worker` runs: no HTTP listener unless a
dashboard address is given, and no connection but the engine's and their own."""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

import psutil
from distributed import Nanny, Worker

from drapto_engine.cluster import guard, route_dask_logs
from drapto_engine.cluster.scheduler import QuietHTTP
from drapto_engine.core.errors import DraptoError
from drapto_engine.infrastructure.scratch import remove_dead
from drapto_engine.logging_setup import configure

log = logging.getLogger(__name__)

DEBUG_ENV = "DRAPTO_WORKER_DEBUG"
MACHINE_METRICS = "drapto_host"
"""Key of the worker machine's figures in Dask's worker metrics (ws.metrics)."""


def certificate_serial(path: str) -> int:
    from cryptography import x509

    with open(path, "rb") as pem:
        return int(x509.load_pem_x509_certificate(pem.read()).serial_number)


class EngineAndSelfOnly:
    """For a worker or its nanny: over TLS, only the engine's certificate and this
    worker's own may connect (they share the CA with every other worker's bundle, and a
    Dask worker runs the functions it is sent)."""

    async def listen(
        self, port_or_addr: Any = None, allow_offload: bool = True, **kwargs: Any
    ) -> None:
        cert = getattr(getattr(self, "security", None), "tls_worker_cert", None)
        own = certificate_serial(cert) if cert else None
        if own is not None:
            guard.install(own)
        await super().listen(port_or_addr, allow_offload, **kwargs)  # type: ignore[misc]
        if own is not None:
            for listener in guard.listeners(self):
                listener.only = frozenset({own})


class QuietWorker(EngineAndSelfOnly, QuietHTTP, Worker):
    """A Worker with no HTTP listener unless a dashboard is asked for, reached only by
    the engine and its own nanny."""


class QuietNanny(EngineAndSelfOnly, Nanny):
    """A Nanny reached only by the engine and its own worker."""


def constant(value: Any, worker: Any = None) -> Any:
    """A startup-information function returning a fixed value (picklable with partial)."""
    return value


def machine_metrics(worker: Any = None) -> dict[str, Any]:
    """This machine's CPU and memory as psutil reads them, sent with each heartbeat:
    the engine's `drapto status` and TUI show them per worker."""
    memory = psutil.virtual_memory()
    return {
        "host": socket.gethostname(),
        "cpu_percent": psutil.cpu_percent(interval=None),
        "memory_total": memory.total,
        "memory_available": memory.available,
    }


def dask_setup(worker: Any) -> None:
    """Preload run in the worker process: its log to a drapto log file, not stderr, so
    that `drapto worker` says its problems in one line; its machine's figures in its
    heartbeats; the scratch folders of dead processes removed (a worker process the
    nanny restarts after a kill finds its predecessor's)."""
    configure(debug=os.environ.get(DEBUG_ENV) == "1")
    route_dask_logs()
    worker.metrics[MACHINE_METRICS] = machine_metrics
    try:
        remove_dead()
    except (DraptoError, OSError) as exc:
        log.warning("cannot clean the scratch folder: %s", exc)
