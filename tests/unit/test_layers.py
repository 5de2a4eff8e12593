"""The layers point one way: the core imports nothing above it.

Every import of every core module counts, those under `if TYPE_CHECKING:` and inside
functions too: a type-only import still ties the core to what it names."""

from __future__ import annotations

import ast
from pathlib import Path

import drapto_engine

PACKAGE = Path(drapto_engine.__file__).parent
ABOVE_CORE = (
    "infrastructure",
    "services",
    "engine",
    "server",
    "cli",
    "cluster",
    "monitoring",
    "config",
    "logging_setup",
)


def imported_modules(source: str, module: str) -> set[str]:
    """Every module a source file imports (relative imports resolved against `module`)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = module.split(".")[: -node.level]
                base = ".".join([*parent, base] if base else parent)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def upward(names: set[str]) -> list[str]:
    return sorted(
        name
        for name in names
        if any(
            name == f"drapto_engine.{top}" or name.startswith(f"drapto_engine.{top}.")
            for top in ABOVE_CORE
        )
    )


def test_the_core_imports_nothing_above_it() -> None:
    offences = {}
    for path in sorted((PACKAGE / "core").rglob("*.py")):
        module = "drapto_engine." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        found = upward(imported_modules(path.read_text(encoding="utf-8"), module))
        if found:
            offences[path.name] = found
    assert offences == {}


def test_the_check_sees_type_checking_and_relative_imports() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from drapto_engine.services.encoding.plan import VideoPlan\n"
        "from ..engine import Engine\n"
        "def f() -> None:\n"
        "    import drapto_engine.server.client\n"
        "from .models import Segment\n"
    )
    found = upward(imported_modules(source, "drapto_engine.core.x"))
    assert found == [
        "drapto_engine.engine",
        "drapto_engine.engine.Engine",
        "drapto_engine.server.client",
        "drapto_engine.services.encoding.plan",
        "drapto_engine.services.encoding.plan.VideoPlan",
    ]
