"""The layers point one way, checked by import-linter against the contracts in
pyproject.toml (`[tool.importlinter]`): every import counts, those under
`if TYPE_CHECKING:` and inside functions too."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
PACKAGES = ("drapto_engine", "drapto_tui", "themes")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports on the packages under `root`, with the contracts of its pyproject.toml."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_every_layer_keeps_its_contract() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def plant(root: Path, module: str, line: str) -> None:
    path = root / (module.replace(".", "/") + ".py")
    path.write_text(path.read_text(encoding="utf-8") + line + "\n", encoding="utf-8")


def test_the_contracts_catch_each_kind_of_wrong_import(tmp_path: Path) -> None:
    """A copy of the packages, each contract broken once (by a type-only import, a lazy
    one, a plain one), fails with the import named."""
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    plant(
        tmp_path,
        "drapto_engine.core.models",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import drapto_engine.engine",
    )
    plant(tmp_path, "drapto_engine.core.text", "import threading")
    plant(
        tmp_path,
        "drapto_engine.services.library",
        "def _monitor() -> None:\n    import drapto_engine.monitoring",
    )
    plant(tmp_path, "drapto_engine.cli.probe", "import drapto_tui.app")
    plant(tmp_path, "drapto_tui.widgets.video_tree", "import drapto_engine.services.outputs")
    plant(
        tmp_path,
        "drapto_engine.services.encoding.plan",
        "import drapto_engine.services.encoding.svt",
    )
    plant(
        tmp_path,
        "drapto_engine.services.detection.crop",
        "import drapto_engine.services.segmentation",
    )

    result = lint_imports(tmp_path)

    out = " ".join(result.stdout.split())
    assert result.returncode == 1, out
    assert "drapto_engine.core.models -> drapto_engine.engine" in out
    assert "drapto_engine.core is not allowed to import threading" in out
    assert "drapto_engine.services.library -> drapto_engine.monitoring" in out
    assert "drapto_engine.cli.probe -> drapto_tui.app" in out
    assert "drapto_tui.widgets.video_tree -> drapto_engine.services.outputs" in out
    assert "No cycles are allowed in drapto_engine.services.encoding" in out
    assert "drapto_engine.services.detection.crop -> drapto_engine.services.segmentation" in out
    assert "0 kept, 6 broken" in out
