"""Where each stream of a file starts and ends, and how many packets it has."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from drapto_engine.infrastructure.shown import FirstShown


@dataclass(frozen=True)
class Extent:
    packets: int
    start_s: float
    end_s: float

    @property
    def duration_s(self) -> float:
        return max(0.0, self.end_s - self.start_s)


class _Span:
    """One stream's packet count and first and last tick, in its own time base."""

    def __init__(self, time_base: Fraction) -> None:
        self.time_base = time_base
        self.packets = 0
        self.first: int | None = None
        self.last: int | None = None

    def add(self, pts: int, end: int) -> None:
        self.packets += 1
        self.first = pts if self.first is None else min(self.first, pts)
        self.last = end if self.last is None else max(self.last, end)

    def extent(self) -> Extent:
        assert self.first is not None and self.last is not None
        return Extent(
            self.packets, _seconds(self.first, self.time_base), _seconds(self.last, self.time_base)
        )


def stream_extents(path: Path) -> dict[int, Extent]:
    """Blocking: read every packet once and measure each stream; packets that are never
    played (discarded ones, and a video stream's that no decoder shows: see FirstShown)
    are left out.

    Each stream's first and last tick are kept as integers and turned into seconds once,
    at the end: the same floats as per-packet `pts * time_base` (an exact fraction, then
    rounded once), without a Fraction per packet."""
    spans: dict[int, _Span] = {}
    shown: dict[int, FirstShown] = {}
    # a video stream's packets until its first frame is decoded: only then is it known
    # which of them are shown
    waiting: dict[int, list[tuple[int, int]]] = {}
    with av.open(str(path)) as container:
        wanted = [s for s in container.streams if s.type in ("video", "audio")]
        for stream in wanted:
            if stream.type == "video":
                shown[stream.index] = FirstShown(stream)
                waiting[stream.index] = []
        for packet in container.demux(wanted):
            pts = packet.pts
            if packet.size == 0:
                continue
            index = packet.stream.index
            if index in shown:
                shown[index].feed(packet)
            # a discarded packet (before an MP4 edit list's start) is decoded, never played
            if pts is None or packet.time_base is None or packet.is_discard:
                continue
            span = spans.setdefault(index, _Span(packet.time_base))
            end = pts + (packet.duration or 0)
            if index not in shown:
                span.add(pts, end)
            elif index not in waiting:
                if shown[index].shows(pts):
                    span.add(pts, end)
            else:
                waiting[index].append((pts, end))
                if shown[index].found:
                    _add_shown(span, waiting.pop(index), shown[index])
    for index, held in waiting.items():
        if index in spans:
            _add_shown(spans[index], held, shown[index])
    return {index: span.extent() for index, span in spans.items() if span.packets}


def _add_shown(span: _Span, held: list[tuple[int, int]], first: FirstShown) -> None:
    for pts, end in held:
        if first.shows(pts):
            span.add(pts, end)


def _seconds(ticks: int, time_base: Fraction) -> float:
    return float(ticks * time_base)
