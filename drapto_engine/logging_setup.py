"""Logging, configured once at the entry point.

- A run (`drapto encode`, `drapto --batch`, the TUI) logs to its own file under
  `<state>/logs/`, `drapto-<time>-<pid>.log`; only the newest KEEP_RUN_LOGS are kept.
- The engine service (`drapto serve`) logs to `<state>/logs/engine.log`, rotated at
  SERVICE_LOG_BYTES with SERVICE_LOG_BACKUPS old files (`engine.log.1` ...).
- Short commands (probe, status, flags, config, --help, --version) log nowhere.
- `--debug` echoes everything to stderr as well.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import time
from enum import StrEnum
from pathlib import Path

from drapto_engine.core.text import ESCAPE
from drapto_engine.infrastructure.paths import log_dir

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
KEEP_RUN_LOGS = 20
SERVICE_LOG = "engine.log"
SERVICE_LOG_BYTES = 10 << 20
SERVICE_LOG_BACKUPS = 3
RUN_LOG_GLOB = "drapto-*.log"


class LogTo(StrEnum):
    NOWHERE = "nowhere"
    """Short commands: stderr with --debug, no file."""
    RUN = "run"
    """A file of this run's own, the oldest beyond the newest KEEP_RUN_LOGS removed."""
    SERVICE = "service"
    """The engine service's one rotating file."""


def configure(
    debug: bool = False, directory: Path | None = None, to: LogTo = LogTo.RUN
) -> Path | None:
    """Set up the root logger; returns the log file, or None when there is none."""
    root = logging.getLogger()
    root.setLevel(logging.DEBUG)
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    path: Path | None = None
    if to is not LogTo.NOWHERE:
        try:
            folder = directory or log_dir()
            folder.mkdir(parents=True, exist_ok=True)
            file_handler: logging.Handler
            if to is LogTo.SERVICE:
                path = folder / SERVICE_LOG
                file_handler = logging.handlers.RotatingFileHandler(
                    path,
                    maxBytes=SERVICE_LOG_BYTES,
                    backupCount=SERVICE_LOG_BACKUPS,
                    encoding="utf-8",
                    errors=ESCAPE,  # a name that is not UTF-8 logged as `bad\xff.mp4`
                )
            else:
                path = folder / f"drapto-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
                file_handler = logging.FileHandler(path, encoding="utf-8", errors=ESCAPE)
                prune_run_logs(folder, keep=KEEP_RUN_LOGS, current=path)
            file_handler.setFormatter(logging.Formatter(FORMAT))
            root.addHandler(file_handler)
        except OSError:
            path = None  # a read-only home must not stop an encode
    if debug:
        stream = logging.StreamHandler()
        stream.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(stream)
    if not root.handlers:
        root.addHandler(logging.NullHandler())
    return path


def prune_run_logs(folder: Path, keep: int, current: Path | None = None) -> list[Path]:
    """Remove all but the newest `keep` run logs (their names sort by start time).

    `current` (this run's file) is never removed. Returns what was removed."""
    logs = sorted(folder.glob(RUN_LOG_GLOB), key=_started)
    removed = []
    for old in logs[: max(0, len(logs) - keep)]:
        if old == current:
            continue
        try:
            old.unlink()
        except FileNotFoundError:
            continue  # another drapto pruned it first
        removed.append(old)
    return removed


def _started(path: Path) -> tuple[str, float]:
    """`drapto-YYYYmmdd-HHMMSS`, then the modification time within the same second."""
    try:
        mtime = path.stat().st_mtime
    except OSError:
        mtime = 0.0
    return path.name[:22], mtime
