"""The Dask worker class `drapto worker` runs under its nanny: no HTTP listener unless a
dashboard address is given."""

from __future__ import annotations

from typing import Any

from distributed import Worker

from drapto_engine.cluster.scheduler import no_http_server


class QuietWorker(Worker):
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
        super().start_http_server(routes, dashboard_address, default_port, ssl_options)


def constant(value: Any, worker: Any = None) -> Any:
    """A startup-information function returning a fixed value (picklable with partial)."""
    return value
