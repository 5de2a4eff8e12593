"""`drapto` entry points: one module per command; `main` is the one error boundary."""

from __future__ import annotations

import os

# Start-up cost, paid by every drapto command (these only set defaults; the environment wins):
# drapto does no linear algebra, and numpy's OpenBLAS otherwise starts one thread per core
# at import (about 0.1 CPU-second per start); and drapto uses no pydantic plugins, whose
# lookup reads the entry points of every installed package.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

from drapto_engine.cli.main import main

__all__ = ["main"]
