"""The config file's ffmpeg_path is checked like DRAPTO_FFMPEG; a bad file is one line.

`drapto` runs in children forked from the test process (forked.py: real processes without
a fresh interpreter's imports); test_cli_errors compares such a child with the real command.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from forked import run_forked, warm_imports


@pytest.fixture(scope="module", autouse=True)
def _imports_before_forking() -> None:
    warm_imports()


def drapto(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_forked(args, Path.cwd(), dict(os.environ) if env is None else env)


def run_with_config(tmp_path: Path, text: str, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "drapto").mkdir(exist_ok=True)
    (tmp_path / "drapto" / "config.toml").write_text(text)
    env = {k: v for k, v in os.environ.items() if k != "DRAPTO_FFMPEG"}
    env["XDG_CONFIG_HOME"] = str(tmp_path)
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    return drapto(*args, env=env)


def test_config_ffmpeg_path_is_checked(tmp_path: Path, shared_media: Path) -> None:
    fake = tmp_path / "old-ffmpeg"
    fake.write_text("#!/bin/sh\necho 'ffmpeg version 6.0 Copyright'\n")
    fake.chmod(0o755)
    done = run_with_config(
        tmp_path, f'ffmpeg_path = "{fake}"\n', "probe", str(shared_media / "counter.mp4")
    )
    assert done.returncode == 1
    assert (
        done.stderr.splitlines() == [done.stderr.strip()]
        and "version >= 7.1 (found 6.0)" in done.stderr
    )


def test_config_with_the_real_ffmpeg_works(tmp_path: Path, shared_media: Path, ffmpeg: str) -> None:
    done = run_with_config(
        tmp_path,
        f'ffmpeg_path = "{ffmpeg}"\n',
        "probe",
        "--json",
        str(shared_media / "counter.mp4"),
    )
    assert done.returncode == 0, done.stderr
    assert '"frame_count": 30' in done.stdout


def test_invalid_config_is_one_line(tmp_path: Path, shared_media: Path) -> None:
    done = run_with_config(
        tmp_path, "ffmpeg_path = [1, 2\n", "probe", str(shared_media / "counter.mp4")
    )
    config = tmp_path / "drapto" / "config.toml"
    assert done.returncode == 2, done.stderr
    assert done.stderr == f"drapto: {config}:1: invalid TOML: unclosed array at the end\n"
    done = run_with_config(tmp_path, "turbo = true\n", "probe", str(shared_media / "counter.mp4"))
    assert done.returncode == 2
    assert done.stderr.startswith(f"drapto: {config}:1: turbo: unknown key (keys are ")
    assert len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr
    assert done.stdout == ""


def test_config_types_are_strict(tmp_path: Path) -> None:
    """`workers = true` was read as 1 and `stall_timeout_s = inf` as forever."""
    bad = tmp_path / "bad.toml"
    for text, problem in [
        ("workers = true\n", "1: workers: must be a whole number, not true"),
        (
            "# timeouts\nstall_timeout_s = inf\n",
            "2: stall_timeout_s: must be a finite number, not inf",
        ),
        ("[defaults]\ncrf = true\n", "2: defaults.crf: must be a whole number, not true"),
        (
            "[flags]\ncrop_detecton = 'on'\n",
            "2: flags.crop_detecton: unknown flag 'crop_detecton' (did you mean 'crop_detection'?)",
        ),
    ]:
        bad.write_text(text)
        done = drapto("--config", str(bad), "config")
        assert done.returncode == 2, done.stderr
        assert done.stderr == f"drapto: {bad}:{problem}\n"
        assert done.stdout == ""


def test_pathological_config_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "deep.toml"
    bad.write_text("workers = " + "[" * 100_000 + "]" * 100_000 + "\n")
    done = drapto("--config", str(bad), "config")
    assert done.returncode == 2
    assert done.stderr == f"drapto: {bad}:1: workers: nested too deeply for the TOML parser\n"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    done = drapto("--config", str(bad), "config")
    assert done.returncode == 2
    assert done.stderr == f"drapto: {bad}: is a binary file (a NUL byte at byte 8), not TOML text\n"


def test_config_work_dir_must_exist_as_work_dir_does(tmp_path: Path) -> None:
    """`work_dir` in [defaults] follows --work-dir's rule: a missing folder is refused
    in one line naming the file, the line and the key; nothing is created."""
    scratch = tmp_path / "scratch"
    done = run_with_config(tmp_path, f'[defaults]\nwork_dir = "{scratch}"\n', "status")
    config = tmp_path / "drapto" / "config.toml"
    assert done.returncode == 2, done.stderr
    assert done.stderr == f"drapto: {config}:2: defaults.work_dir: {scratch}: no such folder\n"
    assert not scratch.exists()


@pytest.mark.parametrize("command", ["status", "serve"])
def test_an_over_long_socket_path_in_the_config_file_is_a_usage_error(
    tmp_path: Path, command: str
) -> None:
    """107 bytes is the kernel's limit for a Unix socket's path: refused like --socket."""
    long = "/tmp/" + "s" * 120 + ".sock"
    done = run_with_config(tmp_path, f'socket_path = "{long}"\n', command)
    config = tmp_path / "drapto" / "config.toml"
    assert done.returncode == 2, done.stderr
    assert done.stderr == (
        f"drapto: {config}:1: socket_path: a socket path may be 107 bytes at most, not 130\n"
    )
