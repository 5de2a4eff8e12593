"""SQLite state store (WAL): jobs, their segments and who holds each job.

Every write commits at once, so whatever a crash leaves is consistent. Calls block;
the StateManager runs them in a thread.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

from drapto_engine.core.jobs import QueueEntry
from drapto_engine.core.models import SegmentState
from drapto_engine.core.state import JobRecord, SegmentRecord

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    input TEXT NOT NULL,
    input_size INTEGER NOT NULL,
    input_mtime_ns INTEGER NOT NULL,
    output TEXT NOT NULL,
    settings TEXT NOT NULL,
    stage TEXT NOT NULL,
    error TEXT,
    analysis TEXT,
    metrics TEXT,
    plan TEXT,
    lock_pid INTEGER,
    lock_heartbeat REAL,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_output ON jobs(output);
CREATE TABLE IF NOT EXISTS segments (
    job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    start_frame INTEGER NOT NULL,
    end_frame INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    encodes INTEGER NOT NULL DEFAULT 0,
    size_bytes INTEGER,
    fps REAL,
    wall_s REAL,
    PRIMARY KEY (job_id, idx)
);
CREATE TABLE IF NOT EXISTS queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    position INTEGER NOT NULL,
    entry TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""
STALE_LOCK_S = 15.0


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class StateStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        """Columns added since a state file was first made."""
        columns = {row["name"] for row in self._db.execute("PRAGMA table_info(jobs)")}
        if "plan" not in columns:
            self._db.execute("ALTER TABLE jobs ADD COLUMN plan TEXT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _write(self, sql: str, args: tuple[object, ...]) -> int:
        with self._lock:
            return self._db.execute(sql, args).rowcount

    def _rows(self, sql: str, args: tuple[object, ...]) -> list[sqlite3.Row]:
        with self._lock:
            return list(self._db.execute(sql, args))

    # jobs

    def add_job(self, job: JobRecord) -> None:
        now = time.time()
        self._write(
            "INSERT OR IGNORE INTO jobs (id, input, input_size, input_mtime_ns, output, settings,"
            " stage, created, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                job.id,
                job.input,
                job.input_size,
                job.input_mtime_ns,
                job.output,
                job.settings,
                job.stage.value,
                now,
                now,
            ),
        )

    def job(self, job_id: str) -> JobRecord | None:
        rows = self._rows("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return _job(rows[0]) if rows else None

    def jobs_for_output(self, output: str) -> list[JobRecord]:
        return [_job(r) for r in self._rows("SELECT * FROM jobs WHERE output = ?", (output,))]

    def delete_job(self, job_id: str) -> None:
        self._write("DELETE FROM jobs WHERE id = ?", (job_id,))

    def set_job(self, job_id: str, **fields: str | None) -> None:
        names = ", ".join(f"{name} = ?" for name in fields)
        self._write(
            f"UPDATE jobs SET {names}, updated = ? WHERE id = ?",  # names are our own keywords
            (*fields.values(), time.time(), job_id),
        )

    # locks

    def acquire(self, job_id: str, pid: int) -> int | None:
        """Take the job for `pid`; returns the live holder's pid when someone else has it."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    "SELECT lock_pid, lock_heartbeat FROM jobs WHERE id = ?", (job_id,)
                ).fetchone()
                holder, beat = (row["lock_pid"], row["lock_heartbeat"]) if row else (None, None)
                fresh = beat is not None and time.time() - beat < STALE_LOCK_S
                if holder and holder != pid and pid_alive(holder) and fresh:
                    self._db.execute("ROLLBACK")
                    return int(holder)
                self._db.execute(
                    "UPDATE jobs SET lock_pid = ?, lock_heartbeat = ? WHERE id = ?",
                    (pid, time.time(), job_id),
                )
                self._db.execute("COMMIT")
                return None
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def heartbeat(self, job_id: str, pid: int) -> None:
        self._write(
            "UPDATE jobs SET lock_heartbeat = ? WHERE id = ? AND lock_pid = ?",
            (time.time(), job_id, pid),
        )

    def release(self, job_id: str, pid: int) -> None:
        self._write(
            "UPDATE jobs SET lock_pid = NULL, lock_heartbeat = NULL WHERE id = ? AND lock_pid = ?",
            (job_id, pid),
        )

    # segments

    def segments(self, job_id: str) -> dict[int, SegmentRecord]:
        rows = self._rows("SELECT * FROM segments WHERE job_id = ? ORDER BY idx", (job_id,))
        return {r["idx"]: _segment(r) for r in rows}

    def put_segment(self, job_id: str, index: int, start_frame: int, end_frame: int) -> None:
        """Record a planned segment; a different range at the same index starts it afresh."""
        self._write(
            "INSERT INTO segments (job_id, idx, start_frame, end_frame, state) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT(job_id, idx) DO UPDATE SET start_frame = excluded.start_frame,"
            " end_frame = excluded.end_frame, state = excluded.state, attempts = 0"
            " WHERE start_frame != excluded.start_frame OR end_frame != excluded.end_frame",
            (job_id, index, start_frame, end_frame, SegmentState.PENDING.value),
        )

    def set_segment(
        self, job_id: str, index: int, state: SegmentState, **fields: float | int | None
    ) -> None:
        extra = "".join(f", {name} = ?" for name in fields)
        started = (
            ", attempts = attempts + 1, encodes = encodes + 1"
            if state is SegmentState.RUNNING
            else ""
        )
        self._write(
            f"UPDATE segments SET state = ?{started}{extra} WHERE job_id = ? AND idx = ?",
            (state.value, *fields.values(), job_id, index),
        )


class QueueStore:
    """The library queue, in the same database as the jobs: entries in order, and meta
    values (paused, worker bound). An entry is stored whole as JSON; its position is a
    column so that the order is one query."""

    def __init__(self, store: StateStore) -> None:
        self.store = store

    def entries(self) -> list[QueueEntry]:
        rows = self.store._rows("SELECT entry FROM queue ORDER BY position, id", ())
        return [QueueEntry.model_validate_json(r["entry"]) for r in rows]

    def add(self, entry: QueueEntry) -> QueueEntry:
        """Store a new entry at the end; returns it with its id and position."""
        with self.store._lock:
            db = self.store._db
            db.execute("BEGIN IMMEDIATE")
            try:
                last = db.execute("SELECT COALESCE(MAX(position), -1) FROM queue").fetchone()[0]
                cursor = db.execute(
                    "INSERT INTO queue (position, entry) VALUES (?, '{}')", (last + 1,)
                )
                assert cursor.lastrowid is not None
                stored = entry.model_copy(update={"id": cursor.lastrowid, "position": last + 1})
                db.execute(
                    "UPDATE queue SET entry = ? WHERE id = ?",
                    (stored.model_dump_json(), stored.id),
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return stored

    def put(self, entry: QueueEntry) -> None:
        self.store._write(
            "UPDATE queue SET position = ?, entry = ? WHERE id = ?",
            (entry.position, entry.model_dump_json(), entry.id),
        )

    def delete(self, entry_id: int) -> None:
        self.store._write("DELETE FROM queue WHERE id = ?", (entry_id,))

    def put_all(self, entries: list[QueueEntry]) -> None:
        """Write many entries in one transaction (a reorder renumbers them all)."""
        with self.store._lock:
            db = self.store._db
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(
                    "UPDATE queue SET position = ?, entry = ? WHERE id = ?",
                    [(e.position, e.model_dump_json(), e.id) for e in entries],
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def get_meta(self, key: str) -> str | None:
        rows = self.store._rows("SELECT value FROM meta WHERE key = ?", (key,))
        return str(rows[0]["value"]) if rows else None

    def set_meta(self, key: str, value: str) -> None:
        self.store._write(
            "INSERT INTO meta (key, value) VALUES (?, ?)"
            " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )


def _job(row: sqlite3.Row) -> JobRecord:
    return JobRecord(**{key: row[key] for key in JobRecord.model_fields})


def _segment(row: sqlite3.Row) -> SegmentRecord:
    data = {key: row[key] for key in SegmentRecord.model_fields if key != "index"}
    return SegmentRecord(index=row["idx"], **data)
