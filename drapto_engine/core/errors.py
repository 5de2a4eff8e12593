"""Errors meant for people: what failed, on which file, what to do.

Each kind carries the exit status `drapto` ends with when it reaches the command line's
one error boundary (drapto_engine/cli/main.py): 1 for a bad input or a failed job,
2 for a usage error (a bad option value, queue file or config file).
"""

from __future__ import annotations

from pathlib import Path

EXIT_FAILED = 1
"""An input could not be used or a job failed."""
EXIT_USAGE = 2
"""A bad option value, queue file or config file: nothing was started."""
EXIT_ENGINE_LOST = 3
"""The connection to the engine service was lost (batch and encode clients)."""


class DraptoError(Exception):
    """An expected failure with a one-line message for the user."""

    exit_status = EXIT_FAILED

    def __init__(self, message: str, path: Path | str | None = None, hint: str | None = None):
        self.path = Path(path) if path is not None else None
        self.problem = message
        self.hint = hint
        super().__init__(self.one_line())

    def one_line(self) -> str:
        text = f"{self.path}: {self.problem}" if self.path is not None else self.problem
        text = f"{text} ({self.hint})" if self.hint else text
        # One line, whatever a message (an ffmpeg's stderr) or a file name held.
        return " ".join(part.strip() for part in text.splitlines() if part.strip())


class UsageError(DraptoError):
    """A bad option value or settings file: the command did nothing (exit status 2).

    `path` names the option (`--preset`) or the file (`queue.toml`) at fault."""

    exit_status = EXIT_USAGE


class EngineLost(DraptoError):
    """The connection to the engine service broke while a client followed its jobs (exit 3)."""

    exit_status = EXIT_ENGINE_LOST


class UntrustedSocket(DraptoError):
    """An engine socket another user could have planted or listens on: refused before
    a byte is sent to it, or before an engine is started into its folder."""

    def __init__(self, socket_path: Path, problem: str, hint: str) -> None:
        self.socket_path = socket_path
        super().__init__(f"refusing the engine socket {socket_path}: {problem}", hint=hint)


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


class SourceChanged(MediaError):
    """The source is not the file that was analysed: another file took its name, or it
    was rewritten. Nothing of the job is put in place, and no flag is to blame."""

    def __init__(self, path: Path | str, what: str):
        self.what = what
        super().__init__(
            f"the source changed during the encode ({what}); nothing was written", path
        )


class DiskFull(DraptoError):
    """A step ran out of disk space (ENOSPC). The job's finished work is kept for a rerun,
    and no flag is to blame."""
