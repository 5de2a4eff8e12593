"""The scene scan's cut rules (see scenes.py), applied to batches of tiny luma frames.

Pure and synchronous, numpy only: the scan's child process (luma.py) imports this file
on its own, without the rest of drapto.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import median
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

CUT_SCORE = 8.0  # least structural change of a hard cut, in 8-bit luma levels
CONTRAST = 2.0  # a hard cut's change over the median change on its busier side
NEIGHBOURS = 6  # frames on each side whose median change is the baseline
FLASH_FRAMES = 3  # the longest flash: a picture that returns to the one before it
FLASH_RETURN = 0.5  # "returns": differs by less than this share of the cut's change
BLACK_LEVEL = 24  # 8-bit luma at or below which a pixel is black (limited-range black is 16)
BLACK_SHARE = 0.9  # share of black pixels in a black frame (captions may stay lit)
STILL = 0.5  # mean absolute luma change of a frame that does not move
BLACK_HOLD = 8  # still black frames before the first changing one counts as a scene start
MIN_GAP = 8  # frames between two cuts
BATCH = 32  # frames read and scored together
# 128x72: every cut of the sample media and of a 10-minute 640x360 file is the same as at
# 256x144, for a quarter of the pixels to shrink, pipe and compare.
ANALYSIS_WIDTH = 128

CutKind = Literal["hard", "black_exit"]
Floats = npt.NDArray[np.float32]
Frames = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class Cut:
    frame: int
    score: float  # structural change (hard) or plain change (black exit), luma levels
    kind: CutKind


def analysis_size(width: int) -> tuple[int, int]:
    """A fixed 16:9 analysis frame: stretching other shapes changes no decision."""
    width = max(16, width)
    return width, max(8, round(width * 9 / 16))


# The brightest mean a black frame can have: BLACK_SHARE of it at BLACK_LEVEL, the rest white.
_BLACK_MEAN_MAX = BLACK_SHARE * BLACK_LEVEL + (1 - BLACK_SHARE) * 255


def _black(flat: Frames, means: npt.NDArray[np.float64]) -> list[bool]:
    """Per frame (one a row), whether it is black; only dark frames have pixels counted."""
    black = [False] * len(flat)
    for i in np.flatnonzero(means <= _BLACK_MEAN_MAX).tolist():
        black[i] = np.count_nonzero(flat[i] <= BLACK_LEVEL) >= BLACK_SHARE * flat.shape[1]
    return black


def _per_frame(diffs: list[float], held: int) -> list[float]:
    """Per new frame, its change from the frame before: `diffs` compare consecutive
    frames of a batch preceded by `held` (0 or 1) frames of the previous one, and the
    video's very first frame has nothing before it."""
    return ([0.0] if held == 0 else []) + diffs


class CutDetector:
    """Turns decoded frames, batch by batch, into cuts; pure and synchronous."""

    def __init__(self, threshold: float = CUT_SCORE) -> None:
        self.threshold = threshold
        self.means: list[float] = []
        self.change: list[float] = []  # mean absolute luma change from the previous frame
        self.structure: list[float] = []  # the same after removing each frame's mean
        self.black_run: list[int] = []  # still black frames ending here
        self.dark_run: list[int] = []  # black frames, still or not, ending here
        self.cuts: list[Cut] = []
        self.settled = 1  # frames below this are decided (frame 0 never cuts)
        self._recent: dict[int, Frames] = {}  # frames a pending decision may still compare
        self._arrays: dict[str, npt.NDArray[Any]] = {}  # work arrays, see _scratch

    @property
    def frames(self) -> int:
        return len(self.change)

    @property
    def cut_frames(self) -> list[int]:
        return [cut.frame for cut in self.cuts]

    def feed(self, frames: Frames) -> None:
        """Score a batch of (n, height, width) luma frames, then decide what is certain.

        The caller may reuse `frames` afterwards: the detector copies the few it keeps."""
        if len(frames):
            first = self.frames
            self._score(frames)
            self._decide(self.frames - max(NEIGHBOURS, FLASH_FRAMES) - 1)
            for i in range(max(first, min(self._recent)), self.frames):
                self._recent[i] = self._recent[i].copy()

    def finish(self) -> None:
        self._decide(self.frames)

    def _score(self, frames: Frames) -> None:
        first = self.frames
        held = min(1, first)  # the previous batch's last frame, to compare with
        count, height, width = frames.shape
        pixels = height * width
        flat = frames.reshape(count, pixels)
        y = self._scratch("y", held + count, pixels, np.int16)
        if held:
            y[0] = self._recent[first - 1].reshape(pixels)
        y[held:] = flat
        sums = y.sum(axis=1, dtype=np.int32)
        means = sums[held:] / pixels
        self.means += means.astype(np.float32).tolist()
        # Everything in integers: d is each pixel's change, s its frame's mean change
        # (dsum / pixels). The change is mean |d|; the structural change is mean |d - s|
        # (each frame's own mean removed). With k = floor(s) and f = s - k, a pixel
        # with d - k > 0 contributes |d - k| - f and any other |d - k| + f, so
        # sum |d - s| = sum |d - k| + f * (pixels - 2 * count(d - k > 0)), exactly.
        d = np.subtract(y[1:], y[:-1], out=self._scratch("d", len(y) - 1, pixels, np.int16))
        dsum = sums[1:] - sums[:-1]
        magnitude = np.abs(d, out=self._scratch("abs", len(d), pixels, np.int16))
        change = magnitude.sum(axis=1, dtype=np.int32) / pixels
        k = np.floor_divide(dsum, pixels)
        f = dsum / pixels - k
        d -= k.astype(np.int16)[:, None]
        positive = np.greater(d, 0, out=self._scratch("positive", len(d), pixels, np.bool_))
        above = np.count_nonzero(positive, axis=1)
        np.abs(d, out=d)
        structure = (d.sum(axis=1, dtype=np.int32) + f * (pixels - 2 * above)) / pixels
        self.change += _per_frame(change.tolist(), held)
        self.structure += _per_frame(structure.tolist(), held)
        for i, is_black in enumerate(_black(flat, means), start=first):
            still = i == 0 or self.change[i] <= STILL
            held_black = self.black_run[-1] if i else 0
            held_dark = self.dark_run[-1] if i else 0
            self.black_run.append(held_black + 1 if is_black and still else 0)
            self.dark_run.append(held_dark + 1 if is_black else 0)
        self._recent.update(zip(range(first, self.frames), frames, strict=True))

    def _scratch(
        self, name: str, rows: int, pixels: int, dtype: type[np.generic]
    ) -> npt.NDArray[Any]:
        """A work array of a batch, kept for the next: a new one for every batch cost a
        page fault per 4 KiB (some 80,000 on a 10-minute file, a sixth of the scoring)."""
        array = self._arrays.get(name)
        if array is None or len(array) < rows or array.shape[1] != pixels:
            array = self._arrays[name] = np.empty((max(rows, BATCH + 1), pixels), dtype)
        return array[:rows]

    def _decide(self, limit: int) -> None:
        for i in range(self.settled, max(self.settled, limit)):
            last = self.cuts[-1].frame if self.cuts else 0
            if i - last < MIN_GAP:
                continue
            cut = self._black_exit(i, last) or self._hard_cut(i)
            if cut is not None:
                self.cuts.append(cut)
        self.settled = max(self.settled, limit)
        oldest = min(self.settled - FLASH_FRAMES - 1, self.frames - 1)
        for index in [k for k in self._recent if k < oldest]:
            del self._recent[index]

    def _black_exit(self, i: int, last_cut: int) -> Cut | None:
        if self.black_run[i - 1] < BLACK_HOLD or self.black_run[i] > 0:
            return None
        # A black interval separates two scenes once. When a cut (or the start of the
        # video) leads into it, the black already opens the new scene.
        entry = i - self.dark_run[i - 1]
        if last_cut >= entry - MIN_GAP:
            return None
        return Cut(i, self.change[i], "black_exit")

    def _hard_cut(self, i: int) -> Cut | None:
        score = self.structure[i]
        if score < self.threshold:
            return None
        sides = (
            self.structure[max(1, i - NEIGHBOURS) : i],
            self.structure[i + 1 : i + 1 + NEIGHBOURS],
        )
        baseline = max((median(side) for side in sides if side), default=0.0)
        if score < CONTRAST * baseline or self._is_flash(i, score):
            return None
        return Cut(i, score, "hard")

    def _distance(self, a: int, b: int) -> float:
        """Structural change between two recent frames."""
        za = self._recent[a].astype(np.float32) - self.means[a]
        zb = self._recent[b].astype(np.float32) - self.means[b]
        return float(np.abs(za - zb).mean(dtype=np.float32))

    def _is_flash(self, i: int, score: float) -> bool:
        """Whether the picture at i is a flash: a few frames that then return to the
        picture before them, either starting at i or ending just before it."""
        similar = FLASH_RETURN * score
        for k in range(1, FLASH_FRAMES + 1):
            if i + k < self.frames and self._distance(i + k, i - 1) < similar:
                return True
            if i - k - 1 >= 0 and self._distance(i, i - k - 1) < similar:
                return True
        return False
