"""A damaged state database costs nothing that is on disk: it is moved aside with a
one-line warning, the queue entries that can be read are kept, and a job's finished
segments in its work folder are reused. Real databases damaged for real."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
from pathlib import Path

import pytest
from encode_helpers import DRAPTO, encode, inspect
from live_helpers import SEGMENTING, Live, done_segments, stop_between_writes

from drapto_engine.core.jobs import QueueEntry
from drapto_engine.infrastructure.queue_store import QueueStore
from drapto_engine.infrastructure.store import StateStore

pytestmark = pytest.mark.slow

FRAMES = 200  # 8 s at 25 fps


def _interrupted_job(make_media, tmp_path: Path) -> tuple[Path, Path, Path, list[int]]:
    """A job killed after two finished segments: (source, output, state folder, done)."""
    source = make_media("x.mkv", duration=8.0)
    out_dir, state = tmp_path / "o", tmp_path / "state"
    out_dir.mkdir()
    output = out_dir / "x.av1.mkv"
    live = Live(source, output, state)
    try:
        done = done_segments(live, 2)
    finally:
        live.kill()
    return source, output, state, done


def _checkpoint(db: Path) -> None:
    """Move everything from the WAL into the main file, as a clean close would."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        assert busy == 0


def _damage_table(db: Path, table: str) -> None:
    """Junk over the root page of `table` in a real database file."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        size = conn.execute("PRAGMA page_size").fetchone()[0]
        [root] = conn.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)
        ).fetchone()
    with db.open("r+b") as f:
        f.seek((root - 1) * size)
        f.write(b"\xa5junk" * (size // 5))
    with contextlib.closing(sqlite3.connect(db)) as conn, contextlib.suppress(sqlite3.Error):
        assert conn.execute("PRAGMA quick_check").fetchone()[0] != "ok"


def _assert_resumed(run_events: list[dict], done: list[int]) -> None:
    finished = {e["index"]: e["resumed"] for e in run_events if e["type"] == "segment_done"}
    assert all(finished[i] for i in done), finished
    started = {e["index"] for e in run_events if e["type"] == "segment_started"}
    assert started.isdisjoint(done), "a segment finished before the damage was encoded again"


def _damage_warnings(events: list[dict]) -> list[str]:
    return [
        e["message"]
        for e in events
        if e["type"] == "warning" and "state database is damaged" in e["message"]
    ]


def test_junk_over_the_whole_file(make_media, tmp_path: Path) -> None:
    source, output, state, done = _interrupted_job(make_media, tmp_path)
    db = state / "drapto.db"
    _checkpoint(db)  # as a clean close leaves it: the file holds everything, not the WAL
    db.write_bytes(os.urandom(db.stat().st_size))
    run = encode(source, output, *SEGMENTING, "--state-dir", str(state))
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    [warning] = _damage_warnings(run.events)
    [moved] = state.glob("drapto.db.corrupt-*[0-9]")
    assert f"{db}: state database is damaged (file is not a database); moved aside to " in warning
    assert moved.name in warning and "the queue could not be read and is lost" in warning
    assert moved.read_bytes()[:6] != b"SQLite"  # the junk itself, kept for a look
    _assert_resumed(run.events, done)
    assert inspect(output).frames_decoded == FRAMES


def test_damaged_pages_keep_the_queue_and_the_finished_segments(make_media, tmp_path: Path) -> None:
    source, output, state, done = _interrupted_job(make_media, tmp_path)
    db = state / "drapto.db"
    store = StateStore(db)
    for name in ("a.mkv", "b.mkv", "c.mkv"):
        QueueStore(store).add(
            QueueEntry(id=0, input=f"/media/{name}", output=f"/out/{name}", position=0)
        )
    store.close()
    _checkpoint(db)
    _damage_table(db, "segments")
    run = encode(source, output, *SEGMENTING, "--state-dir", str(state))
    assert run.returncode == 0, run.stderr
    [warning] = _damage_warnings(run.events)
    assert "3 of 3 queue entries recovered" in warning
    assert list(state.glob("drapto.db.corrupt-*"))
    _assert_resumed(run.events, done)
    assert inspect(output).frames_decoded == FRAMES
    fresh = StateStore(db)
    assert fresh.recovered is None
    assert [Path(e.input).name for e in QueueStore(fresh).entries()] == ["a.mkv", "b.mkv", "c.mkv"]
    fresh.close()


@pytest.mark.parametrize("where", ["root", "last page"])
def test_queue_entries_that_can_be_read_are_kept_and_the_rest_reported(
    tmp_path: Path, where: str
) -> None:
    db = tmp_path / "drapto.db"
    store = StateStore(db)
    for i in range(40):  # several pages of entries
        QueueStore(store).add(
            QueueEntry(id=0, input=f"/media/{i:03d}.mkv", output=f"/o/{i}", position=0)
        )
    store.close()
    _checkpoint(db)
    if where == "root":
        _damage_table(db, "queue")
    else:  # the last entries' page: those before it still read
        with db.open("r+b") as f:
            f.seek(-4096, os.SEEK_END)
            f.write(b"\xa5junk" * 819)
    reopened = StateStore(db)
    assert reopened.recovered is not None
    message = reopened.recovered.message(db)
    kept = [e.input for e in QueueStore(reopened).entries()]
    reopened.close()
    if where == "root":
        assert kept == []
        assert "the queue could not be read and is lost" in message
    else:
        assert 0 < len(kept) < 40
        assert kept == [f"/media/{i:03d}.mkv" for i in range(len(kept))]  # in order
        assert f"{len(kept)} queue entries recovered, any others could not be read" in message


def test_damage_found_mid_run_is_one_line_and_the_next_run_recovers(
    make_media, tmp_path: Path
) -> None:
    source = make_media("x.mkv", duration=8.0)
    out_dir, state = tmp_path / "o", tmp_path / "state"
    out_dir.mkdir()
    output = out_dir / "x.av1.mkv"
    db = state / "drapto.db"
    live = Live(source, output, state)
    try:
        done = done_segments(live, 1)
        stop_between_writes(live, state)
        _checkpoint(db)
        _damage_table(db, "segments")
        live.proc.send_signal(signal.SIGCONT)
        code, stderr = live.finish(60)
    finally:
        live.kill()
    assert code == 1
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert lines[0].startswith(f"drapto: {db}: state database is damaged (")
    assert "moved aside and replaced when drapto next starts" in lines[0]
    done = [e["index"] for e in live.of("segment_done")]
    run = encode(source, output, *SEGMENTING, "--state-dir", str(state))
    assert run.returncode == 0, run.stderr
    assert len(_damage_warnings(run.events)) == 1
    _assert_resumed(run.events, done)
    assert inspect(output).frames_decoded == FRAMES


def test_serve_replaces_a_damaged_file_with_one_warning(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "drapto.db").write_bytes(os.urandom(64 * 1024))
    proc = subprocess.Popen(
        [*DRAPTO, "serve", "--state-dir", str(state), "--socket", str(tmp_path / "e.sock")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()  # the warning comes before the engine serves
        second = proc.stderr.readline()
        assert second.startswith("drapto: engine serving on "), (first, second)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=30)
    assert proc.returncode == 0, rest
    assert first.startswith(f"drapto: warning: {state / 'drapto.db'}: state database is damaged")
    assert "the queue could not be read and is lost" in first
    assert "Traceback" not in rest
    assert list(state.glob("drapto.db.corrupt-*"))
