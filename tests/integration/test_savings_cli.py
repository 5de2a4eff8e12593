"""`drapto stats` and `drapto restore` as commands: real processes on a real state folder
and real files, without an engine service (the engine's answers are tested with it)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from forked import run_forked, warm_imports

from drapto_engine.core.jobs import JobOptions
from drapto_engine.infrastructure.savings import SavingsStore
from drapto_engine.infrastructure.store import StateStore
from drapto_engine.services.replace import Replacer


def drapto(*argv: str, cwd: Path) -> tuple[int, str, str]:
    warm_imports()
    env = {k: v for k, v in os.environ.items() if k != "DRAPTO_STATE_DIR"}
    done = run_forked(list(argv), cwd, env)
    return done.returncode, done.stdout, done.stderr


def replaced(tmp_path: Path) -> tuple[Path, Path]:
    """film.mp4 replaced by a smaller film.mkv, its original in /lib/.drapto-trash."""
    state = tmp_path / "state"
    films = tmp_path / "lib" / "films"
    films.mkdir(parents=True)
    source = films / "film.mp4"
    source.write_bytes(b"o" * 4000)
    output = films / "film.av1.mkv"
    output.write_bytes(b"n" * 1000)
    store = StateStore(state / "drapto.db")
    try:
        options = JobOptions(replace=True, trash_dir=tmp_path / "lib" / ".drapto-trash")
        Replacer(state, SavingsStore(store)).replace(source, output, options)
    finally:
        store.close()
    return source, state


def test_stats_and_restore_from_the_state_folder(tmp_path: Path) -> None:
    source, state = replaced(tmp_path)
    status, out, err = drapto("stats", "--json", "--state-dir", str(state), cwd=tmp_path)
    assert (status, err) == (0, "")
    data = json.loads(out)
    totals = {"files": 1, "bytes_before": 4000, "bytes_after": 1000, "bytes_saved": 3000}
    assert {k: data[k] for k in totals} == totals
    assert data["folders"] == {str(tmp_path / "lib"): totals}
    assert list(data["days"].values()) == [totals]
    status, out, err = drapto("stats", "--state-dir", str(state), cwd=tmp_path)
    assert status == 0
    assert out.splitlines()[0] == "space saved: 1 file, 4.0 kB -> 1.0 kB, saved 3.0 kB (75%)"

    status, out, err = drapto("restore", str(source), "--state-dir", str(state), cwd=tmp_path)
    assert (status, err) == (0, "")
    assert out.strip() == f"restored {source}; the AV1 file is now {source.with_suffix('.av1.mkv')}"
    assert source.read_bytes() == b"o" * 4000
    assert not source.with_suffix(".mkv").exists()
    status, out, err = drapto("restore", str(source), "--state-dir", str(state), cwd=tmp_path)
    assert status == 1 and out == ""
    assert err == f"drapto: {source}: the original was restored already\n"
    status, out, _ = drapto("stats", "--json", "--state-dir", str(state), cwd=tmp_path)
    assert json.loads(out)["files"] == 0


def test_restore_of_a_file_never_replaced(tmp_path: Path) -> None:
    _, state = replaced(tmp_path)
    other = tmp_path / "lib" / "other.mkv"
    status, out, err = drapto("restore", str(other), "--state-dir", str(state), cwd=tmp_path)
    assert (status, out) == (1, "")
    assert err == f"drapto: {other}: drapto has no original of this file in its trash\n"
