"""Presentation times of every video frame, read from the packets alone (no decoding).

Demuxing is I/O bound and takes a fraction of a second even for a feature film, so the
planner can place boundaries on exact frame times before any frame is decoded.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from drapto_engine.core.errors import MediaError
from drapto_engine.infrastructure.shown import FirstShown

log = logging.getLogger(__name__)

FALLBACK_RATE = Fraction(25)  # what ffmpeg itself assumes for a raw stream with no rate


def main_video_stream(container: Any, stream_index: int | None = None) -> Any:
    """The stream with `stream_index`, or the first video stream that is not cover art
    (the stream ffmpeg's `-map 0:V:0` picks)."""
    if stream_index is not None:
        stream = container.streams[stream_index]
        if stream.type != "video":
            raise ValueError(f"stream {stream_index} is {stream.type}, not video")
        return stream
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    return None


class FrameTimes(list[float]):
    """Frame times (a plain sorted list) that also know which frames are keyframes."""

    keyframes: frozenset[int] = frozenset()
    """Indices (in time order) of the frames whose packets are flagged as keyframes: a
    seek to one decodes nothing before it."""


def keyframes_of(times: Sequence[float]) -> frozenset[int]:
    """The keyframes `frame_times` found; none for any other list of times."""
    return times.keyframes if isinstance(times, FrameTimes) else frozenset()


def _packet_times(container: Any, stream: Any) -> tuple[list[float], int, set[float]]:
    """Times (s) of the packets that carry a frame a decoder shows (see FirstShown), how
    many of those had no pts, and the times of the keyframes."""
    ticks: list[int] = []
    keys: set[int] = set()
    missing = 0
    first = FirstShown(stream)
    # pts * num / den in integers, divided once: the float of the exact fraction
    # pts * time_base, as float(packet.pts * packet.time_base) gives, without a Fraction
    # per packet.
    num = den = 0
    for packet in container.demux(stream):
        # The final flush packet is empty; a discarded packet (mp4 edit lists, e.g. the
        # frames before the first keyframe of a stream copy) is decoded but never shown.
        if packet.size == 0:
            continue
        first.feed(packet)  # a discarded packet may be the keyframe the next ones need
        if packet.is_discard:
            continue
        if packet.pts is None:
            missing += 1
            continue
        if not den:
            num, den = packet.time_base.numerator, packet.time_base.denominator
        ticks.append(packet.pts)
        if packet.is_keyframe:
            keys.add(packet.pts)
    shown = [t for t in ticks if first.shows(t)]
    return [t * num / den for t in shown], missing, {t * num / den for t in keys}


def _rate(stream: Any) -> Fraction:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return Fraction(rate)
    return FALLBACK_RATE


def frame_times(path: Path, stream_index: int | None = None) -> FrameTimes:
    """Sorted presentation times (s) of every frame of the video stream, relative to the
    container's start time (the origin of ffmpeg's input `-ss`).

    Blocking; run it in a thread. A stream whose packets carry no timestamps (a raw
    .h264 or .hevc elementary stream) gets evenly spaced times at its frame rate, which is
    what ffmpeg assumes for it too (and no keyframes are listed).
    """
    try:
        with av.open(str(path)) as container:
            stream = main_video_stream(container, stream_index)
            if stream is None:
                raise MediaError("no video stream", path)
            start = (container.start_time or 0) / av.time_base
            times, missing, keys = _packet_times(container, stream)
            if missing:
                log.warning(
                    "%s: %d of %d video packets have no timestamp; assuming a constant rate",
                    path.name,
                    missing,
                    missing + len(times),
                )
                step = 1 / _rate(stream)
                first = min(times, default=start)
                count = missing + len(times)
                return FrameTimes(first - start + float(i * step) for i in range(count))
    except av.FFmpegError as exc:
        raise MediaError(f"cannot read the video packets: {exc}", path) from exc
    times.sort()
    result = FrameTimes(t - start for t in times)
    result.keyframes = frozenset(i for i, t in enumerate(times) if t in keys)
    return result
