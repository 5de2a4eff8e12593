"""Presentation times of every video frame, from the packets alone (no decoding)."""

from __future__ import annotations

from pathlib import Path

import av


def frame_times(path: Path) -> list[float]:
    """Sorted frame times (s) of the first video stream, relative to the container start."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        start = (container.start_time or 0) / av.time_base
        times = [
            float(packet.pts * packet.time_base) - start
            for packet in container.demux(stream)
            if packet.size and packet.pts is not None and packet.time_base is not None
        ]
    times.sort()
    return times
