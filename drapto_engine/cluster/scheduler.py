"""The Dask scheduler the engine hosts, with drapto's rules: TLS-only beyond loopback, no
HTTP listener unless a dashboard is asked for, and workers of another toolchain refused."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Callable
from typing import Any

from distributed import Scheduler
from distributed.core import rpc
from distributed.diagnostics.plugin import SchedulerPlugin
from distributed.http.routing import RoutingApplication
from distributed.metrics import time
from distributed.scheduler import heartbeat_interval
from distributed.security import Security
from distributed.utils import has_arg
from tornado.httpserver import HTTPServer

from drapto_engine.cluster import ClusterUsageError
from drapto_engine.cluster.certs import ENGINE_NAME
from drapto_engine.cluster.security import check_address, check_dashboard

log = logging.getLogger(__name__)

TOOLCHAIN_KEY = "drapto_toolchain"
"""Key of the worker's toolchain fingerprint in its startup information (ws.extra)."""
PATH_MAP_KEY = "drapto_path_map"
"""Key of the worker's path map (JSON) in its startup information."""
TOOLCHAIN_HANDLER = "drapto_toolchain"
"""Scheduler RPC a starting worker calls to compare toolchains before it joins."""
ENCODER = "encoder"
"""The Dask resource a segment task takes one of; `drapto worker --slots N` offers N."""


ENGINE_ONLY = (
    "register-client",
    "run_function",
    "feed",
    "broadcast",
    "proxy",
    "scatter",
    "update_data",
    "terminate",
    "restart",
    "restart_workers",
    "rebalance",
    "replicate",
    "set_resources",
    "set_restrictions",
    "register_scheduler_plugin",
    "unregister_scheduler_plugin",
    "register_worker_plugin",
    "unregister_worker_plugin",
    "register_nanny_plugin",
    "unregister_nanny_plugin",
    "dump_cluster_state_to_url",
    "get_logs",
    "logs",
    "worker_logs",
)
"""Scheduler operations that run code, place data or steer the cluster: a worker's
certificate, signed by the same CA, must not reach them (a stolen worker key would
otherwise run code in the engine). Workers need none of them."""


def peer_name(comm: Any) -> str | None:
    """The common name of the certificate the peer presented (None on plain TCP)."""
    subject = (comm.extra_info.get("peercert") or {}).get("subject", ())
    for rdn in subject:
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


def _engine_only(op: str, handler: Callable[..., Any]) -> Callable[..., Any]:
    takes_comm = has_arg(handler, "comm")

    async def guarded(comm: Any, **msg: Any) -> Any:
        name = peer_name(comm)
        if name != ENGINE_NAME:
            log.warning(
                "refused %r from %s (certificate %s): only the engine may do that",
                op,
                comm.peer_address,
                name,
            )
            raise PermissionError(f"{op!r} is for the drapto engine only")
        result = handler(comm, **msg) if takes_comm else handler(**msg)
        return await result if inspect.isawaitable(result) else result

    return guarded


def restrict_to_engine(scheduler: Scheduler) -> None:
    """Let only the engine's certificate register clients or use ENGINE_ONLY operations."""
    for op in ENGINE_ONLY:
        handler = scheduler.handlers.get(op)
        if handler is not None:
            scheduler.handlers[op] = _engine_only(op, handler)


def no_http_server(node: Any) -> None:
    """Give a Dask node the HTTP attributes it expects, with nothing listening."""
    node.http_application = RoutingApplication([])
    node.http_server = HTTPServer(node.http_application)


class QuietHTTP:
    """For a Dask node (scheduler or worker): its HTTP server (dashboard, /info, /json,
    /metrics) listens only when a dashboard address is given. Dask's own starts one (the
    scheduler on port 8787) even with dashboard=False."""

    def start_http_server(
        self,
        routes: Any,
        dashboard_address: Any,
        default_port: int = 0,
        ssl_options: Any = None,
    ) -> None:
        if dashboard_address is None:
            no_http_server(self)
            return
        super().start_http_server(  # type: ignore[misc]
            routes, dashboard_address, default_port, ssl_options
        )


NANNY_KILL_S = 30.0
"""How long the background restart of a silent worker waits on its nanny."""


class QuietScheduler(QuietHTTP, Scheduler):
    """A Scheduler with no HTTP listener unless a dashboard is asked for, which lets a
    silent worker's segments go elsewhere as soon as its time-to-live runs out."""

    async def check_worker_ttl(self) -> None:
        """Dask restarts a worker silent for longer than worker-ttl through its nanny and
        waits up to 30 s for the nanny before the worker's tasks may run elsewhere; on a
        machine that hangs the nanny is silent too, so a segment stayed stuck for the ttl
        plus 30 s. Here the worker is removed at once (its segments run elsewhere) and
        its nanny is asked to restart it in the background."""
        assert self.worker_ttl
        now = time()
        ttl = max(self.worker_ttl, 10 * heartbeat_interval(len(self.workers)))
        silent = [ws for ws in self.workers.values() if now - ws.last_seen > ttl]
        for ws in silent:
            log.warning(
                "cluster worker %s (%s) silent for %.0f s: its segments run elsewhere",
                ws.name,
                ws.address,
                now - ws.last_seen,
            )
            nanny = ws.nanny
            await self.remove_worker(ws.address, stimulus_id=f"drapto-worker-ttl-{now}")
            if nanny:
                with contextlib.suppress(RuntimeError):  # the scheduler is closing
                    self._ongoing_background_tasks.call_soon(self._restart_silent, nanny)

    async def _restart_silent(self, nanny: str) -> None:
        """Best effort: a nanny that answers kills its worker process and starts a new
        one, which joins again; a silent one is left to its machine."""
        with contextlib.suppress(Exception):
            async with rpc(nanny, connection_args=self.connection_args) as remote:
                await asyncio.wait_for(remote.kill(reason="drapto: worker-ttl"), NANNY_KILL_S)


class ToolchainGate(SchedulerPlugin):
    """Refuses workers whose fingerprint (drapto, ffmpeg, SVT-AV1, encoder arguments:
    cluster/toolchain.py) is not the engine's; its line names what differs.

    A refused worker loses its encoder slots at once (no segment can be placed there)
    and is told to close, nanny included, so it is not restarted.
    """

    name = "drapto-toolchain-gate"

    def __init__(self, fingerprint: str) -> None:
        self.fingerprint = fingerprint
        self.refused: dict[str, str] = {}

    async def start(self, scheduler: Scheduler) -> None:
        scheduler.handlers[TOOLCHAIN_HANDLER] = self.describe

    def describe(self) -> dict[str, str]:
        return {"toolchain": self.fingerprint}

    def add_worker(self, scheduler: Scheduler, worker: str) -> None:
        ws = scheduler.workers[worker]
        theirs = ws.extra.get(TOOLCHAIN_KEY)
        if theirs == self.fingerprint:
            return
        from drapto_engine.cluster.toolchain import differences

        shown = (
            differences(str(theirs), self.fingerprint)
            if theirs
            else f"no drapto toolchain (not started by `drapto worker`) (engine: {self.fingerprint})"
        )
        message = f"refused worker {ws.name} at {worker}: its toolchain differs from the engine's: {shown}"
        log.warning("%s", message)
        self.refused[worker] = message
        scheduler.remove_resources(worker)
        ws.resources = {}
        ws.used_resources = {}
        scheduler.worker_send(worker, {"op": "close", "reason": f"drapto: {message}"})


async def start_scheduler(
    listen: str,
    security: Security,
    dashboard: str | None,
    *,
    insecure: bool = False,
    toolchain: str | None = None,
) -> QuietScheduler:
    """Start a scheduler on `listen` (tls://HOST:PORT; port 0 picks one).

    `security` must carry the engine's certificates for a tls:// address; a tcp:// one
    beyond loopback, or a dashboard beyond loopback, needs `insecure`. With `toolchain`
    (the engine's fingerprint), workers of any other toolchain are refused.
    """
    address = check_address(listen, insecure=insecure)
    dashboard_address = check_dashboard(dashboard, insecure=insecure)
    if address.scheme == "tls" and not (
        security.require_encryption
        and getattr(security, "tls_ca_file", None)
        and getattr(security, "tls_scheduler_cert", None)
    ):
        raise ClusterUsageError(
            f"{address} needs the engine's certificates", hint="run `drapto cluster init`"
        )
    scheduler = QuietScheduler(
        host=address.host,
        port=address.port,
        protocol=address.scheme,
        security=security,
        dashboard=dashboard_address is not None,
        dashboard_address=dashboard_address,
    )
    if address.scheme == "tls":
        restrict_to_engine(scheduler)
    if toolchain is not None:
        scheduler.add_plugin(ToolchainGate(toolchain))
    await scheduler
    log.info("cluster scheduler listening on %s", scheduler.address)
    return scheduler


def refused_workers(scheduler: Scheduler) -> dict[str, str]:
    """Workers the toolchain gate turned away: address -> the line it logged."""
    gate = scheduler.plugins.get(ToolchainGate.name)
    return dict(gate.refused) if isinstance(gate, ToolchainGate) else {}
