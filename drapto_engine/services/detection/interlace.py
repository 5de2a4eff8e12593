"""Interlacing: the stream's field order, checked with ffmpeg's idet on sampled frames.

AV1 has no interlaced coding: an interlaced source encoded as it is keeps its combing in
every frame. A stream flagged interlaced (or not flagged at all) is checked by idet on
windows of consecutive frames, because the flag often lies that way: a film on DVD is
coded interlaced with progressive pictures, and deinterlacing those would only soften
them. A stream flagged progressive is believed and not checked: idet takes some
progressive pictures (fine moving patterns) for interlaced ones, and decoding windows
of long-GOP HD video to ask it would cost seconds. Formats taller than 1088 lines (UHD)
have no interlaced variant and are not checked either.
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
WINDOWS = tuple(i / 10 + 0.05 for i in range(10))  # where windows start (shares of the duration)
WINDOW_FRAMES = 20  # a static shot shows idet nothing, so many shots are looked at
SETTLE_FRAMES = 4  # idet's multi-frame verdict needs a few frames of history
# Share of the frames idet decides on that must be interlaced. Film telecined to 29.97
# (3:2 pulldown) shows two combed frames in five (0.4); progressive video stays near 0.
INTERLACED_SHARE = 0.2
# Share of those verdicts that must name the same field first: real fields keep one order,
# while idet's misreadings of progressive pictures (fine moving patterns) may swing.
ONE_ORDER = 0.8
INTERLACED = ("tff", "bff")


def _window(container: Any, stream: Any, timestamp: int | None, frames: int) -> list[str]:
    """idet's multi-frame verdict for each frame of one window (after it settled); from
    the start when `timestamp` is None. The seek lands on the keyframe before
    `timestamp`: frames before it are decoded but not looked at, or with long GOPs every
    window would be the same frames after the same keyframe."""
    if timestamp is not None:
        container.seek(timestamp, stream=stream, backward=True)
    first = timestamp or 0
    graph = av.filter.Graph()
    source = graph.add_buffer(template=stream)
    idet = graph.add("idet")
    sink = graph.add("buffersink")
    source.link_to(idet)
    idet.link_to(sink)
    graph.configure()
    verdicts: list[str] = []
    for frame in container.decode(stream):
        if frame.pts is not None and frame.pts < first:
            continue
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
    """Blocking: idet's verdicts on WINDOWS of consecutive frames; None when not checked
    (flagged progressive, or taller than MAX_LINES)."""
    if video.height > MAX_LINES or video.field_order == "progressive":
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
    tff = interlaced.count("tff")
    one_order = max(tff, len(interlaced) - tff) >= ONE_ORDER * len(interlaced)
    result = Interlace(
        field_order=video.field_order,
        frames_checked=len(decided),
        interlaced_frames=len(interlaced),
        top_first=tff >= len(interlaced) - tff,
        deinterlace=bool(interlaced)
        and len(interlaced) >= INTERLACED_SHARE * len(decided)
        and one_order,
    )
    log.info("%s: %s", path.name, result.describe())
    return result
