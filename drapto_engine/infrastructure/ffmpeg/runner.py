"""Running ffmpeg as an asyncio child: progress out, clean stop in, errors kept."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from drapto_engine.core.errors import EncodeError
from drapto_engine.infrastructure.ffmpeg.progress import Progress, ProgressParser

log = logging.getLogger(__name__)

STDERR_TAIL = 30
# SVT-AV1 prints its banner and warnings straight to stderr; keep only its errors so
# that ffmpeg's own last line is what a failure quotes.
CHILD_ENV = {"SVT_LOG": "1"}
_PR_SET_PDEATHSIG = 1

OnProgress = Callable[[Progress], None]
OnStart = Callable[[asyncio.subprocess.Process], None]


def _find_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


# Looked up once, here in drapto: between fork and exec a child only calls it (loading
# libc there could wait forever on a loader lock another thread held at the fork).
_PRCTL = _find_prctl()


def die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Linux: the kernel sends SIGKILL to this child when drapto dies, even by SIGKILL."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass(frozen=True)
class RunResult:
    returncode: int
    stderr_tail: str


async def _read_progress(stream: asyncio.StreamReader, on_progress: OnProgress | None) -> None:
    parser = ProgressParser()
    while line := await stream.readline():
        progress = parser.feed(line.decode(errors="replace"))
        if progress is not None and on_progress is not None:
            on_progress(progress)


async def _read_stderr(stream: asyncio.StreamReader, tail: deque[str]) -> None:
    while line := await stream.readline():
        text = line.decode(errors="replace").rstrip()
        if text:
            tail.append(text)


async def stop_process(proc: asyncio.subprocess.Process) -> None:
    """Stop an ffmpeg whose run was interrupted, at once.

    Its output is thrown away (a partial file, removed by the caller), so letting it
    finish ('q', then SIGTERM) only makes Ctrl-C slower: an encoder asked to finish
    first flushes every frame it has buffered. SIGKILL reaches its whole process group,
    a suspended (SIGSTOPped) encoder included."""
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    await proc.wait()


async def run_ffmpeg(
    argv: Sequence[str],
    *,
    on_progress: OnProgress | None = None,
    on_start: OnStart | None = None,
    cwd: Path | None = None,
) -> RunResult:
    """Run one ffmpeg command to the end; cancelling the task stops ffmpeg cleanly."""
    log.debug("run: %s", list(argv))
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=cwd,
        env={**os.environ, **CHILD_ENV},
        preexec_fn=die_with_parent,
        process_group=0,  # the terminal's Ctrl-C reaches drapto, which stops ffmpeg in order
    )
    if on_start is not None:
        on_start(proc)
    tail: deque[str] = deque(maxlen=STDERR_TAIL)
    assert proc.stdout is not None and proc.stderr is not None
    readers = asyncio.gather(
        _read_progress(proc.stdout, on_progress), _read_stderr(proc.stderr, tail)
    )
    try:
        await readers
        returncode = await proc.wait()
    except BaseException:
        await stop_process(proc)
        readers.cancel()
        with contextlib.suppress(BaseException):
            await readers
        raise
    return RunResult(returncode=returncode, stderr_tail="\n".join(tail))


async def run_checked(
    argv: Sequence[str],
    what: str,
    path: Path,
    *,
    on_progress: OnProgress | None = None,
    on_start: OnStart | None = None,
) -> RunResult:
    """run_ffmpeg, raising an EncodeError that quotes ffmpeg's last words on failure."""
    result = await run_ffmpeg(argv, on_progress=on_progress, on_start=on_start)
    if result.returncode != 0:
        last = result.stderr_tail.splitlines()[-1] if result.stderr_tail else "no message"
        raise EncodeError(f"{what} failed (ffmpeg exit {result.returncode}): {last}", path)
    return result
