"""`drapto flags` and `drapto config`: the config file's flags, the saved flags (tomli-w)
and the effective configuration, and beside them what a running engine uses."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import pytest
from encode_helpers import encode
from forked import run_forked, warm_imports

from drapto_engine.server.location import answers

DRAPTO = [sys.executable, "-m", "drapto_engine.cli"]


def drapto(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`drapto --config CONFIG ARGS` forked from the test process (forked.py: a real process
    without a fresh interpreter's imports); the engine itself runs as `drapto serve`."""
    return run_forked(["--config", str(config), *args], Path.cwd(), dict(os.environ), 60)


@pytest.fixture(scope="module", autouse=True)
def _imports_before_forking() -> None:
    warm_imports()


def test_flags_come_from_the_config_and_a_set_is_saved(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[flags]\ncrop_detection = "off"\nscene_segmentation = "shadow"\n')
    listed = drapto(config, "flags", "--json")
    assert listed.returncode == 0, listed.stderr
    flags = {f["name"]: f for f in map(json.loads, listed.stdout.splitlines())}
    assert (flags["crop_detection"]["state"], flags["crop_detection"]["source"]) == (
        "off",
        "config",
    )
    assert flags["scene_segmentation"]["state"] == "shadow"
    assert (flags["tail_threads"]["state"], flags["tail_threads"]["source"]) == ("on", "default")
    changed = drapto(config, "flags", "set", "crop_detection", "on")
    assert changed.returncode == 0 and "crop_detection" in changed.stdout
    assert tomllib.loads((tmp_path / "flags.toml").read_text()) == {"crop_detection": "on"}
    again = {
        f["name"]: f for f in map(json.loads, drapto(config, "flags", "--json").stdout.splitlines())
    }
    assert (again["crop_detection"]["state"], again["crop_detection"]["source"]) == ("on", "saved")
    bad = drapto(config, "flags", "set", "segmented_encoding", "shadow")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


def test_config_prints_the_effective_configuration_and_refuses_a_bad_one(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('workers = 3\nnotify_url = "http://127.0.0.1:9/x"\n[defaults]\ncrf = 30\n')
    shown = drapto(config, "config", "--json")
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["workers"] == 3 and data["defaults"]["crf"] == 30
    assert (
        data["memory_reserve_percent"] == 15.0 and data["effective_flags"]["crop_detection"] == "on"
    )
    text = drapto(config, "config")
    assert "workers = 3" in text.stdout and f"# config file: {config}" in text.stdout
    config.write_text('workers = 0\nnotify_url = "ftp://x"\nturbo = true\n')
    refused = drapto(config, "config")
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
    for problem in ("workers", "notify_url", "turbo"):
        assert problem in refused.stderr


def test_config_defaults_and_flags_shape_an_encode(tmp_path: Path, make_media: object) -> None:
    source = make_media(  # type: ignore[operator]
        "letterbox.mkv", size=(160, 120), pad=(160, 80, 0, 20), duration=1
    )
    config = tmp_path / "cfg" / "config.toml"
    config.parent.mkdir()
    config.write_text('[defaults]\ncrf = 50\n[flags]\ncrop_detection = "off"\n')
    run = encode(source, tmp_path / "out.mkv", "--state-dir", str(tmp_path / "s"), config=config)
    assert run.returncode == 0, run.stderr
    analysis = run.of("analysis")[0]
    assert analysis["crf"] == 50 and analysis["crop"] is None


# --- with an engine running: `drapto config` shows what it uses beside the file ----------


def _serve(config: Path, state: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*DRAPTO, "--config", str(config), "serve", "--state-dir", str(state), *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_until_serving(process: subprocess.Popen[str], socket_path: Path) -> None:
    deadline = time.monotonic() + 60
    while not answers(socket_path):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"drapto serve did not start: {process.communicate()[1]!r}")
        time.sleep(0.05)


def test_config_shows_what_a_running_engine_uses(tmp_path: Path) -> None:
    short = Path(tempfile.mkdtemp(prefix="drc-", dir="/tmp"))  # socket paths: 107 bytes
    socket_path = short / "engine.sock"
    config = tmp_path / "config.toml"
    config.write_text(
        f'workers = 3\nsocket_path = "{socket_path}"\n[flags]\ncrop_detection = "off"\n'
    )
    offline = drapto(config, "config")
    assert offline.returncode == 0, offline.stderr
    assert "# running engine: none (`drapto serve` starts one" in offline.stdout
    engine = _serve(config, tmp_path / "state", "--workers", "2")
    try:
        _wait_until_serving(engine, socket_path)
        changed = drapto(config, "flags", "set", "tail_threads", "off")
        assert changed.returncode == 0, changed.stderr
        shown = drapto(config, "config", "--json")
        assert shown.returncode == 0, shown.stderr
        data = json.loads(shown.stdout)
        assert data["workers"] == 3  # the file's
        assert data["engine"]["pid"] == engine.pid
        assert data["engine"]["socket"] == str(socket_path)
        assert data["engine"]["workers"] == 2  # the engine's: its --workers wins
        assert data["engine"]["flags"]["crop_detection"] == "off"
        assert data["engine"]["flags"]["tail_threads"] == "off"
        assert data["engine"]["config"]["workers"] == 3
        text = drapto(config, "config")
        assert text.returncode == 0, text.stderr
        assert f"# running engine: pid {engine.pid} on {socket_path}" in text.stdout
        assert "#   workers = 2 (its bound now)" in text.stdout
        assert "#   tail_threads = off (live)" in text.stdout
        assert "#   crop_detection = off (config)" in text.stdout
    finally:
        engine.terminate()
        engine.communicate(timeout=30)
        shutil.rmtree(short, ignore_errors=True)
    assert engine.returncode == 0
    assert (tmp_path / "state" / "logs" / "engine.log").is_file()  # the service's one log


def test_status_without_an_engine_says_how_to_start_one(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'socket_path = "{tmp_path / "none.sock"}"\n')
    done = drapto(config, "status")
    assert done.returncode == 1 and done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith(f"drapto: {tmp_path / 'none.sock'}: no engine is running")
    assert "drapto serve" in line and "TUI" in line
