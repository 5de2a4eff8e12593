"""The CRF search: which CRF to try next, from the (CRF, VMAF) points measured so far.

VMAF falls as CRF rises. Between the two points that bracket the target the CRF is
interpolated linearly; with every point on one side it is extrapolated from the two
nearest the target (a fixed step when one point is all there is, the range's bound
when two points show a flat line); the result is rounded to a whole CRF (SVT-AV1 in
ffmpeg takes integers) and clamped to the range.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

BAND = 1.0
"""The band around the target a segment's mean VMAF must land in."""
STEP = 8
"""How far the second probe goes from the first when the slope is unknown."""
MIN_SLOPE = 0.05
"""VMAF per CRF step below which a slope is taken as flat (and STEP used)."""
MAX_LEARNED_MOVE = 4
"""How far the job's learned offset may move a first final from the probes' own
estimate: the offset grows with the CRF (bench/README.md, 1080p), so one learned at
another segment's CRF is a hint, not a measurement."""

BEYOND_PROBES = 2
"""How far beyond the probed CRFs the learned offset may take a first final. The offset
is the job's median and differs by content (on the 360p benchmark file +1.1, +0.3 and
-1.4 for its three contents); beyond the probes the line is extrapolated where the
curve steepens, and a correction read from it there overshot (a final at CRF 55 moved 4
beyond probes at 43 and 51 scored 89.6, its correction at 43 94.5)."""

Point = tuple[int, float]


@dataclass(frozen=True)
class Target:
    vmaf: float
    low: int
    high: int
    band: float = BAND
    offset: float = 0.0
    """What this job's finals have scored above the probes' line at their CRF (the
    median over its finished segments, `learned_offset`): the first final's CRF is
    chosen from the probes shifted by it."""
    hint: int | None = None
    """The CRF this job's finished segments were kept at (their median, `learned_start`):
    the first probe goes there instead of the middle of the range, so the probes lie
    around the target more often and the line is read between them, not beyond."""

    def within(self, score: float) -> bool:
        return abs(score - self.vmaf) <= self.band + 1e-9

    def clamp(self, crf: float) -> int:
        return max(self.low, min(self.high, round(crf)))

    @property
    def start(self) -> int:
        """The first probe: the job's hint, else the middle of the range."""
        if self.hint is not None:
            return self.clamp(self.hint)
        return (self.low + self.high) // 2


def estimate(points: Sequence[Point], target: Target) -> int:
    """The CRF expected to score `target.vmaf`, from measured (CRF, score) points."""
    if not points:
        return target.start
    goal = target.vmaf
    above = [p for p in points if p[1] >= goal]
    below = [p for p in points if p[1] < goal]
    if above and below:
        a = max(above, key=lambda p: p[0])  # the highest CRF still good enough
        b = min(below, key=lambda p: p[0])  # the lowest CRF that falls short
        if a[0] < b[0]:
            return target.clamp(a[0] + (a[1] - goal) * (b[0] - a[0]) / (a[1] - b[1]))
        return target.clamp(a[0])  # not monotone (noise): keep the good one
    near = sorted(points, key=lambda p: abs(p[1] - goal))[:2]
    direction = 1 if above else -1  # all good enough: raise the CRF; else lower it
    if len(near) == 2 and near[0][0] != near[1][0]:
        slope = (near[1][1] - near[0][1]) / (near[1][0] - near[0][0])
        if slope < -MIN_SLOPE:
            crf = near[0][0] + (goal - near[0][1]) / slope
            if (crf - near[0][0]) * direction > 0:
                return target.clamp(crf)
        elif abs(slope) <= MIN_SLOPE:  # the score does not move with the CRF (a still
            return target.high if above else target.low  # picture): the bound it goes to
    return target.clamp(near[0][0] + direction * STEP)


def brackets(points: Sequence[Point], target: Target) -> bool:
    """Whether the points lie on both sides of the target."""
    return any(s >= target.vmaf for _, s in points) and any(s < target.vmaf for _, s in points)


def score_at(points: Sequence[Point], crf: int) -> float | None:
    """The score the points' line predicts at `crf` (from the two CRFs nearest it)."""
    by_crf = {c: s for c, s in points}
    if crf in by_crf:
        return by_crf[crf]
    near = sorted(by_crf, key=lambda c: abs(c - crf))[:2]
    if len(near) < 2:
        return None
    (c0, c1) = near
    return by_crf[c0] + (by_crf[c1] - by_crf[c0]) * (crf - c0) / (c1 - c0)


def first_final(points: Sequence[Point], target: Target) -> int:
    """The first final's CRF: the probes' estimate with the job's learned offset added
    to their scores (the final's preset and frames score differently from a probe's),
    at most MAX_LEARNED_MOVE CRFs from the probes' own estimate and at most
    BEYOND_PROBES CRFs beyond the probes themselves."""
    own = estimate(points, target)
    shifted = estimate([(c, s + target.offset) for c, s in points], target)
    low, high = own - MAX_LEARNED_MOVE, own + MAX_LEARNED_MOVE
    if points:
        low = max(low, min(min(c for c, _ in points) - BEYOND_PROBES, own))
        high = min(high, max(max(c for c, _ in points) + BEYOND_PROBES, own))
    return max(low, min(high, shifted))


def residual(probes: Sequence[Point], crf: int, final: float) -> float | None:
    """How far a final's measured score lies from the probes' line at its CRF (None
    without a line)."""
    expected = score_at(probes, crf)
    return None if expected is None else final - expected


def learned_start(crfs: Sequence[int]) -> int | None:
    """The next segment's first probe: the median CRF of the finished segments' kept
    finals (None before the first)."""
    return round(statistics.median(crfs)) if crfs else None


def learned_offset(residuals: Sequence[float]) -> float:
    """The offset for the next segment's first final: the median of the finished
    segments' residuals (one odd segment does not move it); none yet: 0."""
    return statistics.median(residuals) if residuals else 0.0
