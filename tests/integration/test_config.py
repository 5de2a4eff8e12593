"""The config file's ffmpeg_path is checked like DRAPTO_FFMPEG; a bad file is one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

DRAPTO = [sys.executable, "-m", "drapto_engine.cli"]


def run_with_config(tmp_path: Path, text: str, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "drapto").mkdir(exist_ok=True)
    (tmp_path / "drapto" / "config.toml").write_text(text)
    env = {k: v for k, v in os.environ.items() if k != "DRAPTO_FFMPEG"}
    env["XDG_CONFIG_HOME"] = str(tmp_path)
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    return subprocess.run([*DRAPTO, *args], capture_output=True, text=True, env=env, check=False)


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
    assert done.returncode == 2 and "invalid TOML" in done.stderr and "config.toml" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    done = run_with_config(tmp_path, "turbo = true\n", "probe", str(shared_media / "counter.mp4"))
    assert done.returncode == 2 and "invalid config: turbo" in done.stderr
