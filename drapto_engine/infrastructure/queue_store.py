"""The library queue and the engine's settings (meta values), stored in the same SQLite
database as the jobs (store.py): entries in order, each stored whole as JSON, and an
entry saved under older, looser rules amended rather than lost."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from typing import Protocol

import pydantic

from drapto_engine.core.jobs import QueueEntry
from drapto_engine.core.text import model_from_json, model_json


class Database(Protocol):
    """What the queue needs of the state store (`StateStore` in store.py): reads and
    writes that turn damage into StateDamaged, and one transaction at a time."""

    def _rows(self, sql: str, args: tuple[object, ...]) -> list[sqlite3.Row]: ...
    def _write(self, sql: str, args: tuple[object, ...]) -> int: ...
    def transaction(self) -> contextlib.AbstractContextManager[sqlite3.Connection]: ...


class QueueStore:
    """The library queue, in the same database as the jobs: entries in order, and meta
    values (paused, worker bound). An entry is stored whole as JSON; its position is a
    column so that the order is one query."""

    def __init__(self, store: Database) -> None:
        self.amended: list[str] = []
        """What reading the stored entries had to change or leave out, for a warning."""
        self.store = store

    def entries(self) -> list[QueueEntry]:
        """Every stored entry. One saved under older, looser rules (say `crf = 0`) keeps
        its place: the options it may no longer have fall back to the defaults, and
        `self.amended` says which (the queue is never lost to a stricter check)."""
        rows = self.store._rows("SELECT entry FROM queue ORDER BY position, id", ())
        entries: list[QueueEntry] = []
        for row in rows:
            try:
                entries.append(model_from_json(QueueEntry, row["entry"]))
            except pydantic.ValidationError as exc:
                entry = _amended(row["entry"], exc)
                if entry is None:
                    self.amended.append(f"a stored queue entry could not be read: {exc.title}")
                    continue
                self.put(entry)
                self.amended.append(
                    f"{entry.input}: stored options no longer valid were reset to the defaults "
                    f"({', '.join(_bad_options(exc))})"
                )
                entries.append(entry)
        return entries

    def add(self, entry: QueueEntry) -> QueueEntry:
        """Store a new entry at the end; returns it with its id and position."""
        with self.store.transaction() as db:
            last = db.execute("SELECT COALESCE(MAX(position), -1) FROM queue").fetchone()[0]
            cursor = db.execute("INSERT INTO queue (position, entry) VALUES (?, '{}')", (last + 1,))
            assert cursor.lastrowid is not None
            stored = entry.model_copy(update={"id": cursor.lastrowid, "position": last + 1})
            db.execute("UPDATE queue SET entry = ? WHERE id = ?", (model_json(stored), stored.id))
        return stored

    def put(self, entry: QueueEntry) -> None:
        self.store._write(
            "UPDATE queue SET position = ?, entry = ? WHERE id = ?",
            (entry.position, model_json(entry), entry.id),
        )

    def delete(self, entry_id: int) -> None:
        self.store._write("DELETE FROM queue WHERE id = ?", (entry_id,))

    def put_all(self, entries: list[QueueEntry]) -> None:
        """Write many entries in one transaction (a reorder renumbers them all)."""
        with self.store.transaction() as db:
            db.executemany(
                "UPDATE queue SET position = ?, entry = ? WHERE id = ?",
                [(e.position, model_json(e), e.id) for e in entries],
            )

    def get_meta(self, key: str) -> str | None:
        rows = self.store._rows("SELECT value FROM meta WHERE key = ?", (key,))
        return str(rows[0]["value"]) if rows else None

    def set_meta(self, key: str, value: str) -> None:
        self.store._write(
            "INSERT INTO meta (key, value) VALUES (?, ?)"
            " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )


def _bad_options(exc: pydantic.ValidationError) -> list[str]:
    """The option names a stored entry's validation refused (`options.crf` -> `crf`)."""
    names = {
        str(err["loc"][1])
        for err in exc.errors()
        if len(err["loc"]) >= 2 and err["loc"][0] == "options"
    }
    return sorted(names) or ["options"]


def _amended(text: str, exc: pydantic.ValidationError) -> QueueEntry | None:
    """The stored entry with the refused options dropped, or None if that is not enough."""
    try:
        data = json.loads(text)
        options = data.get("options")
        if not isinstance(options, dict):
            return None
        if any(err["loc"][:1] != ("options",) for err in exc.errors()):
            return None
        bad = _bad_options(exc)
        if bad == ["options"]:
            data["options"] = {}
        else:
            for name in bad:
                options.pop(name, None)
            if "max_segment_s" in bad or "min_segment_s" in bad:
                options.pop("min_segment_s", None)
                options.pop("max_segment_s", None)
        return model_from_json(QueueEntry, json.dumps(data))
    except (ValueError, pydantic.ValidationError):
        return None
