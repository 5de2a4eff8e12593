"""Errors meant for people: what failed, on which file, what to do."""

from __future__ import annotations

from pathlib import Path


class DraptoError(Exception):
    """An expected failure with a one-line message for the user."""

    def __init__(self, message: str, path: Path | str | None = None, hint: str | None = None):
        self.path = Path(path) if path is not None else None
        self.problem = message
        self.hint = hint
        super().__init__(self.one_line())

    def one_line(self) -> str:
        text = f"{self.path}: {self.problem}" if self.path is not None else self.problem
        return f"{text} ({self.hint})" if self.hint else text


class MediaError(DraptoError):
    """The input is not a usable media file."""


class ToolchainError(DraptoError):
    """The ffmpeg binary is missing or lacks a capability."""


class EncodeError(DraptoError):
    """An encoder or muxer run failed."""


class ValidationError(DraptoError):
    """The output failed a check; nothing was put in place."""

    def __init__(self, path: Path | str, failures: list[str]):
        self.failures = failures
        super().__init__("validation failed: " + "; ".join(failures), path)
