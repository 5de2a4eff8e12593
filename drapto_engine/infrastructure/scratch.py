"""Scratch folders named after the process that made them.

Each folder under paths.scratch_dir() is `drapto-KIND-PID@HOST+RANDOM`: whoever starts
later on this host removes the folders whose process is gone (killed, so it could not
clean up), and never one whose process still runs. The host is in the name because a
home folder may be shared by several machines, whose process ids mean nothing here.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import stat
import tempfile
from pathlib import Path

import psutil

from drapto_engine.core.errors import DraptoError
from drapto_engine.infrastructure.paths import scratch_dir

log = logging.getLogger(__name__)

OWNED = re.compile(r"^drapto-[a-z]+-(?P<pid>\d+)@(?P<host>[^+/]+)\+")
CLOCK_SLACK_S = 1.0


def scratch_root() -> Path:
    """paths.scratch_dir(), created 0700; refused when it is not this user's folder."""
    root = scratch_dir()
    try:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = root.lstat()
    except OSError as exc:
        raise DraptoError(f"cannot create the scratch folder: {exc.strerror}", root) from exc
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise DraptoError("the scratch folder is not a folder of yours", root)
    if info.st_mode & 0o077:
        os.chmod(root, 0o700)
    return root


def prefix(kind: str) -> str:
    """The start of the name of this process's folders of `kind` (lower-case letters)."""
    return f"drapto-{kind}-{os.getpid()}@{socket.gethostname()}+"


def make_folder(kind: str) -> Path:
    """A new private folder of this process under scratch_root()."""
    return Path(tempfile.mkdtemp(prefix=prefix(kind), dir=scratch_root()))


def _owner_alive(pid: int, folder: Path) -> bool:
    """Whether process `pid` runs and is the one that made `folder`: a process started
    after the folder last changed only reuses the id of the one that made it."""
    try:
        started = float(psutil.Process(pid).create_time())
        changed = folder.lstat().st_mtime
    except psutil.NoSuchProcess:
        return False
    except (psutil.Error, OSError):
        return True  # not knowable: keep it
    return started <= changed + CLOCK_SLACK_S


def remove_dead() -> list[Path]:
    """Remove this host's folders under scratch_root() whose process is gone; the list
    of those removed."""
    root, host = scratch_root(), socket.gethostname()
    removed = []
    for folder in root.iterdir():
        owner = OWNED.match(folder.name)
        if owner is None or owner["host"] != host or _owner_alive(int(owner["pid"]), folder):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        if not folder.exists():
            log.info("removed %s, left by process %s", folder, owner["pid"])
            removed.append(folder)
    return removed
