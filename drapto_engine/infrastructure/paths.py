"""Where drapto keeps its state, logs and config (XDG base directories)."""

from __future__ import annotations

import os
from pathlib import Path


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


def scratch_dir() -> Path:
    """Temporary folders of drapto's processes (a worker's segments, Dask's scratch
    space): this user's own, never the shared /tmp."""
    return state_dir() / "tmp"
