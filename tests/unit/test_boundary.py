"""The engine never loads the UI stack: importing every engine module leaves textual and
rich out of sys.modules (checked in a fresh interpreter, as Harlequin does)."""

from __future__ import annotations

import json
import subprocess
import sys

CHECK = """
import importlib, json, pkgutil, sys
import drapto_engine
names = [m.name for m in pkgutil.walk_packages(drapto_engine.__path__, "drapto_engine.")]
for name in names:
    importlib.import_module(name)
ui = sorted(m for m in sys.modules if m.split(".")[0] in ("textual", "rich"))
print(json.dumps({"modules": names, "ui": ui}))
"""


def test_engine_imports_no_ui_library() -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["ui"] == []
    # The walk really reached the engine's parts, not just the top package.
    for expected in (
        "drapto_engine.cli",
        "drapto_engine.infrastructure.probe",
        "drapto_engine.infrastructure.ffmpeg.toolchain",
        "drapto_engine.services.detection.crop",
        "drapto_engine.core.models",
    ):
        assert expected in result["modules"]


def test_the_check_would_see_textual() -> None:
    """The same probe reports textual once something imports it (it is installed)."""
    code = "import sys, textual; print(any(m.split('.')[0] == 'textual' for m in sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.stdout.strip() == "True", done.stderr
