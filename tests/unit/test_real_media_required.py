"""Under CI the real media are required: a run without them fails instead of skipping
the tests that need them. Checked on real pytest runs of this suite's own conftest."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
# Any test that takes the `shared_media` fixture.
NEEDS_MEDIA = "integration/test_segmentation.py::test_frame_times_counter_is_10_fps"


def run_suite(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_XDIST_WORKER")}
    environment |= {"DRAPTO_TEST_MEDIA": str(tmp_path / "absent"), **env}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0",
         "-rs", str(TESTS / NEEDS_MEDIA)],
        capture_output=True, text=True, env=environment, cwd=TESTS.parent, timeout=120,
    )  # fmt: skip


@pytest.mark.parametrize("ci", ["true", "1"])
def test_under_ci_missing_media_fail_the_run(tmp_path: Path, ci: str) -> None:
    done = run_suite(tmp_path, CI=ci)
    assert done.returncode != 0, done.stdout
    assert "passed" not in done.stdout and "skipped" not in done.stdout
    assert f"real test media not found at {tmp_path / 'absent'}" in done.stderr + done.stdout
    assert "CI=true needs them" in done.stderr + done.stdout


def test_outside_ci_missing_media_skip_with_the_reason(tmp_path: Path) -> None:
    done = run_suite(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 skipped" in done.stdout
    assert f"real test media not found at {tmp_path / 'absent'}" in done.stdout
