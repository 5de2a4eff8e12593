"""A damaged state database: how damage is recognised, what is read out of the damaged
file before it is moved aside to `drapto.db.corrupt-<time>` (with its -wal and -shm),
and what is said about what was lost.

`StateStore` (store.py) calls this when its open check fails; the queue entries and
meta values read here go into the fresh store through `QueueStore` (queue_store.py).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from drapto_engine.core.jobs import QueueEntry
from drapto_engine.core.text import model_from_json
from drapto_engine.infrastructure.queue_store import QueueStore


@dataclass(frozen=True)
class Recovery:
    """A damaged state file found at open, moved aside and replaced."""

    moved_to: Path
    reason: str
    queue_kept: int
    queue_total: int | None
    """Entries the damaged file had, when even that could be counted."""
    jobs_unread: int | None
    """Job records that could not be read (None: the table could not be read at all)."""

    def message(self, path: Path) -> str:
        if self.queue_total is not None:
            unread = self.queue_total - self.queue_kept
            queue = f"{self.queue_kept} of {self.queue_total} queue entries recovered" + (
                f", {unread} could not be read and are lost" if unread else ""
            )
        elif self.queue_kept:
            queue = f"{self.queue_kept} queue entries recovered, any others could not be read"
        else:
            queue = "the queue could not be read and is lost"
        jobs = (
            "job records could not be read"
            if self.jobs_unread is None
            else f"{self.jobs_unread} job records could not be read"
            if self.jobs_unread
            else "job records were dropped"
        )
        return (
            f"{path}: state database is damaged ({self.reason}); moved aside to "
            f"{self.moved_to.name} and started afresh: {queue}; {jobs} (unfinished jobs "
            "keep the finished segments in their work folders)"
        )


@dataclass
class Salvage:
    """What could be read out of a damaged file: queue entries (JSON, in their order)
    and meta values (paused, the worker bound)."""

    entries: list[str] = field(default_factory=list)
    meta: list[tuple[str, str]] = field(default_factory=list)

    def restore(self, queue: QueueStore) -> None:
        """The salvaged entries (and settings) go into the fresh store, in their order."""
        for key, value in self.meta:
            queue.set_meta(key, value)
        for text in self.entries:
            try:
                entry = model_from_json(QueueEntry, text)
            except ValidationError:
                continue
            queue.add(entry)


def is_damage(exc: sqlite3.DatabaseError) -> bool:
    """Whether an error means the file itself is damaged (not a bug or a lock)."""
    return getattr(exc, "sqlite_errorname", "") in ("SQLITE_CORRUPT", "SQLITE_NOTADB") or any(
        text in str(exc) for text in ("malformed", "not a database")
    )


def replace_damaged(path: Path, reason: str) -> tuple[Recovery, Salvage]:
    """Read what can be read, then move the damaged file (and its WAL) aside."""
    total: int | None = None
    jobs_unread: int | None = None
    salvage = Salvage()
    with contextlib.closing(sqlite3.connect(path)) as old:
        with contextlib.suppress(sqlite3.DatabaseError):
            total = int(old.execute("SELECT count(*) FROM queue").fetchone()[0])
        rows: list[tuple[int, int, str]] = []
        with contextlib.suppress(sqlite3.DatabaseError):
            # in rowid order, rows come out one by one until the damaged page
            for row in old.execute("SELECT position, id, entry FROM queue ORDER BY id"):
                rows.append((int(row[0]), int(row[1]), str(row[2])))
        salvage.entries = [entry for _, _, entry in sorted(rows)]
        with contextlib.suppress(sqlite3.DatabaseError):  # paused, the worker bound
            for row in old.execute("SELECT key, value FROM meta"):
                salvage.meta.append((str(row[0]), str(row[1])))
        with contextlib.suppress(sqlite3.DatabaseError):
            count = int(old.execute("SELECT count(*) FROM jobs").fetchone()[0])
            readable = 0
            with contextlib.suppress(sqlite3.DatabaseError):
                for _ in old.execute("SELECT * FROM jobs"):
                    readable += 1
            jobs_unread = count - readable
    stamp = time.strftime("%Y%m%d-%H%M%S")
    moved = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while moved.exists():
        n += 1
        moved = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            os.replace(side, moved.with_name(moved.name + suffix))
    os.replace(path, moved)
    kept = 0
    for text in salvage.entries:
        try:
            model_from_json(QueueEntry, text)
            kept += 1
        except ValidationError:
            pass
    return Recovery(moved, reason, kept, total, jobs_unread), salvage
