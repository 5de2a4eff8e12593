"""The one line and exit status a failure of any command ends with (see cli/main.py).

Besides main(), the commands that go on after a failed file (`drapto probe`) word each
failure with explain()."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pydantic

from drapto_engine.core.errors import EXIT_FAILED, EXIT_USAGE, DraptoError


class Stopped(BaseException):
    """SIGTERM reached a command that has no handler of its own: unwind, then exit 143."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def explain(exc: BaseException, path: Path | None = None) -> tuple[int, str]:
    """The exit status and the one line (without `drapto: `) for a failure.

    `path` names the file being worked on when the exception does not."""
    if isinstance(exc, Stopped):
        return 128 + exc.signum, f"stopped by {signal.Signals(exc.signum).name}"
    if isinstance(exc, KeyboardInterrupt) and TERMINATED:
        return 128 + TERMINATED[0], f"stopped by {signal.Signals(TERMINATED[0]).name}"
    if isinstance(exc, KeyboardInterrupt):
        return 128 + signal.SIGINT, "interrupted"
    if isinstance(exc, DraptoError):
        return exc.exit_status, exc.one_line()
    if isinstance(exc, pydantic.ValidationError):
        return EXIT_USAGE, _where(path, f"invalid {exc.title}: {_problems(exc)}")
    if isinstance(exc, OSError):
        where = exc.filename if exc.filename is not None else path
        if exc.filename2 is not None:
            where = f"{where} -> {exc.filename2}"
        return EXIT_FAILED, _where(where, exc.strerror or str(exc) or type(exc).__name__)
    if isinstance(exc, RecursionError):
        return EXIT_FAILED, _where(path, "is nested too deeply to read")
    if isinstance(exc, RuntimeError) and str(exc).startswith("Symlink loop"):
        # pathlib's resolve() in Python 3.11: "Symlink loop from '/x/y'"
        found = re.search(r"from '(.*)'$", str(exc))
        return EXIT_FAILED, _where(found.group(1) if found else path, "symbolic link loop")
    return EXIT_FAILED, _where(
        path, f"internal error: {type(exc).__name__}: {exc} (drapto --debug shows where)"
    )


def _where(path: object, problem: str) -> str:
    text = f"{path}: {problem}" if path is not None else problem
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def _problems(exc: pydantic.ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'value'}: {err['msg']}" for err in exc.errors()
    )


TERMINATED: list[int] = []
"""The signal that stopped this process, once main()'s SIGTERM handler has seen it."""
