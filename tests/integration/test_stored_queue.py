"""A queue saved under looser rules is never lost to a stricter check at the next start."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from drapto_engine.core.events import Event, EventBus, WarningEvent
from drapto_engine.core.jobs import JobOptions, QueueEntry
from drapto_engine.engine import Engine
from drapto_engine.infrastructure import paths
from drapto_engine.infrastructure.queue_store import QueueStore
from drapto_engine.infrastructure.store import StateStore


def test_entries_saved_with_options_now_refused_keep_their_place(
    tmp_path: Path, ffmpeg: str
) -> None:
    db = paths.state_db(tmp_path)
    store = StateStore(db)
    queue = QueueStore(store)
    for name in ("a", "b", "c"):
        queue.add(
            QueueEntry(
                id=0,
                input=f"/media/{name}.mkv",
                output=f"/out/{name}.mkv",
                position=0,
                options=JobOptions(crf=30, preset=8),
            )
        )
    store.close()
    # What an older drapto could save: crf 0 (now refused), min above max, and junk.
    with sqlite3.connect(db) as raw:
        rows = raw.execute("SELECT id, entry FROM queue ORDER BY position").fetchall()
        loose = json.loads(rows[0][1])
        loose["options"].update(crf=0, min_segment_s=30.0, max_segment_s=1.0)
        raw.execute("UPDATE queue SET entry = ? WHERE id = ?", (json.dumps(loose), rows[0][0]))
        raw.execute("UPDATE queue SET entry = ? WHERE id = ?", ("{not json", rows[2][0]))

    events: list[Event] = []
    bus = EventBus()
    bus.subscribe(events.append)
    engine = Engine(ffmpeg, state_dir=tmp_path, persist=False, bus=bus)
    try:
        entries = engine.entries()
        assert [e.input for e in entries] == ["/media/a.mkv", "/media/b.mkv"]
        amended = entries[0].options
        assert (amended.crf, amended.min_segment_s, amended.max_segment_s) == (None, None, None)
        assert amended.preset == 8  # what was still valid is kept
        assert entries[1].options == JobOptions(crf=30, preset=8)
        warnings = [e.message for e in events if isinstance(e, WarningEvent)]
        assert any("/media/a.mkv" in w and "crf" in w for w in warnings), warnings
        assert any("could not be read" in w for w in warnings), warnings
    finally:
        engine.close()
    # The amended entry was written back: a second start has nothing to amend for it.
    again = StateStore(db)
    try:
        reread = QueueStore(again)
        assert [e.input for e in reread.entries()] == ["/media/a.mkv", "/media/b.mkv"]
        assert len(reread.amended) == 1  # only the unreadable one, still there
    finally:
        again.close()
