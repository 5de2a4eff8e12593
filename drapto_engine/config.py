"""The config file (`~/.config/drapto/config.toml`): one pydantic model validates it."""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from drapto_engine.core.errors import DraptoError
from drapto_engine.infrastructure.paths import config_file


class Config(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    ffmpeg_path: str | None = None
    """An ffmpeg binary to use instead of the bundled one (DRAPTO_FFMPEG still wins)."""


def load_config(path: Path | None = None) -> Config:
    """The config file's settings; a missing file means the defaults."""
    path = path or config_file()
    if not path.is_file():
        return Config()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        return Config.model_validate(data)
    except tomllib.TOMLDecodeError as exc:
        raise DraptoError(f"invalid TOML: {exc}", path) from exc
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise DraptoError(f"invalid config: {problems}", path) from exc
