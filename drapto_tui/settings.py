"""What the TUI remembers between sessions (the theme), beside the config file."""

from __future__ import annotations

import tomllib
from pathlib import Path

import tomli_w

from drapto_tui.client import config_file


def settings_file() -> Path:
    return config_file().with_name("tui.toml")


def load_theme(path: Path) -> str | None:
    try:
        value = tomllib.loads(path.read_text(encoding="utf-8")).get("theme")
    except (OSError, tomllib.TOMLDecodeError):
        return None
    return value if isinstance(value, str) else None


def save_theme(path: Path, theme: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(tomli_w.dumps({"theme": theme}), encoding="utf-8")
    except OSError:
        pass  # a read-only home must not break the UI
