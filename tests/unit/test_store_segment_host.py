"""The state store keeps which machine encoded each segment (for a resumed job's
report), in a column that older state files gain when opened."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from drapto_engine.core.state import JobRecord, SegmentState
from drapto_engine.infrastructure.store import StateStore

PID = os.getpid()


def _store_with_a_done_segment(path: Path, **fields: str | int) -> StateStore:
    store = StateStore(path)
    job = JobRecord(
        id="j", input="in.mkv", input_size=1, input_mtime_ns=1, output="out.mkv", settings="{}"
    )
    store.claim(job, PID)
    store.put_segment("j", PID, 0, 0, 25)
    store.set_segment("j", PID, 0, SegmentState.RUNNING)
    store.set_segment("j", PID, 0, SegmentState.DONE, size_bytes=10, **fields)
    return store


def test_a_segment_keeps_its_host(tmp_path: Path) -> None:
    store = _store_with_a_done_segment(tmp_path / "state.db", host="den", remote=1)
    store.close()
    [record] = StateStore(tmp_path / "state.db").segments("j").values()
    assert (record.state, record.host, record.remote) == (SegmentState.DONE, "den", True)


def test_an_older_state_file_gains_the_columns(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    _store_with_a_done_segment(path).close()
    with sqlite3.connect(path) as db:  # as a state file made before hosts were kept
        db.execute("ALTER TABLE segments DROP COLUMN host")
        db.execute("ALTER TABLE segments DROP COLUMN remote")
    store = StateStore(path)
    [record] = store.segments("j").values()
    assert (record.state, record.host, record.remote) == (SegmentState.DONE, None, False)
    store.set_segment("j", PID, 0, SegmentState.PENDING)
    store.set_segment("j", PID, 0, SegmentState.RUNNING)
    store.set_segment("j", PID, 0, SegmentState.DONE, host="attic", remote=1)
    assert store.segments("j")[0].host == "attic"
