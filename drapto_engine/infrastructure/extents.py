"""Where each stream of a file starts and ends, and how many packets it has (demux only)."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

MAX_NVOP_SIZE = 19
"""The largest packet ffmpeg's MPEG-4 part 2 decoder takes for a not coded VOP (N-VOP),
the placeholder Xvid and DivX leave in a dropped or packed frame's slot."""


class FramePackets:
    """Which packets of one video stream become frames shown, counted by demuxing alone.

    Every packet with data does, except an MPEG-4 part 2 N-VOP before the stream's first
    picture (an old AVI's dropped first frame): the decoder has nothing to repeat, so it
    shows nothing, and counting it would put every later frame one slot late."""

    def __init__(self, stream: Any) -> None:
        context = stream.codec_context
        self._placeholders = context is not None and context.codec.canonical_name == "mpeg4"
        self._started = False

    def shown(self, packet: Any) -> bool:
        if packet.size == 0:
            return False
        if self._placeholders and not self._started:
            if packet.size <= MAX_NVOP_SIZE and not packet.is_keyframe:
                return False
            self._started = True
        return True


@dataclass(frozen=True)
class Extent:
    packets: int
    start_s: float
    end_s: float

    @property
    def duration_s(self) -> float:
        return max(0.0, self.end_s - self.start_s)


def stream_extents(path: Path) -> dict[int, Extent]:
    """Blocking: read every packet once (no decoding) and measure each stream.

    Each stream's first and last tick are kept as integers and turned into seconds once,
    at the end: the same floats as per-packet `pts * time_base` (an exact fraction, then
    rounded once), without a Fraction per packet."""
    counts: dict[int, int] = {}
    firsts: dict[int, int] = {}
    lasts: dict[int, int] = {}
    bases: dict[int, Fraction] = {}
    with av.open(str(path)) as container:
        wanted = [s for s in container.streams if s.type in ("video", "audio")]
        frames = {s.index: FramePackets(s) for s in wanted if s.type == "video"}
        for packet in container.demux(wanted):
            pts = packet.pts
            if packet.size == 0 or pts is None or packet.time_base is None:
                continue
            index = packet.stream.index
            if index in frames and not frames[index].shown(packet):
                continue
            end = pts + (packet.duration or 0)
            if index in counts:
                counts[index] += 1
                firsts[index] = min(firsts[index], pts)
                lasts[index] = max(lasts[index], end)
            else:
                counts[index], firsts[index], lasts[index] = 1, pts, end
                bases[index] = packet.time_base
    return {
        i: Extent(counts[i], _seconds(firsts[i], bases[i]), _seconds(lasts[i], bases[i]))
        for i in counts
    }


def _seconds(ticks: int, time_base: Fraction) -> float:
    return float(ticks * time_base)
