"""Parsing ffmpeg's `-progress` key=value blocks (pure)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Progress:
    frame: int
    fps: float
    out_time_s: float
    speed: float | None
    ended: bool


class ProgressParser:
    """Feed it lines; it returns a Progress at the end of each block."""

    def __init__(self) -> None:
        self._fields: dict[str, str] = {}

    def feed(self, line: str) -> Progress | None:
        key, sep, value = line.strip().partition("=")
        if not sep:
            return None
        if key != "progress":
            self._fields[key] = value.strip()
            return None
        fields, self._fields = self._fields, {}
        return Progress(
            frame=_int(fields.get("frame")),
            fps=_float(fields.get("fps")) or 0.0,
            out_time_s=(_int(fields.get("out_time_us")) or 0) / 1e6,
            speed=_float(fields.get("speed", "").rstrip("x")),
            ended=value.strip() == "end",
        )


def _int(text: str | None) -> int:
    try:
        return int(text) if text else 0
    except ValueError:
        return 0


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text and text != "N/A" else None
    except ValueError:
        return None
