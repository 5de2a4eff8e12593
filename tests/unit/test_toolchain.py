"""The ffmpeg capability check.

A deficient ffmpeg (too old, no libsvtav1, no -dolbyvision) cannot be installed here, so
those are small shell scripts answering the four questions the check asks. Each logs
its arguments, which shows how often the check really ran. The real binary is checked
too.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from drapto_engine.core.errors import ToolchainError
from drapto_engine.infrastructure.ffmpeg import toolchain
from drapto_engine.infrastructure.ffmpeg.toolchain import (
    ENV_VAR,
    Toolchain,
    check_binary,
    embedded_ffmpeg,
    find_toolchain,
)

GOOD_BANNER = "ffmpeg version 9.0.2 Copyright (c) 2000-2026 the FFmpeg developers"
BOTH_ENCODERS = " V....D libsvtav1            SVT-AV1(Scalable Video Technology for AV1) encoder\n A....D libopus              libopus Opus"
SVT_HELP = "libsvtav1 AVOptions:\n  -preset            <int>\n  -dolbyvision       <boolean>"
DECODERS = " V....D libdav1d              dav1d AV1 decoder by VideoLAN"


def fake_ffmpeg(
    folder: Path,
    *,
    banner: str = GOOD_BANNER,
    encoders: str = BOTH_ENCODERS,
    svt_help: str = SVT_HELP,
    decoders: str = DECODERS,
    name: str = "ffmpeg",
) -> Path:
    """A script that answers like ffmpeg and appends its arguments to calls.log."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / name
    log = folder / "calls.log"
    script.write_text(
        "#!/bin/sh\n"
        f"echo \"$*\" >> '{log}'\n"
        'case "$*" in\n'
        f"  *-version*) printf '%s\\n' '{banner}' ;;\n"
        f"  *-encoders*) printf '%s\\n' '{encoders}' ;;\n"
        f"  *encoder=libsvtav1*) printf '%s\\n' '{svt_help}' ;;\n"
        f"  *-decoders*) printf '%s\\n' '{decoders}' ;;\n"
        "esac\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def calls(script: Path) -> list[str]:
    log = script.parent / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


@pytest.fixture(autouse=True)
def fresh_cache(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(ENV_VAR, raising=False)
    toolchain._cached_check.cache_clear()
    yield
    toolchain._cached_check.cache_clear()


def test_a_capable_fake_passes(tmp_path: Path) -> None:
    script = fake_ffmpeg(tmp_path)
    assert check_binary(str(script)) == Toolchain(
        ffmpeg=str(script), version=GOOD_BANNER, has_libdav1d=True
    )


def test_too_old(tmp_path: Path) -> None:
    script = fake_ffmpeg(tmp_path, banner="ffmpeg version 6.1.1 Copyright (c) 2000-2023")
    with pytest.raises(ToolchainError) as caught:
        check_binary(str(script))
    message = caught.value.one_line()
    assert message.startswith(f"{script}: this ffmpeg lacks version >= 7.1 (found 6.1)")
    assert f"unset {ENV_VAR} to use the bundled ffmpeg" in message


def test_git_build_banner_is_understood(tmp_path: Path) -> None:
    script = fake_ffmpeg(tmp_path, banner="ffmpeg version n7.0-12-gabcdef Copyright")
    with pytest.raises(ToolchainError, match=r"version >= 7\.1 \(found 7\.0\)"):
        check_binary(str(script))
    newer = fake_ffmpeg(tmp_path / "newer", banner="ffmpeg version n7.1-3-g123 Copyright")
    assert check_binary(str(newer)).version.startswith("ffmpeg version n7.1")


def test_no_banner(tmp_path: Path) -> None:
    script = fake_ffmpeg(tmp_path, banner="avconv version 12")
    with pytest.raises(ToolchainError, match="lacks a recognisable 'ffmpeg version' banner"):
        check_binary(str(script))


def test_no_libsvtav1(tmp_path: Path) -> None:
    script = fake_ffmpeg(
        tmp_path,
        encoders=" A....D libopus              libopus Opus",
        svt_help="Codec libsvtav1 is not recognized by FFmpeg.",
    )
    with pytest.raises(ToolchainError) as caught:
        check_binary(str(script))
    assert "this ffmpeg lacks encoder libsvtav1" in caught.value.one_line()
    assert "libopus" not in caught.value.problem
    assert caught.value.hint and ENV_VAR in caught.value.hint


def test_no_libopus(tmp_path: Path) -> None:
    script = fake_ffmpeg(tmp_path, encoders=" V....D libsvtav1            SVT-AV1")
    with pytest.raises(ToolchainError, match="lacks encoder libopus"):
        check_binary(str(script))


def test_no_dolbyvision_option(tmp_path: Path) -> None:
    script = fake_ffmpeg(tmp_path, svt_help="libsvtav1 AVOptions:\n  -preset            <int>")
    with pytest.raises(ToolchainError) as caught:
        check_binary(str(script))
    assert caught.value.problem == "this ffmpeg lacks the -dolbyvision option of libsvtav1"


def test_everything_missing_is_listed_at_once(tmp_path: Path) -> None:
    script = fake_ffmpeg(tmp_path, banner="ffmpeg version 5.0", encoders="", svt_help="")
    with pytest.raises(ToolchainError) as caught:
        check_binary(str(script))
    problem = caught.value.problem
    for part in ("version >= 7.1 (found 5.0)", "encoder libsvtav1", "encoder libopus"):
        assert part in problem


def test_missing_libdav1d_is_only_noted(tmp_path: Path) -> None:
    script = fake_ffmpeg(tmp_path, decoders=" V....D av1     Alliance for Open Media AV1")
    assert check_binary(str(script)).has_libdav1d is False


def test_env_var_pointing_nowhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nowhere" / "ffmpeg"
    monkeypatch.setenv(ENV_VAR, str(missing))
    with pytest.raises(ToolchainError) as caught:
        find_toolchain()
    assert caught.value.one_line() == (
        f"{missing}: no such ffmpeg binary (set {ENV_VAR} or ffmpeg_path)"
    )


def test_env_var_wins_over_configured_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chosen = fake_ffmpeg(tmp_path / "env")
    monkeypatch.setenv(ENV_VAR, str(chosen))
    assert find_toolchain(configured=str(tmp_path / "elsewhere")).ffmpeg == str(chosen)


def test_not_executable(tmp_path: Path) -> None:
    script = fake_ffmpeg(tmp_path)
    script.chmod(0o644)
    with pytest.raises(ToolchainError, match="cannot run ffmpeg: Permission denied"):
        check_binary(str(script))


def test_name_is_looked_up_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = fake_ffmpeg(tmp_path / "bin", name="my-ffmpeg")
    monkeypatch.setenv("PATH", f"{script.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    assert check_binary("my-ffmpeg").ffmpeg == str(script)


def test_check_runs_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = fake_ffmpeg(tmp_path)
    monkeypatch.setenv(ENV_VAR, str(script))
    first = find_toolchain()
    second = find_toolchain()
    assert second is first
    log = calls(script)
    assert sum("-version" in line for line in log) == 1
    assert len(log) == 4  # -version, -encoders, -h encoder=libsvtav1, -decoders


def test_a_failed_check_is_not_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = fake_ffmpeg(tmp_path, banner="ffmpeg version 6.0")
    monkeypatch.setenv(ENV_VAR, str(script))
    for _ in range(2):
        with pytest.raises(ToolchainError):
            find_toolchain()
    assert sum("-version" in line for line in calls(script)) == 2


def test_the_real_binary_passes() -> None:
    real = embedded_ffmpeg()
    checked = check_binary(real)
    assert checked.ffmpeg == real
    assert checked.version.startswith("ffmpeg version n9.0.2")
    assert checked.has_libdav1d is True
    assert find_toolchain().ffmpeg == real
