"""What `pip install` puts into site-packages: drapto's two packages and nothing else.

The wheel is built from a copy of the checkout without build isolation (the test extra
brings a setuptools that reads the SPDX license), so the test needs no network."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "drapto_engine", "drapto_tui", "themes")


def build_wheel(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    tree.mkdir()
    for name in SOURCES:
        source = REPO / name
        if source.is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
            shutil.copytree(source, tree / name, symlinks=True, ignore=ignore)
        else:
            shutil.copy2(source, tree / name)
    out = tmp_path / "dist"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(out), str(tree)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    [wheel] = out.glob("drapto-*.whl")
    return wheel


def test_the_wheel_ships_themes_inside_drapto_tui_and_no_development_tool(
    tmp_path: Path,
) -> None:
    wheel = build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        [top_level] = [n for n in names if n.endswith(".dist-info/top_level.txt")]
        tops = set(archive.read(top_level).decode().split())
        [metadata] = [n for n in names if n.endswith(".dist-info/METADATA")]
        headers = archive.read(metadata).decode().split("\n\n", 1)[0].splitlines()
        archive.extractall(tmp_path / "site")
    assert tops == {"drapto_engine", "drapto_tui"}
    assert {n.split("/", 1)[0] for n in names} == {"drapto_engine", "drapto_tui", *(
        n.split("/", 1)[0] for n in names if ".dist-info/" in n
    )}  # fmt: skip
    assert "drapto_tui/themes/__init__.py" in names
    assert "drapto_tui/themes/drapto.tcss" in names
    assert "drapto_tui/screenshots.py" not in names
    assert "License-Expression: MIT" in headers
    assert not any(h.startswith("License: ") for h in headers)
    # installed as the wheel lays it out: the app's themes load, `themes` is no package
    site = tmp_path / "site"
    probe = (
        "import importlib.util, sys, drapto_tui.themes as t;"
        "print(t.STYLESHEET.is_file(), t.STYLESHEET.is_relative_to(sys.argv[1]),"
        " [x.name for x in t.THEMES], importlib.util.find_spec('themes'))"
    )
    shown = subprocess.run(
        [sys.executable, "-c", probe, str(site)],
        cwd=tmp_path, env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.split() == [
        "True", "True", "['drapto-dark',", "'drapto-light',", "'drapto-contrast']", "None",
    ]  # fmt: skip
