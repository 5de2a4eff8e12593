"""Segmentation: where the video is cut, and the frame ranges that get encoded."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from drapto_engine.core.models import Segment
from drapto_engine.services.segmentation.planner import (
    final_segments,
    fixed_segments,
    plan_segments,
)
from drapto_engine.services.segmentation.scenes import detect_cuts
from drapto_engine.services.segmentation.timestamps import frame_times

log = logging.getLogger(__name__)


async def stream_segments(
    ffmpeg: str,
    source: Path,
    *,
    min_s: float,
    max_s: float,
    scene_detection: bool = True,
) -> AsyncIterator[Segment]:
    """Yield segments in order as soon as each is certain, while detection still runs."""
    times = await asyncio.to_thread(frame_times, source)
    if not times:
        return
    if not scene_detection:
        for segment in fixed_segments(times, length_s=max_s, min_s=min_s):
            yield segment
        return
    queue: asyncio.Queue[list[Segment] | None] = asyncio.Queue()
    sent = 0

    def on_cuts(settled: int, cuts: list[int]) -> None:
        nonlocal sent
        ready = final_segments(cuts, times, settled, min_s=min_s, max_s=max_s)
        if len(ready) > sent:
            queue.put_nowait(ready[sent:])
            sent = len(ready)

    async def scan() -> list[int]:
        try:
            return (await detect_cuts(ffmpeg, source, on_cuts)).cuts
        finally:
            queue.put_nowait(None)

    task = asyncio.create_task(scan())
    try:
        while (batch := await queue.get()) is not None:
            for segment in batch:
                yield segment
        cuts = await task
        for segment in plan_segments(cuts, times, min_s=min_s, max_s=max_s)[sent:]:
            yield segment
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def segment_video(
    ffmpeg: str,
    source: Path,
    *,
    min_s: float,
    max_s: float,
    scene_detection: bool = True,
) -> list[Segment]:
    """The whole plan at once."""
    return [
        s
        async for s in stream_segments(
            ffmpeg, source, min_s=min_s, max_s=max_s, scene_detection=scene_detection
        )
    ]
