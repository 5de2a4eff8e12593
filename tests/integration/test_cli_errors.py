"""Every option of every `drapto` command, given a wrong value, answers with ONE line on
stderr naming the option or file, the right exit status and no traceback.

The options are walked from the argparse parser itself: an option added without an entry
in BAD below fails test_every_option_is_walked, so none can be forgotten.

Each wrong value runs in a child forked from this process (forked.py: a real process and
exit status, without a fresh interpreter's imports); one case of every command also runs
as `python -m drapto_engine.cli` and must answer exactly the same.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from forked import run_forked, warm_imports

from drapto_engine.cli.failure import explain
from drapto_engine.cli.main import build_parser
from drapto_engine.core.jobs import JobOptions
from drapto_engine.infrastructure.workers import cpu_count

DRAPTO = [sys.executable, "-m", "drapto_engine.cli"]
USAGE, FAILED = 2, 1


@dataclass(frozen=True)
class Bad:
    argv: tuple[str, ...]
    """The command line; {placeholders} are filled from the `places` fixture."""
    status: int
    names: str
    """What the one line must name: the option, or the file ({placeholder} allowed)."""
    says: str = ""
    """A fragment of the problem the line must state."""


def bad(*argv: str, status: int = USAGE, names: str = "", says: str = "") -> Bad:
    return Bad(argv, status, names, says)


TOO_MANY_WORKERS = str(4 * cpu_count() + 1)

# The key is the command path and the option as `drapto --help` shows it (its last option
# string, or the positional's metavar).
BAD: dict[str, list[Bad]] = {
    "drapto --debug": [bad("--debug=yes", "flags", names="--debug", says="explicit argument")],
    "drapto --config": [
        bad("--config", "{missing}", "flags", names="{missing}", says="config file not found"),
        bad("--config", "{garbage}", "status", names="{garbage}", says="invalid TOML"),
        bad("--config", "{deep}", "config", names="{deep}", says="nested too deeply"),
        bad("--config", "{dir}", "config", names="{dir}"),
    ],
    "drapto --batch": [
        bad("--batch", "{missing}", names="{missing}", says="no such file"),
        bad("--batch", "{dir}", names="{dir}", says="is a folder"),
        bad("--batch", "{queue}", "flags", names="--batch", says="takes no command"),
    ],
    "drapto --progress": [
        bad("--batch", "{queue}", "--progress", "xml", names="--progress", says="invalid choice")
    ],
    "drapto --no-daemon": [bad("--batch", "{queue}", "--no-daemon=1", names="--no-daemon")],
    "drapto --detach": [
        bad("--batch", "{queue}", "--detach=1", names="--detach"),
        bad("--batch", "{queue}", "--detach", "--no-daemon", names="--detach"),
    ],
    "drapto --state-dir": [
        bad("--batch", "{queue}", "--state-dir", "{under_file}", names="--state-dir"),
        bad("--batch", "{queue}", "--state-dir", "{unwritable}", names="--state-dir"),
    ],
    "drapto COMMAND": [
        bad("encdoe", "x.mkv", names="COMMAND", says="invalid choice"),
        bad(names="no command", says="needs a terminal"),  # stdout is a pipe here
    ],
    # probe
    "drapto probe FILE": [
        bad("probe", status=USAGE, names="probe", says="required: FILE"),
        bad("probe", "{missing}", status=FAILED, names="{missing}", says="no such file"),
        bad("probe", "{loop}", status=FAILED, names="{loop}", says="symbolic link loop"),
        bad("probe", "{dir}", status=FAILED, names="{dir}", says="is a directory"),
    ],
    "drapto probe --json": [bad("probe", "--json=1", "{input}", names="--json")],
    "drapto probe --no-crop": [bad("probe", "--no-crop=1", "{input}", names="--no-crop")],
    # encode
    "drapto encode INPUT": [
        bad("encode", names="encode", says="required: INPUT"),
        bad("encode", "{missing}", status=FAILED, names="{missing}", says="no such file"),
        bad("encode", "{loop}", status=FAILED, names="{loop}", says="symbolic link loop"),
        bad("encode", "{dir}", status=FAILED, names="{dir}", says="is a directory"),
        # its default output, beside it, is taken by a directory
        bad("encode", "{blocked}", status=FAILED, names="{blocked_out}", says="with -o"),
    ],
    "drapto encode --output": [
        bad("encode", "{input}", "-o", "out.mp4", names="-o/--output", says="Matroska"),
        bad("encode", "{input}", "-o", "out", names="-o/--output", says="end in .mkv"),
        bad("encode", "{input}", "-o", "{dir_mkv}", names="-o/--output", says="is a directory"),
        bad(
            "encode",
            "{input}",
            "-o",
            "{dir_mkv}",
            "--overwrite",
            names="-o/--output",
            says="is a directory",
        ),
        bad("encode", "{input}", "-o", "{no_folder}", names="-o/--output", says="does not exist"),
        bad("encode", "{input}", "-o", "{unwritable_mkv}", names="-o/--output", says="writable"),
    ],
    "drapto encode --preset": [
        bad("encode", "{input}", "--preset", "14", names="--preset", says="-2 to 13"),
        bad("encode", "{input}", "--preset", "-3", names="--preset", says="-2 to 13"),
        bad("encode", "{input}", "--preset", "fast", names="--preset", says="-2 to 13"),
    ],
    "drapto encode --crf": [
        bad("encode", "{input}", "--crf", "70", names="--crf", says="1 to 63"),
        bad("encode", "{input}", "--crf", "0", names="--crf", says="1 to 63"),
        bad("encode", "{input}", "--crf", "2.5", names="--crf", says="1 to 63"),
    ],
    "drapto encode --target-vmaf": [
        bad("encode", "{input}", "--target-vmaf", "99.5", names="--target-vmaf", says="50 to 99"),
        bad("encode", "{input}", "--target-vmaf", "nan", names="--target-vmaf", says="50 to 99"),
        bad(
            "encode",
            "{input}",
            "--target-vmaf",
            "93",
            "--crf",
            "30",
            names="--target-vmaf",
            says="do not go together",
        ),
    ],
    "drapto encode --crf-range": [
        bad(
            "encode", "{input}", "--crf-range", "40-20", names="--crf-range", says="the first lower"
        ),
        bad("encode", "{input}", "--crf-range", "20", names="--crf-range", says="MIN-MAX"),
        bad("encode", "{input}", "--crf-range", "0-30", names="--crf-range", says="1 to 63"),
    ],
    "drapto encode --workers": [
        bad("encode", "{input}", "--workers", "0", names="--workers", says="per core"),
        bad("encode", "{input}", "--workers", "-1", names="--workers", says="per core"),
        bad("encode", "{input}", "--workers", TOO_MANY_WORKERS, names="--workers"),
    ],
    "drapto encode --progress": [
        bad("encode", "{input}", "--progress", "xml", names="--progress", says="invalid choice")
    ],
    "drapto encode --overwrite": [bad("encode", "{input}", "--overwrite=1", names="--overwrite")],
    "drapto encode --keep-work": [bad("encode", "{input}", "--keep-work=1", names="--keep-work")],
    "drapto encode --work-dir": [
        bad("encode", "{input}", "--work-dir", "{missing}", names="--work-dir", says="no such"),
        bad("encode", "{input}", "--work-dir", "{unwritable}", names="--work-dir", says="writable"),
        bad("encode", "{input}", "--work-dir", "{input}", names="--work-dir", says="not a folder"),
    ],
    "drapto encode --state-dir": [
        bad("encode", "{input}", "--state-dir", "{under_file}", names="--state-dir"),
        bad("encode", "{input}", "--state-dir", "{unwritable}", names="--state-dir"),
    ],
    "drapto encode --no-crop": [bad("encode", "{input}", "--no-crop=1", names="--no-crop")],
    "drapto encode --no-scenes": [bad("encode", "{input}", "--no-scenes=1", names="--no-scenes")],
    "drapto encode --whole": [bad("encode", "{input}", "--whole=1", names="--whole")],
    "drapto encode --min-segment": [
        bad("encode", "{input}", "--min-segment", "-5", names="--min-segment", says="above 0"),
        bad("encode", "{input}", "--min-segment", "0", names="--min-segment", says="above 0"),
        bad("encode", "{input}", "--min-segment", "nan", names="--min-segment", says="above 0"),
        bad("encode", "{input}", "--min-segment", "30", names="--min-segment", says="longest"),
    ],
    "drapto encode --max-segment": [
        bad("encode", "{input}", "--max-segment", "inf", names="--max-segment", says="above 0"),
        bad("encode", "{input}", "--max-segment", "1e999", names="--max-segment"),
        bad("encode", "{input}", "--max-segment", "2", names="--max-segment", says="longest"),
    ],
    "drapto encode --flag": [
        bad("encode", "{input}", "--flag", "crop_detect=off", names="--flag", says="did you mean"),
        bad("encode", "{input}", "--flag", "crop_detection=maybe", names="--flag"),
        bad("encode", "{input}", "--flag", "crop_detection", names="--flag", says="NAME="),
        bad("encode", "{input}", "--flag", "segmented_encoding=shadow", names="--flag"),
    ],
    "drapto encode --detach": [
        bad("encode", "{input}", "--detach=1", names="--detach"),
        bad("encode", "{input}", "--detach", "--no-daemon", names="--detach"),
    ],
    "drapto encode --force": [bad("encode", "{input}", "--force=1", names="--force")],
    "drapto encode --no-daemon": [bad("encode", "{input}", "--no-daemon=1", names="--no-daemon")],
    "drapto encode --hdr10-fallback": [
        bad("encode", "{input}", "--hdr10-fallback=1", names="--hdr10-fallback")
    ],
    "drapto encode --replace": [
        bad("encode", "{input}", "--replace=1", names="--replace"),
        bad("encode", "{input}", "--replace", "-o", "{dir}/x.mkv", names="-o", says="--replace"),
        # the name the AV1 file would take (input.mkv for input.mp4) is another file
        bad("encode", "{mp4}", "--replace", status=FAILED, names="{mp4}", says="another file"),
    ],
    "drapto encode --min-saving": [
        bad("encode", "{input}", "--replace", "--min-saving", "1", names="--min-saving"),
        bad("encode", "{input}", "--replace", "--min-saving", "-0.1", names="--min-saving"),
        bad("encode", "{input}", "--replace", "--min-saving", "ten", names="--min-saving"),
        bad("encode", "{input}", "--replace", "--min-saving", "nan", names="--min-saving"),
        bad("encode", "{input}", "--min-saving", "0.2", names="--min-saving", says="--replace"),
    ],
    "drapto encode --keep-days": [
        bad("encode", "{input}", "--replace", "--keep-days", "-1", names="--keep-days"),
        bad("encode", "{input}", "--replace", "--keep-days", "1.5", names="--keep-days"),
        bad("encode", "{input}", "--keep-days", "3", names="--keep-days", says="--replace"),
    ],
    "drapto encode --trash-dir": [
        bad("encode", "{input}", "--replace", "--trash-dir", "{no_folder}", names="--trash-dir"),
        bad("encode", "{input}", "--replace", "--trash-dir", "{input}", names="--trash-dir"),
        bad("encode", "{input}", "--replace", "--trash-dir", "{unwritable}", names="--trash-dir"),
        # a trash whose folder does not hold the source: no relative path to keep
        bad(
            "encode",
            "{input}",
            "--replace",
            "--trash-dir",
            "{dir}/trash",
            status=FAILED,
            names="{input}",
            says="is not inside",
        ),
    ],
    "drapto stats --json": [bad("stats", "--json=1", names="--json")],
    "drapto stats --state-dir": [
        bad("stats", "--state-dir", "{under_file}", names="--state-dir", says="no such folder"),
    ],
    "drapto restore PATH": [
        bad("restore", names="restore", says="required: PATH"),
        bad(
            "restore",
            "{missing}",
            "--state-dir",
            "{dir}",
            status=FAILED,
            names="{missing}",
            says="no original of this file",
        ),
    ],
    "drapto restore --state-dir": [
        bad("restore", "{input}", "--state-dir", "{input}", names="--state-dir", says="not a"),
    ],
    # flags and config
    "drapto flags --json": [bad("flags", "--json=1", names="--json")],
    "drapto flags ACTION": [bad("flags", "sett", names="ACTION", says="invalid choice")],
    "drapto flags set NAME": [
        bad("flags", "set", "crop_detectin", "on", names="crop_detectin", says="did you mean"),
        bad("flags", "set", names="flags set", says="required: NAME"),
    ],
    "drapto flags set STATE": [
        bad("flags", "set", "crop_detection", "maybe", names="maybe"),
        bad("flags", "set", "crop_detection", names="flags set", says="required: STATE"),
    ],
    "drapto config --json": [bad("config", "--json=1", names="--json")],
    # the service
    "drapto serve --socket": [
        bad("serve", "--socket", "{long_socket}", names="--socket", says="107 bytes"),
        bad("serve", "--socket", "{under_file_socket}", names="--socket", says="socket"),
    ],
    "drapto serve --state-dir": [
        bad("serve", "--state-dir", "{under_file}", names="--state-dir"),
        bad("serve", "--state-dir", "{unwritable}", names="--state-dir"),
    ],
    "drapto serve --workers": [
        bad("serve", "--workers", "0", names="--workers", says="only goes with --cluster"),
        bad("serve", "--workers", "-1", names="--workers"),
        bad("serve", "--workers", TOO_MANY_WORKERS, names="--workers", says="per core"),
    ],
    "drapto serve --cluster": [
        bad("serve", "--cluster", "tcp://0.0.0.0:8786", names="--cluster", says="--insecure")
    ],
    "drapto serve --dashboard": [
        bad("serve", "--dashboard", "0.0.0.0:1", names="--dashboard", says="--cluster")
    ],
    "drapto serve --insecure": [bad("serve", "--insecure=1", names="--insecure")],
    "drapto status --socket": [
        bad("status", "--socket", "{long_socket}", names="--socket", says="107 bytes"),
        bad("status", "--socket", "{missing}", status=FAILED, names="drapto serve"),
    ],
    "drapto status --json": [bad("status", "--json=1", names="--json")],
    # the cluster extra (certificates, workers)
    "drapto cluster ACTION": [bad("cluster", "inti", names="ACTION", says="invalid choice")],
    "drapto cluster init --bundle": [
        bad("cluster", "init", "--force", "--bundle", "{under_file}", status=FAILED, names="a-file")
    ],
    "drapto cluster init --force": [bad("cluster", "init", "--force=1", names="--force")],
    "drapto cluster bundle DIR": [
        bad("cluster", "bundle", names="cluster bundle", says="required: DIR"),
    ],
    "drapto cluster bundle --force": [
        bad("cluster", "bundle", "--force=1", "{missing}", names="--force")
    ],
    "drapto cluster init --name": [
        bad("cluster", "init", "--force", "--name", "", names="--name", says="one line")
    ],
    "drapto cluster bundle --name": [
        bad("cluster", "bundle", "{missing}", "--name", "", names="--name", says="one line")
    ],
    "drapto cluster revoke NAME": [
        bad("cluster", "revoke", names="cluster revoke", says="required: NAME"),
    ],
    "drapto worker ADDRESS": [
        bad("worker", names="worker", says="required: ADDRESS"),
        bad("worker", "tcp://0.0.0.0:8786", names="tcp://", says="--insecure"),
    ],
    "drapto worker --bundle": [
        bad("worker", "tls://127.0.0.1:1", "--bundle", "{missing}", names="{missing}")
    ],
    "drapto worker --slots": [
        bad("worker", "tls://127.0.0.1:1", "--slots", "0", names="--slots", says="per core"),
        bad("worker", "tls://127.0.0.1:1", "--slots", TOO_MANY_WORKERS, names="--slots"),
    ],
    "drapto worker --path-map": [
        bad("worker", "tls://127.0.0.1:1", "--path-map", "nonsense", names="--path-map")
    ],
    "drapto worker --dashboard": [
        bad("worker", "tls://127.0.0.1:1", "--dashboard", "0.0.0.0:8787", names="dashboard")
    ],
    "drapto worker --name": [
        bad("worker", "tls://127.0.0.1:1", "--name=", names="--name", says="one line")
    ],
    "drapto worker --timeout": [
        bad("worker", "tls://127.0.0.1:1", "--timeout", "-1", names="--timeout"),
        bad("worker", "tls://127.0.0.1:1", "--timeout", "inf", names="--timeout"),
    ],
    "drapto worker --insecure": [
        bad("worker", "tls://127.0.0.1:1", "--insecure=1", names="--insecure")
    ],
    "drapto watch ACTION": [bad("watch", "wacth", names="ACTION", says="invalid choice")],
    "drapto watch add DIR": [
        bad("watch", "add", names="watch add", says="required: DIR"),
        bad("watch", "add", "{missing}", status=FAILED, names="{missing}", says="no such folder"),
        bad("watch", "add", "{input}", status=FAILED, names="{input}", says="not a folder"),
    ],
    "drapto watch add --output": [
        bad("watch", "add", "{dir}", "--output", "besides", names="--output", says="beside")
    ],
    "drapto watch add --settle-s": [
        bad("watch", "add", "{dir}", "--settle-s", "-1", names="--settle-s"),
        bad("watch", "add", "{dir}", "--settle-s", "inf", names="--settle-s"),
    ],
    "drapto watch list --json": [bad("watch", "list", "--json=1", names="--json")],
    "drapto watch remove DIR": [
        bad("watch", "remove", names="watch remove", says="required: DIR"),
        bad("watch", "remove", "{dir}", status=FAILED, names="drapto serve"),
    ],
    "drapto watch rescan DIR": [
        bad("watch", "rescan", "{dir}", status=FAILED, names="drapto serve"),
    ],
    "drapto schedule --override-until-empty": [
        bad("schedule", "--override-until-empty=1", names="--override-until-empty")
    ],
    "drapto schedule --json": [bad("schedule", "--json=1", names="--json")],
    "drapto tui PATH": [
        bad("tui", "{missing}", status=FAILED, names="{missing}", says="no such file")
    ],
}

NO_WRONG_VALUE = (argparse._HelpAction, argparse._VersionAction)
"""-h and --version take no value: there is nothing to get wrong."""


def _walk(parser: argparse.ArgumentParser, path: str) -> Iterator[tuple[str, argparse.Action]]:
    for action in parser._actions:
        if isinstance(action, NO_WRONG_VALUE):
            continue
        name = action.option_strings[-1] if action.option_strings else action.metavar
        yield f"{path} {name}", action
        if isinstance(action, argparse._SubParsersAction):
            for command, sub in action.choices.items():
                yield from _walk(sub, f"{path} {command}")


OPTIONS = dict(_walk(build_parser(), "drapto"))


def test_every_option_is_walked() -> None:
    """Each option has wrong values to try, and each entry names a real option."""
    assert sorted(set(OPTIONS) - set(BAD)) == [], "options without wrong values in BAD"
    assert sorted(set(BAD) - set(OPTIONS)) == [], "BAD entries for options that are gone"


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("places")
    (root / "dir").mkdir()
    (root / "dir.mkv").mkdir()
    (root / "input.mkv").write_bytes(b"not checked: the options fail before the input is read")
    (root / "loop1").symlink_to(root / "loop2")
    (root / "loop2").symlink_to(root / "loop1")
    (root / "queue.toml").write_text('[[job]]\ninput = "input.mkv"\n')
    (root / "garbage.toml").write_text("workers = [1, 2\n")
    (root / "deep.toml").write_text("a = " + "[" * 5000 + "]" * 5000 + "\n")
    (root / "a-file").write_text("")
    (root / "taken.mp4").write_text("")
    (root / "taken.mkv").write_text("")
    (root / "blocked.mkv").write_text("")
    (root / "blocked.av1.mkv").mkdir()
    unwritable = _unwritable(root)
    return {
        "missing": str(root / "missing.mkv"),
        "dir": str(root / "dir"),
        "dir_mkv": str(root / "dir.mkv"),
        "mp4": str(root / "taken.mp4"),
        "input": str(root / "input.mkv"),
        "blocked": str(root / "blocked.mkv"),
        "blocked_out": str(root / "blocked.av1.mkv"),
        "loop": str(root / "loop1"),
        "queue": str(root / "queue.toml"),
        "garbage": str(root / "garbage.toml"),
        "deep": str(root / "deep.toml"),
        "no_folder": str(root / "no-folder" / "out.mkv"),
        "under_file": str(root / "a-file" / "state"),
        "under_file_socket": str(root / "a-file" / "s.sock"),
        "unwritable": str(unwritable),
        "unwritable_mkv": str(unwritable / "out.mkv"),
        "long_socket": str(root / ("s" * 120 + ".sock")),
    }


def _unwritable(root: Path) -> Path:
    """A folder no file can be made in: mode 0555, or /sys when we are root."""
    for folder in (root / "read-only", Path("/sys")):
        if folder == root / "read-only":
            folder.mkdir()
            folder.chmod(0o555)
        try:
            (folder / ".probe").touch()
        except OSError:
            return folder
        (folder / ".probe").unlink()
    pytest.skip("no unwritable folder here")


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("DRAPTO_FFMPEG", "DRAPTO_STATE_DIR")}


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*DRAPTO, *argv],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def forked() -> Callable[[list[str], Path], subprocess.CompletedProcess[str]]:
    """`run`, in a child forked from this process (see forked.py)."""
    warm_imports()
    return lambda argv, cwd: run_forked(argv, cwd, _env())


@pytest.mark.parametrize("option", sorted(BAD))
def test_wrong_values_are_one_line(
    option: str,
    places: dict[str, str],
    tmp_path: Path,
    forked: Callable[[list[str], Path], subprocess.CompletedProcess[str]],
) -> None:
    for case in BAD[option]:
        argv = [arg.format(**places) for arg in case.argv]
        done = forked(argv, tmp_path)
        shown = f"drapto {' '.join(argv)} -> {done.returncode}: {done.stderr!r}"
        assert done.returncode == case.status, shown
        assert "Traceback" not in done.stderr, shown
        lines = done.stderr.splitlines()
        assert len(lines) == 1, shown
        assert lines[0].startswith("drapto: "), shown
        assert case.names.format(**places) in lines[0], shown
        assert case.says in lines[0], shown
        assert "https://errors.pydantic.dev" not in lines[0], shown
        assert done.stdout == "", shown
    assert list(tmp_path.iterdir()) == [], "a refused command left files behind"


def _command(option: str) -> str:
    """`drapto encode --crf` -> encode; `drapto --config` -> drapto."""
    word = option.split()[1]
    return "drapto" if word.startswith("-") or word.isupper() else word


REAL_RUNS: dict[str, tuple[str, int]] = {
    # command: (BAD key, index) of a case that gets past argparse where one does
    "drapto": ("drapto --config", 1),  # the config file read
    "drapto --batch": ("drapto --batch", 1),
    "probe": ("drapto probe FILE", 1),  # exit 1 from the probe itself
    "encode": ("drapto encode --output", 2),  # after logging to a run log is set up
    "flags": ("drapto flags set NAME", 0),
    "config": ("drapto config --json", 0),
    "serve": ("drapto serve --workers", 0),
    "status": ("drapto status --socket", 1),  # exit 1 from the connection
    "cluster": ("drapto cluster init --bundle", 0),  # after the CA is made
    "worker": ("drapto worker --path-map", 0),  # after Dask is imported
    "tui": ("drapto tui PATH", 0),
    "stats": ("drapto stats --state-dir", 0),
    "restore": ("drapto restore PATH", 1),
    "watch": ("drapto watch remove DIR", 1),  # exit 1 from the connection
    "schedule": ("drapto schedule --json", 0),
}
"""The cases that also run as `python -m drapto_engine.cli`: at least one per command."""


def test_every_command_has_a_real_run() -> None:
    assert {_command(option) for option in BAD} <= {k.split()[0] for k in REAL_RUNS}


@pytest.mark.parametrize("command", sorted(REAL_RUNS))
def test_a_forked_child_answers_as_the_real_command_does(
    command: str,
    places: dict[str, str],
    tmp_path: Path,
    forked: Callable[[list[str], Path], subprocess.CompletedProcess[str]],
) -> None:
    """The wrong values above run in forked children; the real `python -m drapto_engine.cli`
    (its own start-up and imports) gives the same status and the same line."""
    option, index = REAL_RUNS[command]
    argv = [arg.format(**places) for arg in BAD[option][index].argv]
    real = run(argv, tmp_path)
    child = forked(argv, tmp_path)
    assert (child.returncode, child.stdout, child.stderr) == (
        real.returncode,
        real.stdout,
        real.stderr,
    )
    assert real.returncode in (USAGE, FAILED) and "Traceback" not in real.stderr, real.stderr
    assert list(tmp_path.iterdir()) == [], "a refused command left files behind"


def test_debug_adds_the_traceback(places: dict[str, str], tmp_path: Path) -> None:
    for argv in (["encode", places["missing"]], ["encode", places["input"], "--preset", "14"]):
        quiet = run(argv, tmp_path)
        loud = run(["--debug", *argv], tmp_path)
        assert loud.returncode == quiet.returncode != 0
        assert "Traceback (most recent call last)" in loud.stderr
        assert loud.stderr.splitlines()[-1] == quiet.stderr.strip()


def test_the_refused_preset_is_the_one_ffmpeg_refuses(ffmpeg: str, tmp_path: Path) -> None:
    """The range drapto documents is the bundled SVT-AV1's: -2 and 13 encode, -3 and 14
    are refused."""

    def encode(preset: int) -> int:
        source = ["-f", "lavfi", "-i", "testsrc2=size=64x64:duration=0.2"]
        svt = ["-c:v", "libsvtav1", "-preset", str(preset), "-crf", "50"]
        return subprocess.run(
            [ffmpeg, "-v", "error", *source, *svt, "-f", "null", "-"],
            capture_output=True,
            check=False,
        ).returncode

    assert (encode(13), encode(-2)) == (0, 0)
    assert encode(14) != 0 and encode(-3) != 0


# --- signals: 128 + N, one line ------------------------------------------------------------


@pytest.mark.parametrize(("signum", "says"), [(signal.SIGTERM, "SIGTERM"), (signal.SIGINT, "")])
def test_a_signal_ends_a_command_with_128_plus_n(
    tmp_path: Path, signum: signal.Signals, says: str
) -> None:
    """`drapto status` against an engine that accepts and never answers: it waits (up to
    its 5 s hello timeout) and a signal in that wait ends it at once, in one line."""
    path = tmp_path / "silent.sock"
    accepted = threading.Event()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))
        server.listen(1)

        def accept() -> None:
            connection, _ = server.accept()
            accepted.set()
            while connection.recv(
                1 << 16
            ):  # read the hello and never answer, until the client goes
                pass
            connection.close()

        threading.Thread(target=accept, daemon=True).start()
        env = {k: v for k, v in os.environ.items() if k != "DRAPTO_FFMPEG"}
        proc = subprocess.Popen(
            [*DRAPTO, "status", "--socket", str(path)],
            env=env,
            stderr=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert accepted.wait(30), "drapto status never connected"
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signum, err
    [line] = err.splitlines()
    assert line == ("drapto: stopped by SIGTERM" if says else "drapto: interrupted")
    assert out == ""


# --- the boundary's translation of what Python itself raises ---------------------------------


def _raised(action: Callable[[], object]) -> BaseException:
    try:
        action()
    except BaseException as exc:  # the point is to catch whatever it raises
        return exc
    raise AssertionError("nothing was raised")


def test_python_errors_become_one_line_without_a_repr(tmp_path: Path) -> None:
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    deep = "a = " + "[" * 5000 + "]" * 5000
    cases: list[tuple[BaseException, int, str]] = [
        (_raised(lambda: loop.resolve()), 1, f"{loop}: symbolic link loop"),
        (_raised(lambda: tomllib.loads(deep)), 1, "is nested too deeply to read"),
        (
            _raised(lambda: os.rename(tmp_path / "a", tmp_path / "b")),
            1,
            f"{tmp_path / 'a'} -> {tmp_path / 'b'}: No such file or directory",
        ),
        (_raised(lambda: (tmp_path / "x" / "y").write_text("")), 1, "No such file or directory"),
        (
            _raised(lambda: JobOptions.model_validate({"crf": 99})),
            2,
            "invalid JobOptions: crf: Input should be less than or equal to 63",
        ),
        (_raised(lambda: 1 / 0), 1, "internal error: ZeroDivisionError: division by zero"),
    ]
    for exc, status, text in cases:
        code, line = explain(exc)
        assert code == status, (exc, line)
        assert text in line and "\n" not in line, (exc, line)
        assert "errors.pydantic.dev" not in line and "Error(" not in line, line
