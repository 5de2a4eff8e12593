"""Feature flags: named strategy switches, each mapped onto one encode setting."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from drapto_engine.core.errors import DraptoError
from drapto_engine.core.models import EncodeSettings


class Scope(StrEnum):
    NEXT_SEGMENT = "next_segment"
    NEXT_JOB = "next_job"


class Flag(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    description: str
    default: bool
    scope: Scope
    setting: str
    """The EncodeSettings field the flag drives."""


FLAGS: tuple[Flag, ...] = (
    Flag(
        name="scene_segmentation",
        description="cut segments at scene changes (off: fixed-length segments)",
        default=True,
        scope=Scope.NEXT_JOB,
        setting="scene_detection",
    ),
    Flag(
        name="segmented_encoding",
        description="encode in parallel segments (off: one whole-file encode)",
        default=True,
        scope=Scope.NEXT_JOB,
        setting="segmented",
    ),
    Flag(
        name="segmented_dolby_vision",
        description="encode Dolby Vision in parallel segments (off: one whole-file run)",
        default=True,
        scope=Scope.NEXT_JOB,
        setting="segmented_dolby_vision",
    ),
    Flag(
        name="crop_detection",
        description="detect and crop black bars (off: never crop)",
        default=True,
        scope=Scope.NEXT_JOB,
        setting="crop",
    ),
    Flag(
        name="dolby_vision_crop",
        description="crop Dolby Vision sources too (their RPU keeps describing the full frame)",
        default=False,
        scope=Scope.NEXT_JOB,
        setting="dolby_vision_crop",
    ),
)
BY_NAME = {flag.name: flag for flag in FLAGS}
ON, OFF = frozenset({"on", "true", "1", "yes"}), frozenset({"off", "false", "0", "no"})


def parse_override(text: str) -> tuple[str, bool]:
    """`NAME=on|off` as given to --flag."""
    name, sep, value = text.partition("=")
    name, value = name.strip(), value.strip().lower()
    if not sep or name not in BY_NAME:
        known = ", ".join(BY_NAME)
        raise DraptoError(
            f"unknown flag {text!r}", hint=f"use NAME=on|off with NAME one of {known}"
        )
    if value not in ON | OFF:
        raise DraptoError(f"flag {name} takes on or off, not {value!r}")
    return name, value in ON


def apply_flags(settings: EncodeSettings, states: dict[str, bool]) -> EncodeSettings:
    """Settings with each flag's state written into the field it drives."""
    return settings.model_copy(update={BY_NAME[name].setting: on for name, on in states.items()})
