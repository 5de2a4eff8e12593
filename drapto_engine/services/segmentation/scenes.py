"""Scene cut detection on a tiny luma stream.

A child process (luma.py, PyAV's libavcodec and libswscale) decodes the video, shrinks
every frame to a small grey image and compares each with the one before (numpy, the
rules of detector.py); this side starts it and reads its findings. Two rules place a cut
at frame i:

* hard cut: the *structural* change (mean absolute difference of the two frames after
  each has its own mean removed) is large in absolute terms, at least CONTRAST times the
  median change on each side of it, and not a flash (a picture that returns, within
  FLASH_FRAMES, to the one before it). Removing each frame's mean makes brightness
  changes score low (fades, flashes, a background changing colour) while a new picture
  scores high; comparing with both sides rejects dissolves and fast motion, whose change
  is spread over many frames.
* black exit: frame i is the first to change after a held, still black picture, which
  is where a fade-in from black (or a cut out of black) begins. Fades *through* black,
  with no hold, are one transition and give no cut; so is black that a cut (or the
  start of the video) leads into, where that cut already separates the scenes.

Cuts closer than MIN_GAP frames to the previous cut (or to frame 0) are ignored: the
planner's segments are seconds long, so they could never become boundaries anyway.
Only luma is compared: a change of colour alone (a hue shift) is no cut. Every
decision needs only NEIGHBOURS frames of look-ahead, so cuts are reported while
the scan runs (see `on_cuts`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drapto_engine.core.errors import MediaError
from drapto_engine.infrastructure.ffmpeg.runner import die_with_parent
from drapto_engine.services.segmentation.detector import (
    ANALYSIS_WIDTH,
    CUT_SCORE,
    Cut,
    analysis_size,
)

log = logging.getLogger(__name__)

STDERR_LINES = 5
OnCuts = Callable[[int, list[int]], None]
"""on_cuts(settled, cuts): every cut below frame `settled` is final."""


@dataclass(frozen=True)
class SceneScan:
    frames: int
    cuts: list[Cut]


# The scan's child (see luma.py): run as a script, so that it imports PyAV and numpy alone.
DECODER = Path(__file__).with_name("luma.py")


def _argv(source: Path, width: int, height: int, threshold: float) -> list[str]:
    return [sys.executable, str(DECODER), str(source), str(width), str(height), repr(threshold)]


async def _drain(stream: asyncio.StreamReader, tail: deque[str]) -> None:
    while line := await stream.readline():
        if text := line.decode(errors="replace").strip():
            tail.append(text)


async def _stop(proc: asyncio.subprocess.Process, stderr: asyncio.Task[None]) -> None:
    """Kill the child if it still runs (its output is worthless now) and reap it."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    # Python 3.11 reports the exit only once every pipe has reached EOF: read stderr to
    # the end first.
    with contextlib.suppress(Exception):
        await stderr
    await proc.wait()


async def _findings(stdout: asyncio.StreamReader, on_cuts: OnCuts | None) -> dict[str, Any] | None:
    """Read the child's lines to its last: pass each batch's progress on, return the
    final line (None if it never came)."""
    cuts: list[int] = []
    while line := await stdout.readline():
        try:
            found = json.loads(line)
        except ValueError:  # a line cut short: the child died while writing it
            return None
        if "frames" in found:
            return dict(found)
        cuts += found["cuts"]
        if on_cuts is not None:
            on_cuts(found["settled"], list(cuts))
    return None


async def scan_cuts(
    source: Path,
    *,
    analysis_width: int = ANALYSIS_WIDTH,
    threshold: float | None = None,
    on_cuts: OnCuts | None = None,
) -> SceneScan:
    """Decode the whole video once and find its cuts, with their scores and rules (both
    in the child, luma.py)."""
    width, height = analysis_size(analysis_width)
    argv = _argv(source, width, height, CUT_SCORE if threshold is None else threshold)
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        limit=1 << 23,  # the last line holds every cut (about 40 bytes each)
        process_group=0,  # Ctrl-C reaches drapto, which cancels us, which kills it
        preexec_fn=die_with_parent,  # and a SIGKILLed drapto takes it along
    )
    assert proc.stdout is not None and proc.stderr is not None
    errors: deque[str] = deque(maxlen=STDERR_LINES)
    drain = asyncio.create_task(_drain(proc.stderr, errors))
    try:
        final = await _findings(proc.stdout, on_cuts)
        returncode = await proc.wait()
    finally:
        await _stop(proc, drain)
    if returncode != 0:
        last = errors[-1] if errors else "no message"
        raise MediaError(f"scene detection failed (decoder exit {returncode}): {last}", source)
    if final is None:
        raise MediaError("scene detection failed: its child ended without its findings", source)
    cuts = [Cut(frame, score, kind) for frame, score, kind in final["cuts"]]
    frames = int(final["frames"])
    if on_cuts is not None:
        on_cuts(frames, [cut.frame for cut in cuts])
    log.debug(
        "%s: %d frames, cuts %s",
        source.name,
        frames,
        [(c.frame, c.kind, round(c.score, 1)) for c in cuts],
    )
    return SceneScan(frames=frames, cuts=cuts)


async def detect_cuts(
    source: Path,
    *,
    analysis_width: int = ANALYSIS_WIDTH,
    threshold: float | None = None,
    on_cuts: OnCuts | None = None,
) -> list[int]:
    """Sorted frame indices (0-based, presentation order) where a new scene starts.

    `threshold` is the least structural change of a hard cut (CUT_SCORE, in luma levels,
    when None); `on_cuts(settled, cuts)` reports progress after every batch of frames.
    Cancelling the coroutine kills the decoder; a failed decode raises MediaError.
    """
    scan = await scan_cuts(
        source, analysis_width=analysis_width, threshold=threshold, on_cuts=on_cuts
    )
    return [cut.frame for cut in scan.cuts]
