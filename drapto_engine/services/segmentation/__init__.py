"""Segmentation: where the video has scene cuts, and the frame ranges that get encoded.

Frame times come from demuxing (fast), cuts from one small decode of the whole video
(slow); both run at once. `stream_segments` hands out each segment as soon as no later
cut can change it, so encoding starts while detection is still running;
`segment_video` returns the same plan in one piece.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from drapto_engine.core.models import Segment
from drapto_engine.services.segmentation.planner import (
    Timeline,
    final_segments,
    fixed_segments,
    plan_on,
    plan_segments,
)
from drapto_engine.services.segmentation.scenes import detect_cuts
from drapto_engine.services.segmentation.timestamps import frame_times, keyframes_of

__all__ = [
    "detect_cuts",
    "fixed_segments",
    "frame_times",
    "plan_segments",
    "segment_video",
    "stream_segments",
]

log = logging.getLogger(__name__)


def _check_cuts(source: Path, cuts: list[int], frames: int) -> list[int]:
    """Cuts on frames the packets do not know of (a decoder that disagrees) are dropped."""
    inside = [c for c in cuts if c < frames]
    if len(inside) < len(cuts):
        log.warning(
            "%s: scene detection saw more frames than the container lists (%d); "
            "cuts past the end are ignored",
            source.name,
            frames,
        )
    return inside


async def segment_video(
    source: Path,
    *,
    min_s: float,
    max_s: float,
    scene_detection: bool = True,
) -> list[Segment]:
    """The whole segment plan of `source`'s video."""
    if not scene_detection:
        times = await asyncio.to_thread(frame_times, source)
        return fixed_segments(times, length_s=max_s, keyframes=keyframes_of(times))
    times, cuts = await asyncio.gather(asyncio.to_thread(frame_times, source), detect_cuts(source))
    cuts = _check_cuts(source, cuts, len(times))
    segments = plan_segments(cuts, times, min_s=min_s, max_s=max_s, keyframes=keyframes_of(times))
    log.info("%s: %d cuts, %d segments", source.name, len(cuts), len(segments))
    return segments


async def stream_segments(
    source: Path,
    *,
    min_s: float,
    max_s: float,
    scene_detection: bool = True,
    times: asyncio.Task[list[float]] | None = None,
) -> AsyncIterator[Segment]:
    """Yield the plan's segments in order, each as soon as it is certain.

    `times` is the caller's own `frame_times` task, when it needs them too: the source's
    packets are then read once. Closing the iterator early (or cancelling its consumer)
    stops scene detection."""
    own_times = times is None
    times_task = times or asyncio.create_task(asyncio.to_thread(frame_times, source))
    if not scene_detection:
        try:
            frames = await times_task
            for segment in fixed_segments(frames, length_s=max_s, keyframes=keyframes_of(frames)):
                yield segment
        finally:
            if own_times:
                times_task.cancel()
        return
    progress: asyncio.Queue[tuple[int, list[int]] | None] = asyncio.Queue()
    reported = 0

    def on_cuts(settled: int, cuts: list[int]) -> None:
        # Planning again is only worth it when a new cut has settled (all reported are).
        nonlocal reported
        if len(cuts) > reported:
            reported = len(cuts)
            progress.put_nowait((settled, cuts))

    scan = asyncio.create_task(detect_cuts(source, on_cuts=on_cuts))
    scan.add_done_callback(lambda _: progress.put_nowait(None))
    try:
        frames = await times_task
        timeline = Timeline.of(frames, keyframes=keyframes_of(frames))
        sent = 0
        while (report := await progress.get()) is not None:
            settled, cuts = report
            ready = final_segments(cuts, timeline, settled, min_s=min_s, max_s=max_s)
            for segment in ready[sent:]:
                yield segment
            sent = max(sent, len(ready))
        cuts = _check_cuts(source, await scan, timeline.frames)
        plan = plan_on(cuts, timeline, min_s=min_s, max_s=max_s)
        log.info("%s: %d cuts, %d segments", source.name, len(cuts), len(plan))
        for segment in plan[sent:]:
            yield segment
    finally:
        mine = [scan, times_task] if own_times else [scan]
        for task in mine:
            task.cancel()
        await asyncio.gather(*mine, return_exceptions=True)
