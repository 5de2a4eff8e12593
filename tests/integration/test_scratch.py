"""Scratch folders named after their process: only those of gone processes on this host
are removed (real processes, real folders in the session's own state folder)."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys

from drapto_engine.infrastructure.paths import scratch_dir
from drapto_engine.infrastructure.scratch import make_folder, remove_dead, scratch_root


def test_only_folders_of_gone_processes_on_this_host_are_removed() -> None:
    root = scratch_root()
    assert root == scratch_dir() and stat.S_IMODE(root.stat().st_mode) == 0o700
    host = socket.gethostname()
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(gone.stdout)
    dead = root / f"drapto-segment-{dead_pid}@{host}+abc"
    elsewhere = root / f"drapto-segment-{dead_pid}@not-{host}+abc"
    unrelated = root / f"something-{dead_pid}"
    reused = root / f"drapto-dask-{os.getpid()}@{host}+old"  # older than this process
    for folder in (dead, elsewhere, unrelated, reused):
        folder.mkdir()
        (folder / "partial").write_bytes(b"x")
    os.utime(reused, (0, 0))
    live = make_folder("segment")
    assert live.name.startswith(f"drapto-segment-{os.getpid()}@{host}+")
    removed = remove_dead()
    assert set(removed) == {dead, reused}
    assert not dead.exists() and not reused.exists()
    assert elsewhere.exists() and unrelated.exists() and live.exists()
