"""Logging, configured once at the entry point: a file per run, stderr only when asked."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from drapto_engine.infrastructure.paths import log_dir

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def configure(debug: bool = False, directory: Path | None = None) -> Path | None:
    """Send everything to a per-run log file; echo to stderr with --debug. Returns the file."""
    root = logging.getLogger()
    root.setLevel(logging.DEBUG)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    path: Path | None = None
    try:
        folder = directory or log_dir()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"drapto-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
        file_handler = logging.FileHandler(path, encoding="utf-8")
        file_handler.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(file_handler)
    except OSError:
        path = None  # a read-only home must not stop an encode
    if debug:
        stream = logging.StreamHandler()
        stream.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(stream)
    else:
        root.addHandler(logging.NullHandler())
    return path
