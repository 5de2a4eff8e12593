"""File names that are not valid UTF-8 (`bad\\xff\\xfe.mp4`, as old Samba shares leave
them) work end to end: probe, encode, a queued folder, an engine service.

Python holds such a name with its undecodable bytes as lone surrogates (os.fsdecode);
the output must land under the same bytes, logs and printed lines show the bytes escaped
(`\\xff`), and JSON carries them as `\\udcff` escapes, which json.loads turns back into
the same name. Every run is a real `python -m drapto_engine.cli` whose stdout is strict
UTF-8 (PYTHONIOENCODING), as on a desktop whose locale is en_US.UTF-8.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mediagen import make_video

pytestmark = pytest.mark.slow

DRAPTO = [sys.executable, "-m", "drapto_engine.cli"]
BAD = os.fsdecode(b"bad\xff\xfe")
SHOWN = "bad\\xff\\xfe"  # how people see it: in logs and printed lines
FOLDER = os.fsdecode(b"share\xfd")  # the folder's name is not UTF-8 either


def drapto(*argv: str | Path, env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    done = subprocess.run(
        [*DRAPTO, *map(str, argv)], capture_output=True, env=env, cwd=cwd, timeout=300, check=False
    )
    out = done.stdout.decode("utf-8")  # strict: what drapto prints is valid UTF-8
    return done.returncode, out, done.stderr.decode("utf-8")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    return dict(
        os.environ,
        PYTHONIOENCODING="utf-8:strict",
        XDG_RUNTIME_DIR=str(runtime),
        XDG_STATE_HOME=str(tmp_path / "state"),
    )


@pytest.fixture
def source(ffmpeg: str, tmp_path: Path) -> Path:
    return make_video(ffmpeg, tmp_path / "lib" / FOLDER / f"{BAD}.mp4", size=(64, 48), duration=1.0)


def logs(tmp_path: Path) -> str:
    return "".join(p.read_text("utf-8") for p in (tmp_path / "state").rglob("*.log"))


def test_probe_shows_the_name_escaped_and_json_keeps_it(
    source: Path, env: dict[str, str], tmp_path: Path
) -> None:
    status, out, err = drapto("probe", source, env=env, cwd=tmp_path)
    assert (status, err) == (0, "")
    assert out.splitlines()[0] == f"{tmp_path}/lib/share\\xfd/{SHOWN}.mp4"
    status, out, err = drapto("probe", "--json", source, env=env, cwd=tmp_path)
    assert (status, err) == (0, "")
    assert json.loads(out)["path"] == str(source)


def test_encode_writes_the_output_under_the_same_bytes(
    source: Path, env: dict[str, str], tmp_path: Path
) -> None:
    status, out, err = drapto(
        "encode", source, "--preset", "12", "--no-daemon", "--progress", "plain",
        env=env, cwd=tmp_path,
    )  # fmt: skip
    assert status == 0, err
    assert "Traceback" not in err and "Logging error" not in err
    output = source.with_name(f"{BAD}.av1.mkv")
    assert output.is_file()
    assert f"done: {tmp_path}/lib/share\\xfd/{SHOWN}.av1.mkv" in out
    assert f"{SHOWN}.mp4" in logs(tmp_path)
    status, out, err = drapto(
        "encode", source, "--preset", "12", "--no-daemon", "--progress", "json", "--overwrite",
        env=env, cwd=tmp_path,
    )  # fmt: skip
    assert status == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    [finished] = [e for e in events if e["type"] == "job_finished"]
    assert finished["summary"]["output"] == str(output)


def test_a_queued_folder_with_such_a_name_runs_every_file(
    ffmpeg: str, source: Path, env: dict[str, str], tmp_path: Path
) -> None:
    make_video(ffmpeg, source.with_name("plain.mkv"), size=(64, 48), duration=1.0)
    queue = tmp_path / "queue.toml"
    queue.write_text(f'[defaults]\npreset = 12\n[[job]]\ninput = "{source.parent.parent}"\n')
    status, out, err = drapto("--batch", queue, "--progress", "plain", env=env, cwd=tmp_path)
    assert status == 0, err + out
    assert "Traceback" not in err
    assert source.with_name(f"{BAD}.av1.mkv").is_file()
    assert source.with_name("plain.av1.mkv").is_file()
    summary = json.loads((tmp_path / "state" / "drapto" / "last-batch.json").read_text())
    assert {j["input"] for j in summary["jobs"]} == {
        str(source),
        str(source.with_name("plain.mkv")),
    }
    assert f"{SHOWN}.mp4" in logs(tmp_path)


def test_through_a_running_engine(
    ffmpeg: str, source: Path, env: dict[str, str], tmp_path: Path
) -> None:
    server = subprocess.Popen([*DRAPTO, "serve"], env=env, stderr=subprocess.PIPE)
    try:
        socket = tmp_path / "run" / "drapto" / "engine.sock"
        deadline = time.monotonic() + 20
        while not socket.exists():
            assert time.monotonic() < deadline and server.poll() is None, "engine did not start"
            time.sleep(0.05)
        status, out, err = drapto(
            "encode", source, "--preset", "12", "--progress", "json", env=env, cwd=tmp_path
        )
        assert status == 0, err + out
        assert source.with_name(f"{BAD}.av1.mkv").is_file()
        events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        [finished] = [e for e in events if e["type"] == "job_finished"]
        assert finished["summary"]["input"] == str(source)
        status, out, err = drapto("status", "--json", env=env, cwd=tmp_path)
        assert status == 0, err
        assert str(source) in {e["input"] for e in json.loads(out)["entries"]}
        status, out, err = drapto("status", env=env, cwd=tmp_path)
        assert (status, err) == (0, "")
        assert "1 done" in out
        # a queued folder holding it, through the engine: every file done, this one skipped
        make_video(ffmpeg, source.with_name("plain.mkv"), size=(64, 48), duration=1.0)
        queue = tmp_path / "queue.toml"
        queue.write_text(f'[defaults]\npreset = 12\n[[job]]\ninput = "{source.parent.parent}"\n')
        status, out, err = drapto("--batch", queue, "--progress", "json", env=env, cwd=tmp_path)
        assert status == 0, err + out
        assert source.with_name("plain.av1.mkv").is_file()
        entries = [json.loads(line)["entry"] for line in out.splitlines() if '"entry"' in line]
        assert {(e["input"], e["status"]) for e in entries} >= {(str(source), "skipped")}
        assert server.poll() is None
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=10) == 0
    assert f"{SHOWN}.mp4" in logs(tmp_path)
