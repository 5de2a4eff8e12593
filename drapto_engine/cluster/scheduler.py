"""The Dask scheduler the engine hosts, with drapto's rules: TLS-only beyond loopback, no
HTTP listener unless a dashboard is asked for, and workers of another toolchain refused."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import pickle
from collections.abc import Callable
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from distributed import Scheduler
from distributed.core import rpc
from distributed.diagnostics.plugin import SchedulerPlugin
from distributed.http.routing import RoutingApplication
from distributed.metrics import time
from distributed.scheduler import heartbeat_interval
from distributed.security import Security
from distributed.utils import has_arg, has_keyword
from tornado.httpserver import HTTPServer
from tornado.ioloop import PeriodicCallback

from drapto_engine.cluster import ClusterUsageError, guard
from drapto_engine.cluster.certs import ENGINE_NAME, RevocationList
from drapto_engine.cluster.guard import peer_name
from drapto_engine.cluster.security import check_address, check_dashboard
from drapto_engine.cluster.tasks import PROBES_TOPIC, PROGRESS_TOPIC

log = logging.getLogger(__name__)

TOOLCHAIN_KEY = "drapto_toolchain"
"""Key of the worker's toolchain fingerprint in its startup information (ws.extra)."""
PATH_MAP_KEY = "drapto_path_map"
"""Key of the worker's path map (JSON) in its startup information."""
TOOLCHAIN_HANDLER = "drapto_toolchain"
"""Scheduler RPC a starting worker calls to compare toolchains before it joins."""
ENCODER = "encoder"
"""The Dask resource a segment task takes one of; `drapto worker --slots N` offers N."""


WORKER_OPS = frozenset(
    {
        "identity",
        "register-worker",
        "register_nanny",
        "heartbeat_worker",
        "who_has",
        "unregister",
        "retire_workers",
        "log_event",
        TOOLCHAIN_HANDLER,
    }
)
"""The scheduler operations a worker's certificate may call: what a Dask worker and its
nanny call on their scheduler, and drapto's toolchain check. Every other operation
(registering a client, running functions, plugins, placing data, steering the cluster)
is for the engine's certificate only: workers share the CA, and many of those operations
run code or unpickle what they are sent."""

WORKER_STREAM_OPS = frozenset(
    {
        "task-finished",
        "task-erred",
        "release-worker-data",
        "add-keys",
        "long-running",
        "reschedule",
        "keep-alive",
        "log-event",
        "worker-status-change",
        "request-refresh-who-has",
    }
)
"""The messages a worker's certificate may send on its stream: Dask dispatches a
worker's stream and a client's from one table, and a client's `update-graph` unpickles
the graph it carries."""

RETIRE_OWN = frozenset({"workers", "close_workers", "remove", "stimulus_id"})
"""What a worker passes to `retire_workers` (when it closes gracefully): workers by
address. Choosing them by a `key` would unpickle it."""

_stream_peer: ContextVar[str | None] = ContextVar("drapto_stream_peer", default=None)


def _refuse(op: str, peer: str, name: str | None) -> PermissionError:
    log.warning("refused %r from %s (certificate %s): only the engine may do that", op, peer, name)
    return PermissionError(f"{op!r} is for the drapto engine only")


def _engine_only(op: str, handler: Callable[..., Any]) -> Callable[..., Any]:
    takes_comm = has_arg(handler, "comm")
    # Dask passes a request's `serializers` (what the caller reads: the engine's client
    # reads msgpack only) to a handler that names it, as `gather` and `broadcast` do.
    takes_serializers = has_keyword(handler, "serializers")

    async def guarded(comm: Any, serializers: Any = None, **msg: Any) -> Any:
        name = peer_name(comm)
        if name != ENGINE_NAME and not (op == "retire_workers" and set(msg) <= RETIRE_OWN):
            raise _refuse(op, comm.peer_address, name)
        if takes_serializers:
            msg["serializers"] = serializers
        result = handler(comm, **msg) if takes_comm else handler(**msg)
        return await result if inspect.isawaitable(result) else result

    return guarded


def _engine_stream(op: str, handler: Callable[..., Any]) -> Callable[..., Any]:
    def check(msg: dict[str, Any]) -> None:
        name = _stream_peer.get()
        if name != ENGINE_NAME:
            raise _refuse(op, str(msg.get("worker") or msg.get("client")), name)

    if inspect.iscoroutinefunction(handler):

        async def guarded_async(**msg: Any) -> Any:
            check(msg)
            return await handler(**msg)

        return guarded_async

    def guarded(**msg: Any) -> Any:
        check(msg)
        return handler(**msg)

    return guarded


class RemoteTaskFailed(Exception):
    """A task raised on a worker: the engine's own exception, holding only the text the
    worker gave of its error. A worker's pickled exception and traceback are dropped
    before the scheduler keeps or forwards them: the engine's client would unpickle them."""


ERROR_TEXT_MAX = 2000
"""Characters of a worker's error text the engine keeps."""


def _own_task_error(handler: Callable[..., Any]) -> Callable[..., Any]:
    """A worker's `task-erred` (Dask 2026.11 TaskErredMsg: `exception` and `traceback`
    pickled by the worker, `exception_text` plain): its exception made here from its text."""

    def task_erred(**msg: Any) -> Any:
        text = msg.get("exception_text")
        text = text[:ERROR_TEXT_MAX] if isinstance(text, str) and text else "an error"
        msg["exception"] = pickle.dumps(RemoteTaskFailed(text))
        msg["traceback"] = None
        return handler(**msg)

    return task_erred


def _no_task_type(handler: Callable[..., Any]) -> Callable[..., Any]:
    """A worker's `task-finished` without `type`, the result's class that the worker
    pickled and the engine's client would unpickle (Dask 2026.11 TaskFinishedMsg)."""

    def task_finished(**msg: Any) -> Any:
        msg["type"] = None
        return handler(**msg)

    return task_finished


WORKER_TOPICS = frozenset({PROGRESS_TOPIC, PROBES_TOPIC})
"""The event topics a worker's certificate may log to. Clients follow topics (the
engine's client follows Dask's "print" and "warn", and unpickles what a "warn" event
carries), so any other event of a worker is dropped."""


def _plain(value: Any, depth: int = 0) -> bool:
    """Whether `value` is plain data: no bytes (a pickle, for a "warn" event's reader),
    no Serialized payload (unpickled by the client that reads it)."""
    if value is None or isinstance(value, bool | int | float | str):
        return True
    if depth > 8:
        return False
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v, depth + 1) for k, v in value.items())
    if isinstance(value, list | tuple):
        return all(_plain(v, depth + 1) for v in value)
    return False


def _worker_event(topic: Any, msg: Any) -> bool:
    return isinstance(topic, str) and topic in WORKER_TOPICS and _plain(msg)


def _events_from_workers(handler: Callable[..., Any]) -> Callable[..., Any]:
    """The `log-event` stream message: a worker's event kept only by `_worker_event`."""

    def log_event(**msg: Any) -> Any:
        if _stream_peer.get() != ENGINE_NAME and not _worker_event(
            msg.get("topic"), msg.get("msg")
        ):
            log.debug("dropped an event of %s on %r", msg.get("worker"), msg.get("topic"))
            return None
        return handler(**msg)

    return log_event


def _event_calls_from_workers(handler: Callable[..., Any]) -> Callable[..., Any]:
    """The `log_event` call (a nanny's events): as `_events_from_workers`."""

    def log_event(comm: Any, **msg: Any) -> Any:
        if peer_name(comm) != ENGINE_NAME and not _worker_event(msg.get("topic"), msg.get("msg")):
            log.debug("dropped an event of %s on %r", comm.peer_address, msg.get("topic"))
            return None
        return handler(**msg)

    return log_event


def restrict_to_engine(scheduler: Scheduler) -> None:
    """Let a certificate other than the engine's use only WORKER_OPS and, on its stream,
    WORKER_STREAM_OPS (`retire_workers` only of workers named by address); take the
    pickles out of what workers report of their tasks before anything keeps them."""
    for op, handler in list(scheduler.handlers.items()):
        if op not in WORKER_OPS or op == "retire_workers":
            scheduler.handlers[op] = _engine_only(op, handler)
    for op, handler in list(scheduler.stream_handlers.items()):
        if op not in WORKER_STREAM_OPS:
            scheduler.stream_handlers[op] = _engine_stream(op, handler)
    scheduler.stream_handlers["task-erred"] = _own_task_error(
        scheduler.stream_handlers["task-erred"]
    )
    scheduler.stream_handlers["task-finished"] = _no_task_type(
        scheduler.stream_handlers["task-finished"]
    )
    scheduler.stream_handlers["log-event"] = _events_from_workers(
        scheduler.stream_handlers["log-event"]
    )
    scheduler.handlers["log_event"] = _event_calls_from_workers(scheduler.handlers["log_event"])


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


REVOCATION_CHECK_S = 1.0
"""How often the engine looks for newly revoked certificates among its connections."""


class QuietScheduler(QuietHTTP, Scheduler):
    """A Scheduler with no HTTP listener unless a dashboard is asked for, which lets a
    silent worker's segments go elsewhere as soon as its time-to-live runs out, and
    refuses (and drops) the certificates `drapto cluster revoke` lists."""

    revocations: RevocationList | None = None

    async def listen(
        self, port_or_addr: Any = None, allow_offload: bool = True, **kwargs: Any
    ) -> None:
        await super().listen(port_or_addr, allow_offload, **kwargs)
        # No await since the listener started: no connection was accepted before this.
        if self.revocations is not None:
            for listener in guard.listeners(self):
                listener.revoked = self.revocations.revoked

    def drop_revoked(self) -> None:
        """Close the connections of certificates revoked since they connected (their
        worker leaves, its segments run elsewhere)."""
        if self.revocations is None or not self.revocations.changed():
            return
        dropped: dict[str, list[str]] = {}
        for listener in guard.listeners(self):
            for name, peers in listener.drop_revoked().items():
                dropped.setdefault(name, []).extend(peers)
        for name, peers in dropped.items():
            log.warning(
                "dropped %s (%s): its certificate was revoked", name, ", ".join(sorted(peers))
            )

    async def handle_stream(self, comm: Any, extra: dict[str, Any] | None = None) -> None:
        token = _stream_peer.set(peer_name(comm))
        try:
            await super().handle_stream(comm, extra)
        finally:
            _stream_peer.reset(token)

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
    revocations = None
    if address.scheme == "tls":
        guard.install()
        revocations = RevocationList(Path(str(getattr(security, "tls_ca_file", ""))).parent)
    scheduler = QuietScheduler(
        host=address.host,
        port=address.port,
        protocol=address.scheme,
        security=security,
        dashboard=dashboard_address is not None,
        dashboard_address=dashboard_address,
    )
    if revocations is not None:
        scheduler.revocations = revocations
        restrict_to_engine(scheduler)
        scheduler.periodic_callbacks["drapto-revocations"] = PeriodicCallback(
            scheduler.drop_revoked, REVOCATION_CHECK_S * 1000
        )
    if toolchain is not None:
        scheduler.add_plugin(ToolchainGate(toolchain))
    await scheduler
    log.info("cluster scheduler listening on %s", scheduler.address)
    return scheduler


def refused_workers(scheduler: Scheduler) -> dict[str, str]:
    """Workers the toolchain gate turned away: address -> the line it logged."""
    gate = scheduler.plugins.get(ToolchainGate.name)
    return dict(gate.refused) if isinstance(gate, ToolchainGate) else {}
