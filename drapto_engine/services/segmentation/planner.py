"""Segment planning from scene cuts and frame times (pure functions).

Rules, in order:

1. A cut becomes a segment boundary when it lies at least `min_s` after the previous
   boundary (the start of the scene it would end) and at least `min_s` before the end
   of the video. A cut too close to the end is dropped, so a short trailing scene is
   merged into the one before it.
2. Each scene between boundaries is split evenly into the fewest pieces no longer than
   `max_s` (give or take a frame: pieces start on frames). Because splitting comes after merging, a merge never yields a segment longer
   than `max_s`; the price is that with `max_s < 2 * min_s` a split piece can be
   shorter than `min_s`.
3. A video shorter than `min_s` is therefore one segment.
4. An even split moves to the source keyframe nearest to it within `KEYFRAME_SNAP_S`
   (when the pieces still fit in `max_s`): a segment that starts on a keyframe is
   sought straight to it, where one starting elsewhere decodes from the keyframe
   before it (a whole GOP of pre-roll, hundreds of frames on a 1080p film).

Every decision depends only on the cuts before it (the end of the video is known from
the frame times), so the segments up to any settled cut are final while scene detection
still runs: see `final_segments`.

Times: `start_s` and `end_s` are seek points for ffmpeg's exact input `-ss`/`-to`
(relative to the container's start), halfway between the last frame of one segment and
the first of the next, so rounding can never move a frame across a boundary. A segment
starting on a keyframe starts at the keyframe's own time instead (less a microsecond):
ffmpeg seeks to the last keyframe at or before the seek point, so halfway before the
keyframe would land on the one before it.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise

from drapto_engine.core.models import DEFAULTS, Segment

FALLBACK_FRAME_S = 1 / 25  # the duration of a lone frame nothing else tells
KEYFRAME_SNAP_S = 1.0  # how far an even split may move to land on a keyframe
KEYFRAME_SEEK_MARGIN_S = 1e-6  # a keyframe's seek point: its time less this (rounding)


@dataclass(frozen=True)
class Timeline:
    """The seek point before every frame, and the end: bounds[f] is where frame f starts.

    `keyframes` are the frames that are keyframes (sorted), `keyframe_times` their own
    times."""

    bounds: tuple[float, ...]
    keyframes: tuple[int, ...] = ()
    keyframe_times: tuple[float, ...] = ()

    @classmethod
    def of(
        cls,
        times: Sequence[float],
        duration_s: float | None = None,
        keyframes: Iterable[int] = (),
    ) -> Timeline:
        """`times` are the sorted frame times; `duration_s`, when given and after the last
        frame, is where the last frame ends (otherwise it lasts as long as the one before).
        `keyframes` are indices into `times`."""
        if not times:
            return cls((0.0,))
        keys = tuple(sorted(k for k in set(keyframes) if 0 <= k < len(times)))
        steps = [b - a for a, b in pairwise(times)]
        first_step = steps[0] if steps else FALLBACK_FRAME_S
        last_step = steps[-1] if steps else FALLBACK_FRAME_S
        end = times[-1] + last_step
        if duration_s is not None and duration_s > times[-1]:
            end = duration_s
        middles = [(a + b) / 2 for a, b in pairwise(times)]
        bounds = (max(0.0, times[0] - first_step / 2), *middles, end)
        return cls(bounds, keys, tuple(times[k] for k in keys))

    @property
    def frames(self) -> int:
        return len(self.bounds) - 1

    @property
    def end(self) -> float:
        return self.bounds[-1]

    def span(self, first: int, last: int) -> float:
        """Duration of frames [first, last)."""
        return self.bounds[last] - self.bounds[first]

    def seek_point(self, frame: int) -> float:
        """Where a segment starting at `frame` is sought to (see the module's notes)."""
        i = bisect.bisect_left(self.keyframes, frame)
        if frame == 0 or i == len(self.keyframes) or self.keyframes[i] != frame:
            return self.bounds[frame]
        return max(self.bounds[frame], self.keyframe_times[i] - KEYFRAME_SEEK_MARGIN_S)

    def keyframes_near(self, t: float, lo: int, hi: int, within: float) -> list[int]:
        """The keyframes in [lo, hi] whose start is `within` of `t`, nearest first."""
        first = bisect.bisect_left(self.keyframes, lo)
        last = bisect.bisect_right(self.keyframes, hi)
        near = [k for k in self.keyframes[first:last] if abs(self.bounds[k] - t) <= within]
        return sorted(near, key=lambda k: (round(abs(self.bounds[k] - t), 9), k))

    def nearest(self, t: float, lo: int, hi: int) -> int:
        """The frame in [lo, hi] whose start is nearest to `t`."""
        i = bisect.bisect_left(self.bounds, t, lo, hi + 1)
        candidates = [f for f in (i - 1, i) if lo <= f <= hi]
        # round so that a tie (time exactly between two frames) goes to the earlier one
        return min(candidates, key=lambda f: (round(abs(self.bounds[f] - t), 9), f))


def accepted_cuts(
    cuts: Sequence[int], timeline: Timeline, min_s: float, *, settled: int | None = None
) -> list[int]:
    """The cuts that become boundaries (rule 1), among those below `settled` if given."""
    accepted: list[int] = []
    start = 0
    for cut in sorted(set(cuts)):
        if settled is not None and cut >= settled:
            break
        if not 0 < cut < timeline.frames:
            continue
        if timeline.span(start, cut) >= min_s and timeline.span(cut, timeline.frames) >= min_s:
            accepted.append(cut)
            start = cut
    return accepted


def split_scene(first: int, last: int, timeline: Timeline, max_s: float) -> list[int]:
    """Frames inside [first, last) where the fewest even pieces of at most `max_s` begin.

    Pieces end on frame boundaries, so one may overshoot `max_s` by up to a frame."""
    frames = last - first
    span = timeline.span(first, last)
    slack = span / frames + 1e-9  # the scene's mean frame duration
    pieces = min(frames, max(1, math.ceil(span / max_s - 1e-9)))
    while pieces > 1:
        for snap in (KEYFRAME_SNAP_S, 0.0) if timeline.keyframes else (0.0,):
            inner = _even_points(first, last, pieces, timeline, snap, max_s + slack)
            edges = [first, *inner, last]
            if pieces == frames or all(
                timeline.span(a, b) <= max_s + slack for a, b in pairwise(edges)
            ):
                return inner
        pieces += 1  # a very uneven frame rate put too much in one piece
    return []


def _even_points(
    first: int,
    last: int,
    pieces: int,
    timeline: Timeline,
    snap_s: float = 0.0,
    limit_s: float = math.inf,
) -> list[int]:
    """The even split points, each moved to the nearest keyframe within `snap_s` that
    leaves the piece before it no longer than `limit_s`."""
    length = timeline.span(first, last)
    start = timeline.bounds[first]
    inner: list[int] = []
    previous = first
    for k in range(1, pieces):
        # leave at least one frame for each piece still to come
        lo, hi = previous + 1, last - (pieces - k)
        target = start + length * k / pieces
        near = timeline.keyframes_near(target, lo, hi, snap_s) if snap_s else []
        fitting = [k for k in near if timeline.span(previous, k) <= limit_s]
        frame = fitting[0] if fitting else timeline.nearest(target, lo, hi)
        inner.append(frame)
        previous = frame
    return inner


def _segments(boundaries: Sequence[int], timeline: Timeline, max_s: float) -> list[Segment]:
    """Segments over consecutive boundary frames, long scenes split evenly (rule 2)."""
    edges: list[int] = []
    for first, last in pairwise(boundaries):
        edges += [first, *split_scene(first, last, timeline, max_s)]
    edges.append(boundaries[-1])
    return [
        Segment(
            index=i,
            start_frame=a,
            end_frame=b,
            start_s=timeline.seek_point(a),
            end_s=timeline.seek_point(b),
        )
        for i, (a, b) in enumerate(pairwise(edges))
    ]


def plan_segments(
    cuts: Sequence[int],
    times: Sequence[float],
    *,
    min_s: float = DEFAULTS.min_segment_s,
    max_s: float = DEFAULTS.max_segment_s,
    duration_s: float | None = None,
    keyframes: Iterable[int] = (),
) -> list[Segment]:
    """Every frame in exactly one segment, in order, with boundaries at accepted cuts.

    `times` are the frame times (`frame_times`), one per frame; `duration_s` is where
    the last frame ends, when known better than by repeating the last frame step;
    `keyframes` are the frames that are keyframes."""
    timeline = Timeline.of(times, duration_s, keyframes)
    return plan_on(cuts, timeline, min_s=min_s, max_s=max_s)


def plan_on(
    cuts: Sequence[int], timeline: Timeline, *, min_s: float, max_s: float
) -> list[Segment]:
    """plan_segments on a prepared Timeline (the streaming planner reuses one)."""
    if timeline.frames == 0:
        return []
    boundaries = [0, *accepted_cuts(cuts, timeline, min_s), timeline.frames]
    return _segments(boundaries, timeline, max_s)


def final_segments(
    cuts: Sequence[int], timeline: Timeline, settled: int, *, min_s: float, max_s: float
) -> list[Segment]:
    """The leading segments of the plan that no cut at or after `settled` can change."""
    boundaries = [0, *accepted_cuts(cuts, timeline, min_s, settled=settled)]
    if len(boundaries) < 2:
        return []
    return _segments(boundaries, timeline, max_s)


def fixed_segments(
    times: Sequence[float],
    *,
    length_s: float = DEFAULTS.max_segment_s,
    duration_s: float | None = None,
    keyframes: Iterable[int] = (),
) -> list[Segment]:
    """Segments of equal length, the fewest no longer than `length_s`, for when scene
    detection is off (equal pieces avoid a short straggler at the end)."""
    timeline = Timeline.of(times, duration_s, keyframes)
    if timeline.frames == 0:
        return []
    return _segments([0, timeline.frames], timeline, length_s)
