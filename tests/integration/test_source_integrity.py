"""The source must stay the file that was analysed, the join's failures must be told
apart, and the pipeline must feed validation the source's frame times: real `drapto
encode` runs, tampered with at exact moments by tamper.py.

The two films are raw video of the same size, frame count and rate (one is the other's
negative): only their identity and content tell them apart, as in the issue's
`mv other.mkv a.mkv`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from encode_helpers import DRAPTO, FAST, Run, encode, inspect, parse_events
from mediagen import MakeMedia

from drapto_engine.services.encoding.svt import SEGMENT_SUFFIX
from drapto_engine.services.outputs import partial_name
from drapto_engine.services.workdir import WORK_PREFIX

pytestmark = pytest.mark.slow

TAMPER = Path(__file__).with_name("tamper.py")
SEGMENTING = ["--min-segment", "0.5", "--max-segment", "1", "--workers", "1"]
FRAMES = 100


def _films(make_media: MakeMedia) -> tuple[Path, Path]:
    """a.mkv and other.mkv: same size in bytes, frames and rate, different pictures."""
    a = make_media("a.mkv", size=(160, 90), duration=4, codec="rawvideo")
    other = make_media("other.mkv", size=(160, 90), duration=4, codec="rawvideo", filters="negate")
    assert a.stat().st_size == other.stat().st_size
    return a, other


def _tampered(mode: str, other: Path | None, source: Path, output: Path, *extra: str) -> Run:
    argv = [sys.executable, str(TAMPER), mode, str(other or "-"), "encode", str(source)]
    argv += ["-o", str(output), *FAST, *SEGMENTING, *extra]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    return Run(done.returncode, parse_events(done.stdout), done.stderr)


def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def _first_frame(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        return frame.to_ndarray(format="gray").astype(np.int16)


# -- defect 3: a source replaced or rewritten during the encode --


@pytest.mark.parametrize("mode", ["swap", "rewrite"])
def test_a_source_changed_during_the_encode_fails_the_job(
    make_media: MakeMedia, tmp_path: Path, mode: str
) -> None:
    """swap: another file takes the name after the first segment (the stat sees a new
    inode before the next segment starts). rewrite: as the join starts, the same inode is
    overwritten with the other film and its modification time put back (only the content
    fingerprint, checked before the join, can see it)."""
    source, other = _films(make_media)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    output = out_dir / "a.av1.mkv"
    run = _tampered(mode, other, source, output, "--state-dir", str(tmp_path / "state"))
    assert run.returncode == 1, run.stderr
    error = _one_line(run.stderr)
    assert f"{source}: the source changed during the encode (" in error
    assert error.endswith("); nothing was written")
    assert ("another file now has its name" in error) == (mode == "swap")
    assert ("content differs" in error) == (mode == "rewrite")
    assert run.of("segment_done"), "the change came after the first segment"
    if mode == "swap":  # caught before the next segment starts
        assert len(run.of("segment_done")) == 1
        assert run.events[-1]["stage"] == "encoding"
    else:  # caught by the fingerprint before the join
        assert run.events[-1]["stage"] == "muxing"
    assert "rollback" not in [e["type"] for e in run.events]
    assert run.events[-1]["type"] == "job_failed"
    assert list(out_dir.iterdir()) == [], "an output or a work folder was left"


def _killed_after_a_segment(source: Path, out_dir: Path, state: Path) -> Path:
    """`drapto encode SOURCE` into `out_dir`, killed (SIGKILL) once a segment is done;
    the output it was making."""
    out_dir.mkdir()
    output = out_dir / "a.av1.mkv"
    argv = [*DRAPTO, "encode", str(source), "-o", str(output), *FAST, *SEGMENTING]
    proc = subprocess.Popen([*argv, "--state-dir", str(state)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if '"segment_done"' in line:
            break
    proc.kill()
    proc.communicate(timeout=10)
    return output


@pytest.mark.parametrize("replacement", ["other film", "same bytes"])
def test_a_resumed_job_starts_afresh_only_when_its_source_is_another_film(
    make_media: MakeMedia, tmp_path: Path, replacement: str
) -> None:
    """Killed after a segment; then a file of the same size takes the name with the same
    modification time (the job's key: path, size, mtime). Another film: the rerun must
    not join the first film's segments to the second's; it starts afresh and says so.
    A copy of the same bytes (a new inode, as a restore or `rsync -a` makes): the rerun
    keeps the finished segments."""
    source, other = _films(make_media)
    out_dir, state = tmp_path / "out", tmp_path / "state"
    output = _killed_after_a_segment(source, out_dir, state)
    assert not output.exists()
    before, first_film = source.stat(), _first_frame(source)
    if replacement == "same bytes":
        other = other.with_name("copy.mkv")
        shutil.copyfile(source, other)
    os.replace(other, source)
    os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert source.stat().st_ino != before.st_ino
    run = encode(source, output, *SEGMENTING, "--state-dir", str(state))
    assert run.returncode == 0, run.stderr
    afresh = [
        w["message"]
        for w in run.of("warning")
        if "the source is not the file the unfinished run encoded (content differs)" in w["message"]
        and "starting afresh" in w["message"]
    ]
    resumed = [e["index"] for e in run.of("segment_done") if e["resumed"]]
    assert inspect(output).frames_decoded == FRAMES
    got = _first_frame(output)
    if replacement == "same bytes":
        assert afresh == [] and resumed != []
        assert float(np.abs(got - first_film).mean()) < 8.0
    else:
        assert len(afresh) == 1 and resumed == []
        # the output's first frame is the second film's (a negative: far from the first's)
        assert float(np.abs(got - _first_frame(source)).mean()) < 8.0
        assert float(np.abs(got - first_film).mean()) > 40.0
    assert sorted(p.name for p in out_dir.iterdir()) == [output.name]


# -- defect 7: no space left for the join --


@pytest.mark.parametrize("full", ["output", "work"])
def test_no_space_for_the_join_keeps_every_segment_for_the_rerun(
    make_media: MakeMedia, tmp_path: Path, full: str
) -> None:
    """The join's output, or its list of segments in the work folder, is written to
    /dev/full (a real ENOSPC): one line saying how much space the join needs and where,
    exit 1, no rollback, the work folder and every segment kept; the rerun encodes
    nothing again."""
    source = make_media("s.mkv", size=(160, 90), duration=3, audio=["stereo"])
    out_dir, state = tmp_path / "out", tmp_path / "state"
    out_dir.mkdir()
    output = out_dir / "s.av1.mkv"
    mode = "diskfull" if full == "output" else "worklistfull"
    run = _tampered(mode, None, source, output, "--state-dir", str(state))
    assert run.returncode == 1, run.stderr
    error = _one_line(run.stderr)
    [job] = {e["job"] for e in run.of("segment_done")}
    work = out_dir / f"{WORK_PREFIX}{job}"
    assert f"{source}: no space left to join the segments: " in error
    if full == "output":
        assert "the output needs about " in error and f"MiB in {out_dir} (" in error
        assert f"encoded segments are kept in {work} for the next run" in error
    else:
        assert f"their list cannot be written in {work} (" in error
        assert "encoded segments are kept there for the next run" in error
        (work / "segments.txt").unlink()  # space is freed
    # the resource sampler may report once more while the command stops
    kinds = [e["type"] for e in run.events if e["type"] != "resources"]
    assert "rollback" not in kinds and kinds[-1] == "job_failed"
    assert run.events[-1]["stage"] == "muxing"
    planned = run.of("segments_planned")[0]["count"]
    assert planned > 1
    kept = sorted(work.glob(f"segment-*{SEGMENT_SUFFIX}"))
    assert len(kept) == planned == len(run.of("segment_done"))
    assert not output.exists() and not partial_name(output).exists()
    assert not partial_name(output).is_symlink()

    rerun = encode(source, output, *SEGMENTING, "--state-dir", str(state))
    assert rerun.returncode == 0, rerun.stderr
    assert all(e["resumed"] for e in rerun.of("segment_done"))
    assert len(rerun.of("segment_done")) == planned
    assert not rerun.of("segment_started"), "a kept segment was encoded again"
    with sqlite3.connect(state / "drapto.db") as db:
        encodes = [n for (n,) in db.execute("SELECT encodes FROM segments")]
    assert encodes == [1] * planned
    assert inspect(output).frames_decoded == 75
    assert sorted(p.name for p in out_dir.iterdir()) == [output.name]


# -- the pipeline feeds validation the source's frame times --


def test_a_join_with_wrong_frame_times_fails_validation(
    make_media: MakeMedia, tmp_path: Path
) -> None:
    """One frame of the joined output is moved 1 ms before validation: the frame count
    and durations still hold, so only the frame times the orchestrator passes to
    validation can catch it (test_timestamps.py tests the check itself)."""
    source = make_media("s.mkv", size=(160, 90), duration=2)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    output = out_dir / "s.av1.mkv"
    run = _tampered("retime", None, source, output, "--state-dir", str(tmp_path / "state"))
    assert run.returncode == 1, run.stderr
    error = _one_line(run.stderr)
    assert "validation failed: frame times: 1 of 50 frames are off the source's" in error
    assert run.events[-1]["type"] == "job_failed" and run.events[-1]["stage"] == "validating"
    assert list(out_dir.iterdir()) == []


def test_a_plan_made_by_another_drapto_is_made_again(make_media: MakeMedia, tmp_path: Path) -> None:
    """Killed after a segment; the stored plan (in the state database and in the work
    folder) says another drapto made it: its analysis, segments and encoder arguments
    are another version's, so the rerun plans and encodes every segment again."""
    source, _ = _films(make_media)
    out_dir, state = tmp_path / "out", tmp_path / "state"
    output = _killed_after_a_segment(source, out_dir, state)
    with contextlib.closing(sqlite3.connect(state / "drapto.db")) as db, db:
        [(job, plan)] = db.execute("SELECT id, plan FROM jobs WHERE plan IS NOT NULL").fetchall()
        older = {**json.loads(plan), "drapto": "0.1.0"}
        db.execute("UPDATE jobs SET plan = ? WHERE id = ?", (json.dumps(older), job))
    [work_plan] = out_dir.glob("*/plan.json")
    work_plan.write_text(json.dumps({**json.loads(work_plan.read_text()), "drapto": "0.1.0"}))
    run = encode(source, output, *SEGMENTING, "--state-dir", str(state))
    assert run.returncode == 0, run.stderr
    assert [e["index"] for e in run.of("segment_done") if e["resumed"]] == []
    assert len(run.of("analysis")) == 1
    assert inspect(output).frames_decoded == FRAMES


# -- the output takes its name only while this process holds the job --


def test_a_job_taken_over_after_validation_never_puts_its_output_in_place(
    make_media: MakeMedia, tmp_path: Path
) -> None:
    """Another drapto takes the job between validation and the rename: the rename is
    made in the same transaction that checks the holder, so it never happens."""
    source = make_media("a.mkv", size=(160, 90), duration=1)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    output = out_dir / "a.av1.mkv"
    run = _tampered("takeover", None, source, output, "--state-dir", str(tmp_path / "state"))
    assert run.returncode == 1, run.stderr
    assert _one_line(run.stderr) == f"drapto: {source}: job taken over by process {os.getpid()}"
    assert run.events[-1]["type"] == "job_failed"
    assert run.events[-1]["stage"] == "validating"
    assert not output.exists(), "the output took its name after the job was taken over"
    assert not list(out_dir.glob(".*drapto-partial*")), "a partial output was left"
