"""SQLite state store (WAL): jobs, their segments and who holds each job. The queue
table and meta values are read and written by `QueueStore` (queue_store.py); a damaged
file is recognised, read out and moved aside by store_recovery.py.

Every write commits at once, so whatever a crash leaves is consistent. Calls block;
the StateManager runs them in a thread.

Ownership: every write to a job is made by the process holding it, and is
conditional on that inside the same transaction (`lock_pid` = the writer). A process
whose job was taken over (its lock went stale while it was stopped) gets NotHolder
instead of overwriting the new holder's state. A job held by a live process is
never dropped.

Damage: the file is checked when it is opened (`PRAGMA quick_check`). A damaged one
is moved aside to `drapto.db.corrupt-<time>` (with its -wal and -shm), whatever queue
entries can still be read are carried into a fresh store, and `recovered` says what
was lost. Damage found later turns into a one-line StateDamaged error.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from drapto_engine.core.models import SegmentState
from drapto_engine.core.state import (
    IllegalTransition,
    JobRecord,
    JobStage,
    NotHolder,
    SegmentRecord,
    StateDamaged,
    check_job,
    check_segment,
)
from drapto_engine.infrastructure.queue_store import QueueStore
from drapto_engine.infrastructure.store_recovery import Recovery, is_damage, replace_damaged

QUALITY_COLUMNS = (
    ("crf", "INTEGER"),
    ("vmaf", "REAL"),
    ("vmaf_low5", "REAL"),
    ("probes", "TEXT"),
    ("target", "TEXT"),
)
"""A segment's CRF, its measured VMAF and 5% low, the search's probes (JSON) and how
the target went (core.events.SegmentDone.target)."""

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
    host TEXT,
    remote INTEGER NOT NULL DEFAULT 0,
    crf INTEGER,
    vmaf REAL,
    vmaf_low5 REAL,
    probes TEXT,
    target TEXT,
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
STALE_LOCK_ENV = "DRAPTO_STALE_LOCK_S"
"""Overrides STALE_LOCK_S (seconds); meant for tests that stop a holder."""


def stale_lock_s() -> float:
    try:
        return float(os.environ.get(STALE_LOCK_ENV) or STALE_LOCK_S)
    except ValueError:
        return STALE_LOCK_S


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class Claim:
    """What claiming a job found: a live holder (of it, or of another job writing the
    same output) refuses it; otherwise the jobs for its output that were dropped."""

    holder: int | None = None
    blocker: JobRecord | None = None
    """The other job (another input or other settings) that the holder is running."""
    dropped: list[JobRecord] = field(default_factory=list)


class StateStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self.recovered: Recovery | None = None
        """Set when the file was found damaged at open and replaced."""
        try:
            self._db = self._open()
        except sqlite3.DatabaseError as exc:
            if not is_damage(exc):
                raise StateDamaged(f"state database cannot be opened ({exc})", path) from exc
            # one process at a time moves it aside (another may be doing it now)
            with path.with_name(f"{path.name}.recover-lock").open("a") as guard:
                fcntl.flock(guard, fcntl.LOCK_EX)
                try:
                    self._db = self._open()  # another process replaced it meanwhile
                except sqlite3.DatabaseError as again:
                    if not is_damage(again):
                        raise StateDamaged(
                            f"state database cannot be opened ({again})", path
                        ) from again
                    self.recovered, salvage = replace_damaged(path, str(exc))
                    self._db = self._open()
                    salvage.restore(QueueStore(self))

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
        try:
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            problems = [row[0] for row in db.execute("PRAGMA quick_check")]
            if problems != ["ok"]:
                raise sqlite3.DatabaseError(f"database disk image is malformed: {problems[0]}")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            db.executescript(SCHEMA)
            self._migrate(db)
        except BaseException:
            db.close()
            raise
        return db

    @staticmethod
    def _migrate(db: sqlite3.Connection) -> None:
        """Columns added since a state file was first made."""
        columns = {row["name"] for row in db.execute("PRAGMA table_info(jobs)")}
        if "plan" not in columns:
            db.execute("ALTER TABLE jobs ADD COLUMN plan TEXT")
        segment_columns = {row["name"] for row in db.execute("PRAGMA table_info(segments)")}
        if "host" not in segment_columns:
            db.execute("ALTER TABLE segments ADD COLUMN host TEXT")
        if "remote" not in segment_columns:
            db.execute("ALTER TABLE segments ADD COLUMN remote INTEGER NOT NULL DEFAULT 0")
        for name, kind in QUALITY_COLUMNS:  # target quality (issue #23)
            if name not in segment_columns:
                db.execute(f"ALTER TABLE segments ADD COLUMN {name} {kind}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """Damage found after the open check becomes one line, not a traceback."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.IntegrityError | sqlite3.ProgrammingError):
                raise  # a bug
            if is_damage(exc):
                raise StateDamaged(
                    f"state database is damaged ({exc}); it is moved aside and replaced "
                    "when drapto next starts",
                    self.path,
                ) from exc
            raise StateDamaged(f"state database error ({exc})", self.path) from exc

    def _write(self, sql: str, args: tuple[object, ...]) -> int:
        with self._lock, self._guard():
            return self._db.execute(sql, args).rowcount

    def _rows(self, sql: str, args: tuple[object, ...]) -> list[sqlite3.Row]:
        with self._lock, self._guard():
            return list(self._db.execute(sql, args))

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One BEGIN IMMEDIATE transaction: committed when the block ends, rolled
        back when it raises."""
        with self._lock, self._guard():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                with contextlib.suppress(sqlite3.Error):  # an error may have ended it already
                    self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _check_holder(self, db: sqlite3.Connection, job_id: str, pid: int) -> None:
        row = db.execute("SELECT lock_pid FROM jobs WHERE id = ?", (job_id,)).fetchone()
        holder = row["lock_pid"] if row else None
        if holder != pid:
            raise NotHolder(job_id, holder)

    # jobs

    def job(self, job_id: str) -> JobRecord | None:
        rows = self._rows("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return _job(rows[0]) if rows else None

    def set_job(self, job_id: str, pid: int, **fields: str | None) -> None:
        """Save fields of a job this process holds."""
        names = ", ".join(f"{name} = ?" for name in fields)
        with self.transaction() as db:
            self._check_holder(db, job_id, pid)
            db.execute(
                f"UPDATE jobs SET {names}, updated = ? WHERE id = ?",  # names are our own keywords
                (*fields.values(), time.time(), job_id),
            )

    def set_stage(
        self,
        job_id: str,
        pid: int,
        stage: JobStage,
        error: str | None = None,
        *,
        unheld: bool = False,
        before: Callable[[], None] | None = None,
    ) -> None:
        """Move a job this process holds to `stage` (checked against the transition
        table); `unheld` also allows a job nobody holds any more. `before` runs inside
        the transaction, once the holder is known to be this process (a rename that
        must not happen after a takeover)."""
        with self.transaction() as db:
            row = db.execute("SELECT stage, lock_pid FROM jobs WHERE id = ?", (job_id,)).fetchone()
            holder = row["lock_pid"] if row else None
            if row is None or not (holder == pid or (unheld and holder is None)):
                raise NotHolder(job_id, holder)
            check_job(JobStage(row["stage"]), stage)
            if before is not None:
                before()
            db.execute(
                "UPDATE jobs SET stage = ?, error = ?, updated = ? WHERE id = ?",
                (stage.value, _to_db(error), time.time(), job_id),
            )

    # locks

    def claim(self, job: JobRecord, pid: int, mine: Collection[str] = ()) -> Claim:
        """Take the job for `pid` and drop the other jobs for its output (other settings,
        an older source), all in one transaction. Nothing is taken or dropped when a live
        process holds the job or any of those others: the Claim names it. `mine` are the
        jobs this process itself is running (its own pid is live, its other jobs too)."""
        stale = stale_lock_s()

        def live(holder: int | None, beat: float | None, job_id: str) -> bool:
            if holder is None:
                return False
            if holder == pid:
                return job_id in mine
            return pid_alive(holder) and beat is not None and time.time() - beat < stale

        try:
            with self.transaction() as db:
                others = self._take(db, job, pid, live)
        except _Refused as refused:
            return refused.claim
        return Claim(dropped=others)

    def _take(
        self,
        db: sqlite3.Connection,
        job: JobRecord,
        pid: int,
        live: Callable[[int | None, float | None, str], bool],
    ) -> list[JobRecord]:
        others = [
            _job(r)
            for r in db.execute(
                "SELECT * FROM jobs WHERE output = ? AND id != ?", (_to_db(job.output), job.id)
            )
        ]
        for other in others:
            if live(other.lock_pid, other.lock_heartbeat, other.id):
                raise _Refused(Claim(holder=other.lock_pid, blocker=other))
        _insert(db, job)
        row = db.execute(
            "SELECT lock_pid, lock_heartbeat FROM jobs WHERE id = ?", (job.id,)
        ).fetchone()
        if live(row["lock_pid"], row["lock_heartbeat"], job.id):
            raise _Refused(Claim(holder=row["lock_pid"]))
        db.execute(
            "UPDATE jobs SET lock_pid = ?, lock_heartbeat = ? WHERE id = ?",
            (pid, time.time(), job.id),
        )
        for other in others:
            db.execute("DELETE FROM jobs WHERE id = ?", (other.id,))
        return others

    def heartbeat(self, job_id: str, pid: int) -> None:
        with self.transaction() as db:
            self._check_holder(db, job_id, pid)
            db.execute("UPDATE jobs SET lock_heartbeat = ? WHERE id = ?", (time.time(), job_id))

    def release(self, job_id: str, pid: int) -> None:
        self._write(
            "UPDATE jobs SET lock_pid = NULL, lock_heartbeat = NULL WHERE id = ? AND lock_pid = ?",
            (job_id, pid),
        )

    def forget_work(self, job_id: str, pid: int) -> None:
        """Forget what a job this process holds has learnt and made (its analysis, plan,
        metrics and segments): it starts again from its source."""
        with self.transaction() as db:
            self._check_holder(db, job_id, pid)
            db.execute(
                "UPDATE jobs SET analysis = NULL, plan = NULL, metrics = NULL, updated = ?"
                " WHERE id = ?",
                (time.time(), job_id),
            )
            db.execute("DELETE FROM segments WHERE job_id = ?", (job_id,))

    # segments

    def segments(self, job_id: str) -> dict[int, SegmentRecord]:
        rows = self._rows("SELECT * FROM segments WHERE job_id = ? ORDER BY idx", (job_id,))
        return {r["idx"]: _segment(r) for r in rows}

    def put_segment(
        self, job_id: str, pid: int, index: int, start_frame: int, end_frame: int
    ) -> None:
        """Record a planned segment; a different range at the same index starts it afresh."""
        with self.transaction() as db:
            self._check_holder(db, job_id, pid)
            db.execute(
                "INSERT INTO segments (job_id, idx, start_frame, end_frame, state)"
                " VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT(job_id, idx) DO UPDATE SET start_frame = excluded.start_frame,"
                " end_frame = excluded.end_frame, state = excluded.state, attempts = 0,"
                " probes = NULL"
                " WHERE start_frame != excluded.start_frame OR end_frame != excluded.end_frame",
                (job_id, index, start_frame, end_frame, SegmentState.PENDING.value),
            )

    def set_segment(
        self,
        job_id: str,
        pid: int,
        index: int,
        state: SegmentState,
        *,
        before: Callable[[], None] | None = None,
        **fields: float | int | str | None,
    ) -> None:
        """Move a segment of a job this process holds to `state` (checked); `before`
        runs inside the transaction once the holder is known to be this process."""
        extra = "".join(f", {name} = ?" for name in fields)
        started = (
            ", attempts = attempts + 1, encodes = encodes + 1"
            if state is SegmentState.RUNNING
            else ""
        )
        with self.transaction() as db:
            self._check_holder(db, job_id, pid)
            row = db.execute(
                "SELECT state FROM segments WHERE job_id = ? AND idx = ?", (job_id, index)
            ).fetchone()
            if row is None:
                raise IllegalTransition(f"no segment {index} in job {job_id}")
            check_segment(SegmentState(row["state"]), state)
            if before is not None:
                before()
            db.execute(
                f"UPDATE segments SET state = ?{started}{extra} WHERE job_id = ? AND idx = ?",
                (state.value, *fields.values(), job_id, index),
            )

    def set_probes(self, job_id: str, pid: int, index: int, probes: str) -> None:
        """Keep a running segment's probes (JSON) as each finishes: a resumed job does
        not measure them again."""
        with self.transaction() as db:
            self._check_holder(db, job_id, pid)
            db.execute(
                "UPDATE segments SET probes = ? WHERE job_id = ? AND idx = ?",
                (probes, job_id, index),
            )


class _Refused(Exception):
    """Rolls a claim back (carrying what refused it)."""

    def __init__(self, claim: Claim) -> None:
        self.claim = claim


def _insert(db: sqlite3.Connection, job: JobRecord) -> None:
    now = time.time()
    db.execute(
        "INSERT OR IGNORE INTO jobs (id, input, input_size, input_mtime_ns, output, settings,"
        " stage, created, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            job.id,
            _to_db(job.input),
            job.input_size,
            job.input_mtime_ns,
            _to_db(job.output),
            job.settings,
            job.stage.value,
            now,
            now,
        ),
    )


def _to_db(text: str | None) -> str | bytes | None:
    """A path or message as SQLite takes it: a name that is not valid UTF-8 (its
    undecodable bytes held as lone surrogates) as its bytes, which `_from_db` turns back."""
    if text is None:
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(text)
    return text


def _from_db(value: object) -> object:
    return os.fsdecode(value) if isinstance(value, bytes) else value


def _job(row: sqlite3.Row) -> JobRecord:
    return JobRecord(**{key: _from_db(row[key]) for key in JobRecord.model_fields})


def _segment(row: sqlite3.Row) -> SegmentRecord:
    data = {key: row[key] for key in SegmentRecord.model_fields if key != "index"}
    return SegmentRecord(index=row["idx"], **data)
