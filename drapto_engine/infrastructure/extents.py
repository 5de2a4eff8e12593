"""Where each stream of a file starts and ends, and how many packets it has (demux only)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av


@dataclass(frozen=True)
class Extent:
    packets: int
    start_s: float
    end_s: float

    @property
    def duration_s(self) -> float:
        return max(0.0, self.end_s - self.start_s)


def stream_extents(path: Path) -> dict[int, Extent]:
    """Blocking: read every packet once (no decoding) and measure each stream."""
    counts: dict[int, int] = {}
    starts: dict[int, float] = {}
    ends: dict[int, float] = {}
    with av.open(str(path)) as container:
        wanted = [s for s in container.streams if s.type in ("video", "audio")]
        for packet in container.demux(wanted):
            if packet.size == 0 or packet.pts is None or packet.time_base is None:
                continue
            index = packet.stream.index
            t0 = float(packet.pts * packet.time_base)
            t1 = float((packet.pts + (packet.duration or 0)) * packet.time_base)
            counts[index] = counts.get(index, 0) + 1
            starts[index] = min(starts.get(index, t0), t0)
            ends[index] = max(ends.get(index, t1), t1)
    return {i: Extent(counts[i], starts[i], ends[i]) for i in counts}
