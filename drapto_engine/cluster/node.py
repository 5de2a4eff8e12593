"""The Dask worker class `drapto worker` runs under its nanny: no HTTP listener unless a
dashboard address is given."""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

import psutil
from distributed import Worker

from drapto_engine.cluster import route_dask_logs
from drapto_engine.cluster.scheduler import QuietHTTP
from drapto_engine.core.errors import DraptoError
from drapto_engine.infrastructure.scratch import remove_dead
from drapto_engine.logging_setup import configure

log = logging.getLogger(__name__)

DEBUG_ENV = "DRAPTO_WORKER_DEBUG"
MACHINE_METRICS = "drapto_host"
"""Key of the worker machine's figures in Dask's worker metrics (ws.metrics)."""


class QuietWorker(QuietHTTP, Worker):
    """A Worker with no HTTP listener unless a dashboard is asked for."""


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
