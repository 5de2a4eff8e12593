"""`drapto --batch queue.toml` run for real, as cron or systemd would: no TTY."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from encode_helpers import inspect
from forked import run_forked, warm_imports
from inbox import Inbox, inbox_fixture  # noqa: F401 (the `inbox` fixture)
from mediagen import make_video

pytestmark = pytest.mark.slow

DRAPTO = [sys.executable, "-m", "drapto_engine.cli"]


def batch(
    queue: Path, *extra: str, config: Path | None = None, **popen: object
) -> subprocess.CompletedProcess[str]:
    """`drapto --batch QUEUE` to its end, forked (forked.py: a real process without a fresh
    interpreter's imports)."""
    warm_imports()
    argv = [*(["--config", str(config)] if config else []), "--batch", str(queue), *extra]
    return run_forked(argv, Path.cwd(), dict(os.environ), timeout=300)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def library(tmp_path: Path, make_media: object, ffmpeg: str) -> Path:
    lib = tmp_path / "lib"
    make_media("lib/Film (2019).mkv", size=(160, 90), duration=4, gop=25, audio=["stereo"])  # type: ignore[operator]
    make_media("lib/Show/S01/Ep 2.mp4", size=(128, 72), duration=2, gop=25)  # type: ignore[operator]
    make_media("lib/Show/S01/Ep 10.mkv", size=(128, 72), duration=2, gop=25)  # type: ignore[operator]
    (lib / "Show" / "S01" / "notes.nfo").write_text("not a video")  # skipped silently
    (lib / ".hidden.mkv").write_bytes((lib / "Film (2019).mkv").read_bytes())
    return lib


def summary(state: Path) -> dict[str, object]:
    return json.loads((state / "drapto" / "last-batch.json").read_text())  # type: ignore[no-any-return]


def test_a_library_batch_runs_headless_and_a_second_run_skips_everything(
    tmp_path: Path, library: Path, inbox: Inbox, shared_media: Path
) -> None:
    config = write(tmp_path / "config.toml", f'notify_url = "{inbox.url}"\n')
    queue = write(
        tmp_path / "queue.toml",
        f"""
[defaults]
output_dir = "av1"
preset = 12
min_segment_s = 1.0
max_segment_s = 2.0
[flags]
crop_detection = "off"
[[job]]
input = "lib/Film (2019).mkv"
crf = 45
[[job]]
input = "lib/Show/"
output_dir = "av1/shows"
[[job]]
input = "{shared_media / "counter.mp4"}"
""",
    )
    run = batch(queue, config=config)
    assert run.returncode == 0, run.stderr + run.stdout
    assert "\x1b" not in run.stdout  # no colour or cursor codes without a TTY
    out = tmp_path / "av1"
    outputs = {
        out / "Film (2019).mkv": 100,
        out / "shows" / "S01" / "Ep 2.mkv": 50,
        out / "shows" / "S01" / "Ep 10.mkv": 50,
        out / "counter.mkv": 30,
    }
    for path, frames in outputs.items():
        facts = inspect(path, decode=False)
        assert facts.of("video")[0].codec == "av1" and facts.of("video")[0].packets == frames
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == sorted(p.name for p in outputs)
    assert "notes" not in run.stdout + run.stderr and "hidden" not in run.stdout
    assert "segments done" in run.stdout  # progress every few percent, not every segment
    state = Path(os.environ["XDG_STATE_HOME"])
    result = summary(state)
    jobs = result["jobs"]
    assert isinstance(jobs, list)
    names = [Path(j["input"]).name for j in jobs]
    assert names == ["Film (2019).mkv", "Ep 2.mp4", "Ep 10.mkv", "counter.mp4"]  # natural order
    assert {j["status"] for j in jobs} == {"done"}
    assert all(j["output_bytes"] > 0 and j["wall_s"] > 0 and j["fps"] > 0 for j in jobs)
    film = inspect(out / "Film (2019).mkv", decode=False)
    assert [s.kind for s in film.streams] == ["video", "audio"]
    titles = [title for title, _ in inbox.received]
    assert titles[0] == "drapto: batch started" and titles[-1] == "drapto: batch finished"
    assert titles.count("drapto: job done") == 4
    assert "4 of 4 jobs done or skipped" in inbox.received[-1][1]

    again = batch(queue, config=config)
    assert again.returncode == 0, again.stderr
    assert {j["status"] for j in summary(state)["jobs"]} == {"skipped"}  # type: ignore[union-attr]
    assert "encoding" not in again.stdout


def test_a_bad_input_fails_alone_and_the_exit_status_says_so(
    tmp_path: Path, make_media: object, ffmpeg: str
) -> None:
    good = make_media("good.mkv", size=(128, 72), duration=2)  # type: ignore[operator]
    whole = make_media("broken.mkv", size=(160, 90), duration=6, gop=25)  # type: ignore[operator]
    data = whole.read_bytes()
    whole.write_bytes(data[: len(data) // 2])  # the header promises frames the file lacks
    queue = write(
        tmp_path / "queue.toml",
        '[defaults]\npreset = 12\noutput_dir = "out"\n'
        '[[job]]\ninput = "broken.mkv"\n[[job]]\ninput = "good.mkv"\n',
    )
    run = batch(queue)
    assert run.returncode == 1, run.stderr + run.stdout
    jobs = summary(Path(os.environ["XDG_STATE_HOME"]))["jobs"]
    assert [j["status"] for j in jobs] == ["failed", "done"]  # type: ignore[index]
    assert "broken.mkv" in jobs[0]["note"]  # type: ignore[index]
    assert (tmp_path / "out" / "good.mkv").is_file()
    assert not (tmp_path / "out" / "broken.mkv").exists()
    assert not list((tmp_path / "out").glob(".*"))  # no partial output, no work folder left
    _ = good


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_a_stopped_batch_resumes_without_redoing_finished_segments(
    tmp_path: Path, make_media: object, how: signal.Signals
) -> None:
    make_media("a.mkv", size=(320, 240), duration=8, gop=25)  # type: ignore[operator]
    make_media("b.mkv", size=(160, 90), duration=3, gop=25)  # type: ignore[operator]
    queue = write(
        tmp_path / "queue.toml",
        "[defaults]\npreset = 12\nmin_segment_s = 1.0\nmax_segment_s = 1.5\nworkers = 1\n"
        '[[job]]\ninput = "a.mkv"\n[[job]]\ninput = "b.mkv"\n',
    )
    state = tmp_path / "state"
    argv = [*DRAPTO, "--batch", str(queue), "--progress", "json", "--state-dir", str(state)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    finished: set[tuple[str, int]] = set()
    for line in proc.stdout:
        event = json.loads(line) if line.startswith("{") else {}
        if event.get("type") == "segment_done":
            finished.add((event["job"], event["index"]))
            if len(finished) == 2:
                break
    stopped = time.monotonic()
    proc.send_signal(how)
    code = proc.wait(timeout=10)
    assert time.monotonic() - stopped < 5
    if how is signal.SIGTERM:
        assert code == 128 + signal.SIGTERM
    run = batch(queue, "--progress", "json", "--state-dir", str(state))
    assert run.returncode == 0, run.stderr
    events = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    resumed = [e for e in events if e["type"] == "segment_done" and e["resumed"]]
    assert len(resumed) >= 2
    with sqlite3.connect(state / "drapto.db") as db:
        encodes = {
            (job, idx): n for job, idx, n in db.execute("SELECT job_id, idx, encodes FROM segments")
        }
    assert all(encodes[key] == 1 for key in finished)  # no finished segment was encoded twice
    assert max(encodes.values()) <= 2  # only the one in flight at the stop was redone
    assert (tmp_path / "a.av1.mkv").is_file() and (tmp_path / "b.av1.mkv").is_file()


@pytest.fixture(scope="module")
def queue_folder(tmp_path_factory: pytest.TempPathFactory, ffmpeg: str) -> Path:
    """x.mkv, x.mp4 and a text notes.mkv, shared by the refused queue files (read only)."""
    folder = tmp_path_factory.mktemp("queues")
    make_video(ffmpeg, folder / "x.mkv", size=(64, 64), duration=1)
    make_video(ffmpeg, folder / "x.mp4", size=(64, 64), duration=1)
    (folder / "notes.mkv").write_text("not a video")
    warm_imports()
    return folder


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[[job]]\ninput = "x.mkv"\ncrf = = 3\n', ":3: invalid TOML: invalid value"),
        ('[[job]]\ninput = "x.mkv"\nturbo = 1\n', ":3: job[1].turbo: unknown key"),
        ('[[job]]\ninput = "x.mkv"\ncrf = "high"\n', ":3: job[1].crf: must be a whole number"),
        ('[[job]]\ninput = "missing.mkv"\n', "does not exist"),
        ('[flags]\nwarp = true\n[[job]]\ninput = "x.mkv"\n', "unknown flag 'warp'"),
        (  # every problem at once: a missing input beside a file queued twice
            '[[job]]\ninput = "missing.mkv"\n[[job]]\ninput = "x.mkv"\n[[job]]\ninput = "./x.mkv"\n',
            "missing.mkv does not exist\n",
        ),
        ('[[job]]\ninput = "x.mkv"\n[[job]]\ninput = "./x.mkv"\n', "same file"),
        (
            '[[job]]\ninput = "x.mkv"\noutput_dir = "."\n[[job]]\ninput = "x.mp4"\noutput_dir = "."\n',
            "both be encoded",
        ),
    ],
)
def test_an_invalid_queue_file_is_refused_before_anything_is_encoded(
    queue_folder: Path, tmp_path: Path, text: str, expected: str
) -> None:
    queue = write(queue_folder / f"queue-{tmp_path.name}.toml", text)
    # forked (forked.py): a real process without a fresh interpreter's imports
    run = run_forked(["--batch", str(queue)], tmp_path, dict(os.environ))
    assert run.returncode == 2, run.stderr + run.stdout
    assert str(queue) in run.stderr and expected in run.stderr
    if "./x.mkv" in text and "missing" in text:
        assert "same file" in run.stderr, run.stderr
    assert run.stdout == ""
    assert not list(queue_folder.glob("*.av1.mkv")) and not (queue_folder / "x.mkv.mkv").exists()
    assert list(tmp_path.iterdir()) == []


def test_a_batch_is_followed_through_a_running_engine_to_its_exit_status(
    tmp_path: Path, make_media: object
) -> None:
    make_media("ok.mkv", size=(128, 72), duration=2)  # type: ignore[operator]
    broken = make_media("broken.mkv", size=(160, 90), duration=6, gop=25)  # type: ignore[operator]
    broken.write_bytes(broken.read_bytes()[: broken.stat().st_size // 2])
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    env = dict(os.environ, XDG_RUNTIME_DIR=str(runtime), XDG_STATE_HOME=str(tmp_path / "st"))
    server = subprocess.Popen([*DRAPTO, "serve"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        socket = runtime / "drapto" / "engine.sock"
        deadline = time.monotonic() + 20
        while not socket.exists():
            assert time.monotonic() < deadline and server.poll() is None, "engine did not start"
            time.sleep(0.05)
        queue = write(
            tmp_path / "queue.toml",
            '[defaults]\npreset = 12\n[[job]]\ninput = "ok.mkv"\n[[job]]\ninput = "broken.mkv"\n',
        )
        argv = ["--batch", str(queue), "--progress", "json"]  # forked, as batch() does
        run = run_forked(argv, Path.cwd(), env, timeout=300)
        assert run.returncode == 1, run.stderr + run.stdout
        events = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
        assert any("running engine service" in e.get("message", "") for e in events)
        finished = [e["entry"]["status"] for e in events if e["type"] == "entry"]
        assert finished.count("done") == 1 and finished.count("failed") == 1
        assert (tmp_path / "ok.av1.mkv").is_file()
        status = run_forked(["status"], Path.cwd(), env, timeout=30)
        assert status.returncode == 0 and "1 done" in status.stdout and "1 failed" in status.stdout
        # run through the engine again: the done job is skipped, the broken one fails again
        again = run_forked(argv, Path.cwd(), env, timeout=300)
        assert again.returncode == 1
        statuses = [j["status"] for j in summary(tmp_path / "st")["jobs"]]  # type: ignore[index]
        assert statuses == ["skipped", "failed"]
        assert server.poll() is None  # the engine outlives its batch clients
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=10) == 0


def test_a_queued_file_that_is_not_media_is_one_failed_entry_named_or_found(
    tmp_path: Path, make_media: object
) -> None:
    """Named in the queue file or found in a queued folder, the same unreadable file is
    one failed entry with its reason; the other jobs run and the batch exits 1."""
    make_media("x.mkv", size=(64, 64), duration=1)  # type: ignore[operator]
    (tmp_path / "notes.mkv").write_text("not a video at all\n" * 20)
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "junk.mkv").write_text("not a video either\n" * 20)
    queue = write(
        tmp_path / "queue.toml",
        '[defaults]\npreset = 12\n[[job]]\ninput = "x.mkv"\n[[job]]\ninput = "notes.mkv"\n'
        '[[job]]\ninput = "lib"\n',
    )
    state = tmp_path / "state"
    run = batch(queue, "--no-daemon", "--state-dir", str(state))
    assert run.returncode == 1, run.stderr + run.stdout
    rows = {
        Path(r["input"]).name: r
        for r in json.loads((state / "last-batch.json").read_text())["jobs"]
    }
    assert {name: r["status"] for name, r in rows.items()} == {
        "x.mkv": "done",
        "notes.mkv": "failed",
        "junk.mkv": "failed",
    }
    for name in ("notes.mkv", "junk.mkv"):
        assert "is not a readable media file" in rows[name]["note"], rows[name]
    assert rows["notes.mkv"]["output"] == str(tmp_path / "notes.av1.mkv")
