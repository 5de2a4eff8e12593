"""Black bar detection by seeking to frames spread over the programme.

Only keyframes near each sample time are decoded, so a two-hour film costs a few
dozen seeks, not a full decode. Samples disagreeing (a film with IMAX scenes, a dark
shot) resolve to the least aggressive crop, so picture is never lost.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt

from drapto_engine.core.errors import MediaError
from drapto_engine.core.models import Crop, DynamicRange

log = logging.getLogger(__name__)

SAMPLES = 24
SKIP_EDGES = 0.05  # opening titles and end credits
MIN_BAR_FRACTION = 0.01
# Near-black as a fraction of the code range. PQ and HLG put black and the darkest
# visible greys well above SDR's, so bars in HDR masters sit higher too.
SDR_BLACK = 24 / 255
HDR_BLACK = 128 / 1023
# A row or column is a bar when nearly all its pixels are below the threshold.
BAR_SHARE = 0.95


@dataclass(frozen=True)
class Bars:
    top: int
    bottom: int
    left: int
    right: int


def black_threshold(dynamic_range: DynamicRange) -> float:
    return SDR_BLACK if dynamic_range is DynamicRange.SDR else HDR_BLACK


def _luma(frame: Any) -> npt.NDArray[np.float32]:
    """The luma plane scaled to [0, 1] of its code range."""
    plane = frame.planes[0]
    bits = frame.format.components[0].bits
    dtype = np.uint16 if bits > 8 else np.uint8
    raw = np.frombuffer(memoryview(plane), dtype=dtype)
    stride = plane.line_size // raw.itemsize
    rows = raw.reshape(-1, stride)[: frame.height, : frame.width]
    return rows.astype(np.float32) / float((1 << bits) - 1)


def _edge_run(dark: npt.NDArray[np.bool_]) -> int:
    """How many leading entries are dark."""
    lit = np.flatnonzero(~dark)
    return int(lit[0]) if lit.size else len(dark)


def bars_of(luma: npt.NDArray[np.float32], threshold: float) -> Bars | None:
    """The bars of one frame, or None for a frame with no picture (all dark)."""
    # Counting dark pixels, not a percentile: the same rule without sorting every row.
    dark = luma < threshold
    rows = dark.mean(axis=1) >= BAR_SHARE
    cols = dark.mean(axis=0) >= BAR_SHARE
    if rows.all() or cols.all():
        return None
    return Bars(
        top=_edge_run(rows),
        bottom=_edge_run(rows[::-1]),
        left=_edge_run(cols),
        right=_edge_run(cols[::-1]),
    )


def combine(samples: list[Bars], width: int, height: int) -> Crop | None:
    """The least aggressive crop all samples allow, or None if bars are negligible."""
    if not samples:
        return None
    top = min(s.top for s in samples)
    bottom = min(s.bottom for s in samples)
    left = min(s.left for s in samples)
    right = min(s.right for s in samples)
    if top + bottom < MIN_BAR_FRACTION * height:
        top = bottom = 0
    if left + right < MIN_BAR_FRACTION * width:
        left = right = 0
    # Round each bar down to even: 4:2:0 needs even offsets and sizes, and
    # rounding down can only keep picture.
    top, bottom, left, right = (v - v % 2 for v in (top, bottom, left, right))
    if top == bottom == left == right == 0:
        return None
    return Crop(width=width - left - right, height=height - top - bottom, x=left, y=top)


def _sample_times(duration_s: float, count: int) -> list[float]:
    span = duration_s * (1 - 2 * SKIP_EDGES)
    return [duration_s * SKIP_EDGES + span * (i + 0.5) / count for i in range(count)]


def _keyframe_at(container: Any, stream: Any, timestamp: int, seen: set[int]) -> Any:
    """The keyframe a backward seek to `timestamp` lands on, decoded on its own; None when
    it was decoded for an earlier sample (its bars are known: a repeat changes nothing)
    or no keyframe follows."""
    try:
        container.seek(timestamp, stream=stream, backward=True)
    except av.error.FFmpegError:
        # no keyframe at or before it (an MP4 that starts mid-GOP): the one after it
        container.seek(timestamp, stream=stream, backward=False)
    for packet in container.demux(stream):
        if packet.size == 0:  # the end of the file
            return None
        if not packet.is_keyframe:  # a container that seeks inexactly (MPEG-TS)
            continue
        if packet.pts in seen:
            return None
        seen.add(packet.pts)
        try:
            frames = [*packet.decode(), *stream.codec_context.decode(None)]
        except av.error.InvalidDataError:
            return None
        return frames[0] if frames else None
    return None


def detect_crop(path: Path, dynamic_range: DynamicRange, duration_s: float) -> Crop | None:
    """Blocking: seek to SAMPLES points and measure the bars of the keyframe found there.

    Each keyframe is decoded alone, once, on one thread: sent to the decoder and drained
    (a seek resets the decoder for the next one). A film with a keyframe every 10 s or
    more shares keyframes between samples; decoding on until the decoder hands out its
    first frame, as a plain decode loop does, would decode frames past it for nothing."""
    threshold = black_threshold(dynamic_range)
    found: list[Bars] = []
    seen: set[int] = set()
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.codec_context.thread_count = 1
            width, height = stream.codec_context.width, stream.codec_context.height
            start = (container.start_time or 0) / av.time_base
            time_base = stream.time_base or Fraction(1, 1000)
            for t in _sample_times(duration_s, SAMPLES):
                frame = _keyframe_at(container, stream, int((start + t) / time_base), seen)
                if frame is None:
                    continue
                width, height = frame.width, frame.height
                bars = bars_of(_luma(frame), threshold)
                if bars is not None:
                    found.append(bars)
    except av.FFmpegError as exc:
        raise MediaError(f"crop detection failed: {exc}", path) from exc
    except IndexError as exc:  # streams.video[0]
        raise MediaError("crop detection failed: no video stream", path) from exc
    crop = combine(found, width, height)
    log.info("%s: crop %s from %d usable samples", path.name, crop, len(found))
    return crop
