"""Interlacing: the stream's field order, checked with ffmpeg's idet on sampled frames.

AV1 has no interlaced coding: an interlaced source encoded as it is keeps its combing in
every frame. The flag alone cannot be trusted either way (a DVD of a film may be flagged
interlaced and hold progressive frames; a careless capture may be flagged progressive),
so idet looks at a few windows of consecutive frames. Formats taller than 1088 lines
(UHD) have no interlaced variant and are not checked.
"""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from drapto_engine.core.errors import MediaError
from drapto_engine.core.models import Interlace, VideoStream

log = logging.getLogger(__name__)

MAX_LINES = 1088  # 1080i coded with 8 lines of padding
WINDOWS = (0.1, 0.3, 0.5, 0.7, 0.9)  # where the windows start, as shares of the duration
WINDOW_FRAMES = 30  # a static shot shows idet nothing, so several shots are looked at
SETTLE_FRAMES = 4  # idet's multi-frame verdict needs a few frames of history
# Share of the frames idet decides on that must be interlaced. Film telecined to 29.97
# (3:2 pulldown) shows two combed frames in five (0.4); progressive video stays near 0.
INTERLACED_SHARE = 0.2
INTERLACED = ("tff", "bff")


def _window(container: Any, stream: Any, timestamp: int | None, frames: int) -> list[str]:
    """idet's multi-frame verdict for each frame of one window (after it settled); from
    the start when `timestamp` is None."""
    if timestamp is not None:
        container.seek(timestamp, stream=stream, backward=True)
    graph = av.filter.Graph()
    source = graph.add_buffer(template=stream)
    idet = graph.add("idet")
    sink = graph.add("buffersink")
    source.link_to(idet)
    idet.link_to(sink)
    graph.configure()
    verdicts: list[str] = []
    for frame in container.decode(stream):
        graph.push(frame)
        try:
            out = graph.pull()
        except (av.error.BlockingIOError, av.error.EOFError):
            continue
        verdicts.append(str(out.metadata.get("lavfi.idet.multiple.current_frame", "")))
        if len(verdicts) >= frames:
            break
    return verdicts[SETTLE_FRAMES:]


def detect_interlace(path: Path, video: VideoStream, duration_s: float) -> Interlace | None:
    """Blocking: idet's verdicts on WINDOWS of consecutive frames; None above MAX_LINES."""
    if video.height > MAX_LINES:
        return None
    verdicts: list[str] = []
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.codec_context.thread_count = 1
            start = (container.start_time or 0) / av.time_base
            time_base = stream.time_base or Fraction(1, 1000)
            if video.frame_count <= WINDOW_FRAMES * len(WINDOWS):  # short: all of it, once
                verdicts = _window(container, stream, None, video.frame_count)
            else:
                for share in WINDOWS:
                    at = int((start + duration_s * share) / time_base)
                    verdicts += _window(container, stream, at, WINDOW_FRAMES)
    except av.FFmpegError as exc:
        raise MediaError(f"interlace detection failed: {exc}", path) from exc
    decided = [v for v in verdicts if v in (*INTERLACED, "progressive")]
    interlaced = [v for v in decided if v in INTERLACED]
    result = Interlace(
        field_order=video.field_order,
        frames_checked=len(decided),
        interlaced_frames=len(interlaced),
        top_first=interlaced.count("tff") >= interlaced.count("bff"),
        deinterlace=bool(decided) and len(interlaced) >= INTERLACED_SHARE * len(decided),
    )
    log.info("%s: %s", path.name, result.describe())
    return result
