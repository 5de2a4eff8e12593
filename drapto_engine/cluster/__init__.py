"""Spreading segment encodes over machines with Dask `distributed` (optional extra).

Nothing outside this package imports `distributed`; inside it, `distributed` is imported
in functions, so `import drapto_engine` and every module walk work without the extra.
"""

from __future__ import annotations

import importlib.util
import logging

from drapto_engine.core.errors import DraptoError

INSTALL_HINT = (
    "cluster commands need the cluster extra: in drapto's folder, "
    ".venv/bin/pip install -e '.[cluster]'"
)


class ClusterUsageError(DraptoError):
    """A bad address, option or bundle: the command line is wrong (exit 2)."""


def available() -> bool:
    """Whether the cluster extra (distributed and cryptography) is installed."""
    return all(
        importlib.util.find_spec(name) is not None for name in ("distributed", "cryptography")
    )


def route_dask_logs() -> None:
    """Dask's loggers write to stderr on their own; send them to drapto's log instead
    (the root logger: the run's log file, and stderr only with --debug)."""
    for name in ("distributed", "dask", "tornado"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate = True
        logger.setLevel(logging.INFO)
