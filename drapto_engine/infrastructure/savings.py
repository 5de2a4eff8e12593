"""The space saved, in the state database: one row per encoded file (core/savings.py).

The `savings` table is made when a store is first used by this module (CREATE TABLE IF
NOT EXISTS: a state file from before it gains it, nothing else changes). A replace's row
also says where its original is in the trash and until when, so emptying the trash and
`drapto restore` read it instead of walking folders.
"""

from __future__ import annotations

import sqlite3
import time

from drapto_engine.core.savings import (
    COUNTED,
    OTHER,
    Saving,
    SavingsReport,
    SavingState,
    Totals,
    day_of,
)
from drapto_engine.infrastructure.store import StateStore

SAVINGS_TABLE = """
CREATE TABLE IF NOT EXISTS savings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    path TEXT NOT NULL,
    output TEXT NOT NULL,
    root TEXT,
    bytes_before INTEGER NOT NULL,
    bytes_after INTEGER NOT NULL,
    time REAL NOT NULL,
    state TEXT NOT NULL,
    trash TEXT,
    keep_until REAL
);
CREATE INDEX IF NOT EXISTS savings_path ON savings(path);
CREATE INDEX IF NOT EXISTS savings_keep_until ON savings(keep_until) WHERE state = 'replaced';
"""
_COLUMNS = "key, path, output, root, bytes_before, bytes_after, time, state, trash, keep_until"


class SavingsStore:
    """The savings rows of one state database."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        with store.transaction() as db:
            for statement in SAVINGS_TABLE.split(";"):
                if statement.strip():
                    db.execute(statement)

    def add(self, saving: Saving) -> bool:
        """Store a record; False when one with its key is stored already (a rerun). A
        replace takes the place of its source's earlier encodes, which no longer count."""
        placeholders = ", ".join("?" for _ in _COLUMNS.split(","))
        with self.store.transaction() as db:
            if saving.state is SavingState.REPLACED:
                db.execute(
                    "DELETE FROM savings WHERE path = ? AND state = ?",
                    (_text(saving.path), SavingState.ENCODED.value),
                )
            return (
                db.execute(
                    f"INSERT OR IGNORE INTO savings ({_COLUMNS}) VALUES ({placeholders})",
                    (
                        saving.key,
                        _text(saving.path),
                        _text(saving.output),
                        _text(saving.root),
                        saving.bytes_before,
                        saving.bytes_after,
                        saving.time,
                        saving.state.value,
                        _text(saving.trash),
                        saving.keep_until,
                    ),
                ).rowcount
                == 1
            )

    def set_state(self, key: str, state: SavingState) -> None:
        self.store._write("UPDATE savings SET state = ? WHERE key = ?", (state.value, key))

    def in_trash(self, path: str) -> Saving | None:
        """The newest replace of `path` whose original is still in the trash."""
        rows = self.store._rows(
            f"SELECT {_COLUMNS} FROM savings WHERE path = ? AND state = ? ORDER BY time DESC",
            (_text(path), SavingState.REPLACED.value),
        )
        return _saving(rows[0]) if rows else None

    def last_of(self, path: str) -> Saving | None:
        """The newest record of `path`, whatever its state."""
        rows = self.store._rows(
            f"SELECT {_COLUMNS} FROM savings WHERE path = ? ORDER BY time DESC", (_text(path),)
        )
        return _saving(rows[0]) if rows else None

    def due(self, now: float | None = None) -> list[Saving]:
        """Replaces whose original has been in the trash past its keep_days."""
        rows = self.store._rows(
            f"SELECT {_COLUMNS} FROM savings WHERE state = ? AND keep_until <= ?",
            (SavingState.REPLACED.value, time.time() if now is None else now),
        )
        return [_saving(row) for row in rows]

    def report(self, since: float | None = None) -> SavingsReport:
        """`drapto stats`: summed by the database, per folder and per day; only the files
        encoded from `since` on, when given."""
        counted = ", ".join(f"'{state.value}'" for state in COUNTED)
        rows = self.store._rows(
            "SELECT root, CAST(time / 86400 AS INTEGER) AS day, count(*) AS files,"
            " sum(bytes_before) AS before, sum(bytes_after) AS after FROM savings"
            f" WHERE state IN ({counted}) AND time >= ? GROUP BY root, day",
            (since or 0.0,),
        )
        sums: dict[tuple[str, str], list[int]] = {}  # plain sums: a model per row is slow
        for row in rows:
            root = _from_db(row["root"]) or OTHER
            day = day_of(int(row["day"]) * 86400)
            for key in (("total", ""), ("folder", root), ("day", day)):
                sum_ = sums.setdefault(key, [0, 0, 0])
                sum_[0] += int(row["files"])
                sum_[1] += int(row["before"])
                sum_[2] += int(row["after"])

        def totals(key: tuple[str, str]) -> Totals:
            files, before, after = sums.get(key, [0, 0, 0])
            return Totals(files=files, bytes_before=before, bytes_after=after,
                          bytes_saved=before - after)  # fmt: skip

        return SavingsReport(
            total=totals(("total", "")),
            folders={
                name: totals(("folder", name)) for kind, name in sorted(sums) if kind == "folder"
            },
            days={name: totals(("day", name)) for kind, name in sorted(sums) if kind == "day"},
        )


def _text(value: str | None) -> str | bytes | None:
    """A path as stored: text, or its bytes when the name is not UTF-8 (surrogate escapes)."""
    if value is None:
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogateescape")
    return value


def _from_db(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return str(value)


def _saving(row: sqlite3.Row) -> Saving:
    get = row.__getitem__
    return Saving(
        key=str(get("key")),
        path=_from_db(get("path")) or "",
        output=_from_db(get("output")) or "",
        root=_from_db(get("root")),
        bytes_before=int(get("bytes_before")),
        bytes_after=int(get("bytes_after")),
        time=float(get("time")),
        state=SavingState(get("state")),
        trash=_from_db(get("trash")),
        keep_until=get("keep_until"),
    )
