"""Segment planning from cuts and frame times (pure).

Greedy from the start: the next boundary is the first cut at least `min_s` after the
current start and at least `min_s` before the end of the video; a scene longer than
`max_s` is split evenly into the fewest pieces that fit. Because the end of the video
is known from the frame times, every decision depends only on the cuts up to it, so
segments can be finalised while detection is still running (see `final_segments`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

from drapto_engine.core.models import Segment


def _boundary(times: Sequence[float], frame: int) -> float:
    """A seek time between frame-1 and frame (the segment starts exactly at `frame`)."""
    if frame <= 0:
        return 0.0
    if frame >= len(times):
        last = times[-1]
        step = times[-1] - times[-2] if len(times) > 1 else 0.04
        return last + step
    return (times[frame - 1] + times[frame]) / 2


def end_time(times: Sequence[float]) -> float:
    return _boundary(times, len(times))


def accepted_cuts(
    cuts: Sequence[int], times: Sequence[float], min_s: float, *, settled: int | None = None
) -> list[int]:
    """The cuts that become segment boundaries (among cuts below `settled`, when given)."""
    total = len(times)
    end = end_time(times)
    accepted: list[int] = []
    start = 0
    for cut in sorted(set(cuts)):
        if settled is not None and cut >= settled:
            break
        if not 0 < cut < total:
            continue
        if times[cut] - times[start] >= min_s and end - times[cut] >= min_s:
            accepted.append(cut)
            start = cut
    return accepted


def _split_scene(first: int, last: int, times: Sequence[float], max_s: float) -> list[int]:
    """Boundaries inside one scene [first, last) so that no piece is longer than max_s."""
    length = _boundary(times, last) - _boundary(times, first)
    pieces = max(1, math.ceil(length / max_s - 1e-9))
    if pieces == 1:
        return []
    start_t = _boundary(times, first)
    inner = []
    for k in range(1, pieces):
        target = start_t + length * k / pieces
        # the first frame at or after the even split point
        frame = next((f for f in range(first + 1, last) if times[f] >= target), last)
        if frame not in inner and first < frame < last:
            inner.append(frame)
    return inner


def segments_between(
    boundaries: Sequence[int], times: Sequence[float], max_s: float, first_index: int = 0
) -> list[Segment]:
    """Segments over consecutive boundary frames, long scenes split evenly."""
    frames: list[int] = []
    for first, last in itertools.pairwise(boundaries):
        frames += [first, *_split_scene(first, last, times, max_s)]
    frames.append(boundaries[-1])
    return [
        Segment(
            index=first_index + i,
            start_frame=a,
            end_frame=b,
            start_s=_boundary(times, a),
            end_s=_boundary(times, b),
        )
        for i, (a, b) in enumerate(itertools.pairwise(frames))
    ]


def plan_segments(
    cuts: Sequence[int], times: Sequence[float], *, min_s: float, max_s: float
) -> list[Segment]:
    """Every frame in exactly one segment, boundaries at accepted cuts."""
    if not times:
        return []
    return segments_between([0, *accepted_cuts(cuts, times, min_s), len(times)], times, max_s)


def final_segments(
    cuts: Sequence[int], times: Sequence[float], settled: int, *, min_s: float, max_s: float
) -> list[Segment]:
    """The segments already certain while frames before `settled` have been scanned."""
    boundaries = [0, *accepted_cuts(cuts, times, min_s, settled=settled)]
    if len(boundaries) < 2:
        return []
    return segments_between(boundaries, times, max_s)


def fixed_segments(times: Sequence[float], *, length_s: float, min_s: float) -> list[Segment]:
    """Segments of about `length_s` each, for when scene detection is off."""
    if not times:
        return []
    total = end_time(times)
    count = max(1, round(total / length_s))
    boundaries = [0]
    for k in range(1, count):
        target = total * k / count
        frame = next((f for f in range(boundaries[-1] + 1, len(times)) if times[f] >= target), None)
        if frame is not None and total - times[frame] >= min_s / 2:
            boundaries.append(frame)
    boundaries.append(len(times))
    return segments_between(boundaries, times, max_s=math.inf)
