"""Hard-cut detection on a small RGB stream: a content detector in HSV.

ffmpeg decodes and shrinks the video; numpy scores each frame against the one before
by the mean change of hue, saturation and value. A cut must be strong in absolute
terms and stand well above its neighbourhood, which rejects fades and dissolves
(whose change is spread over many frames) and fast motion (which keeps the
neighbourhood busy too).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from drapto_engine.core.errors import MediaError
from drapto_engine.infrastructure.ffmpeg.runner import stop_process

log = logging.getLogger(__name__)

WIDTH, HEIGHT = 128, 72
THRESHOLD = 27.0  # mean HSV change on a 0-255 scale
NEIGHBOURHOOD = 10  # frames each side
CONTRAST = 3.0  # a cut scores this many times its neighbourhood's median, plus MARGIN
MARGIN = 5.0
MIN_GAP = 8  # frames between two cuts
CHUNK = 32  # frames scored together

Floats = npt.NDArray[np.float32]
OnCuts = Callable[[int, list[int]], None]


def hsv(frames: npt.NDArray[np.uint8]) -> Floats:
    """RGB frames (n, h, w, 3) to HSV on 0-255, hue as a fraction of the circle."""
    rgb = frames.astype(np.float32) / 255.0
    top = rgb.max(axis=-1)
    spread = top - rgb.min(axis=-1)
    safe = np.maximum(spread, 1e-6)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    hue = np.where(
        top == r, ((g - b) / safe) % 6, np.where(top == g, (b - r) / safe + 2, (r - g) / safe + 4)
    )
    hue = np.where(spread > 0, hue / 6.0, 0.0)
    sat = np.where(top > 0, spread / np.maximum(top, 1e-6), 0.0)
    return np.stack([hue, sat, top], axis=-1).astype(np.float32) * 255.0


def change_scores(previous: Floats | None, current: Floats) -> Floats:
    """Score of each frame in `current` against the frame before it (hue wraps around)."""
    frames = current if previous is None else np.concatenate([previous[None], current])
    delta = np.abs(np.diff(frames, axis=0))
    delta[..., 0] = np.minimum(delta[..., 0], 255.0 - delta[..., 0])
    scores = delta.mean(axis=(1, 2, 3))
    return scores if previous is not None else np.concatenate([[0.0], scores]).astype(np.float32)


class CutDecider:
    """Turns a stream of scores into cuts, each confirmed NEIGHBOURHOOD frames later."""

    def __init__(self) -> None:
        self.scores: list[float] = []
        self.cuts: list[int] = []
        self.decided = 1  # frames before this index are settled (frame 0 never cuts)

    def feed(self, scores: Floats) -> None:
        self.scores.extend(float(s) for s in scores)
        self._decide(final=False)

    def finish(self) -> None:
        self._decide(final=True)

    def _decide(self, final: bool) -> None:
        limit = len(self.scores) if final else len(self.scores) - NEIGHBOURHOOD
        for i in range(self.decided, max(self.decided, limit)):
            if self._is_cut(i):
                self.cuts.append(i)
        self.decided = max(self.decided, limit)

    def _is_cut(self, i: int) -> bool:
        score = self.scores[i]
        if score < THRESHOLD or (self.cuts and i - self.cuts[-1] < MIN_GAP):
            return False
        lo, hi = max(1, i - NEIGHBOURHOOD), min(len(self.scores), i + NEIGHBOURHOOD + 1)
        around = self.scores[lo:i] + self.scores[i + 1 : hi]
        baseline = float(np.median(around)) if around else 0.0
        return score >= CONTRAST * baseline + MARGIN


@dataclass(frozen=True)
class ScanResult:
    frames: int
    cuts: list[int]
    scores: list[float]


def _argv(ffmpeg: str, source: Path) -> list[str]:
    return [
        ffmpeg,
        "-hide_banner",
        "-loglevel",
        "error",
        "-nostdin",
        "-i",
        str(source),
        "-map",
        "0:v:0",
        "-an",
        "-sn",
        "-dn",
        "-fps_mode",
        "passthrough",
        "-vf",
        f"scale={WIDTH}:{HEIGHT}:flags=area,format=rgb24",
        "-f",
        "rawvideo",
        "pipe:1",
    ]


async def detect_cuts(ffmpeg: str, source: Path, on_cuts: OnCuts | None = None) -> ScanResult:
    """Scan the whole video; `on_cuts(frames_settled, cuts)` reports progress as it goes."""
    proc = await asyncio.create_subprocess_exec(
        *_argv(ffmpeg, source),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    frame_bytes = WIDTH * HEIGHT * 3
    decider = CutDecider()
    previous: Floats | None = None
    errors: deque[bytes] = deque(maxlen=5)

    async def drain_stderr() -> None:
        assert proc.stderr is not None
        while line := await proc.stderr.readline():
            errors.append(line)

    stderr_task = asyncio.create_task(drain_stderr())
    try:
        while True:
            try:
                data = await proc.stdout.readexactly(frame_bytes * CHUNK)
            except asyncio.IncompleteReadError as partial:
                data = partial.partial[: len(partial.partial) - len(partial.partial) % frame_bytes]
            if not data:
                break
            frames = np.frombuffer(data, np.uint8).reshape(-1, HEIGHT, WIDTH, 3)
            current = hsv(frames)
            decider.feed(await asyncio.to_thread(change_scores, previous, current))
            previous = current[-1]
            if on_cuts is not None:
                on_cuts(decider.decided, list(decider.cuts))
        returncode = await proc.wait()
        await stderr_task
    finally:
        if proc.returncode is None:
            await stop_process(proc)
        if not stderr_task.done():
            stderr_task.cancel()
            with contextlib.suppress(BaseException):
                await stderr_task
    if returncode != 0:
        last = errors[-1].decode(errors="replace").strip() if errors else f"exit {returncode}"
        raise MediaError(f"scene detection could not decode the video: {last}", source)
    decider.finish()
    if on_cuts is not None:
        on_cuts(len(decider.scores), list(decider.cuts))
    log.info("%s: cuts at %s", source.name, decider.cuts)
    return ScanResult(frames=len(decider.scores), cuts=list(decider.cuts), scores=decider.scores)
