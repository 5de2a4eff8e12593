"""Without the cluster extra, drapto works as before and the cluster commands say which
extra to install (checked in a fresh interpreter where `distributed` cannot be imported)."""

from __future__ import annotations

import subprocess
import sys

import pytest

WITHOUT_EXTRA = """
import sys
sys.modules["distributed"] = None  # import distributed -> ImportError, find_spec -> None
from drapto_engine.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_EXTRA, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    "argv", [("cluster", "init"), ("worker", "tls://127.0.0.1:8786", "--slots", "1")]
)
def test_cluster_commands_name_the_extra(argv: tuple[str, ...]) -> None:
    done = run(*argv)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "drapto: cluster commands need the cluster extra: in drapto's folder, "
        ".venv/bin/pip install -e '.[cluster]'"
    )


def test_other_commands_do_not_need_it() -> None:
    done = run("flags", "--json")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()
