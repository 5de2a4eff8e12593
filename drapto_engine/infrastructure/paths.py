"""Where drapto keeps its state, logs and config (XDG base directories)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

MAX_SOCKET_PATH = 107
"""A Unix socket's sun_path holds 108 bytes on Linux, the terminating NUL included."""


def _xdg(var: str, fallback: str) -> Path:
    value = os.environ.get(var)
    return Path(value) if value and Path(value).is_absolute() else Path.home() / fallback


def state_dir() -> Path:
    return Path(
        os.environ.get("DRAPTO_STATE_DIR") or _xdg("XDG_STATE_HOME", ".local/state") / "drapto"
    )


def config_file() -> Path:
    return _xdg("XDG_CONFIG_HOME", ".config") / "drapto" / "config.toml"


def log_dir() -> Path:
    return state_dir() / "logs"


def state_db(directory: Path | None = None) -> Path:
    """The SQLite file holding jobs and segments."""
    return (directory or state_dir()) / "drapto.db"


def engine_lock(directory: Path | None = None) -> Path:
    """The lock a running engine service holds on its state folder (flock, exclusive)."""
    return (directory or state_dir()) / "engine.lock"


def held_by_another(lock: Path) -> bool:
    """Whether an open file elsewhere holds an exclusive flock on `lock`: a live engine's
    (the lock dies with its process, so a killed engine's never counts)."""
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # and with it the shared lock just taken
    return False


def lock_holder(lock: Path) -> int | None:
    """The process id a live engine wrote into its lock file (see held_by_another)."""
    try:
        return int(lock.read_text(encoding="ascii").split()[0])
    except (OSError, ValueError, IndexError):
        return None


def scratch_dir() -> Path:
    """Temporary folders of drapto's processes (a worker's segments, Dask's scratch
    space): this user's own, never the shared /tmp."""
    return state_dir() / "tmp"
