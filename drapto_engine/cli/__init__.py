"""`drapto` entry points: one module per command; `main` is the one error boundary."""

from __future__ import annotations

from drapto_engine.cli.main import main

__all__ = ["main"]
