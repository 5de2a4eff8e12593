"""Which packets of a video stream a decoder shows.

A recording that starts mid-stream (a TV recording, a cut MPEG-TS) begins with packets
whose reference frames, or parameter sets, were never received: every decoder drops
them, and shows nothing before the first frame it can decode. Everything that counts or
times frames from the packets alone (probing, the frame times the planner cuts on, the
extents, validation's frame times, the packets shipped to a worker) leaves those out by
one rule: a packet is shown when it shows at or after the first frame the decoder
gives. The decoder is fed the packets in decode order only until that frame comes out,
so a file that starts on a keyframe costs its first few frames decoded (the decoder's
delay), a few milliseconds to a tenth of a second at 1080p.
"""

from __future__ import annotations

import contextlib
from typing import Any

import av


class FirstShown:
    """Feed it a video stream's packets in decode order (`feed`), then ask `shows`.

    It decodes with the stream's own decoder context, so the caller must not decode
    that stream itself."""

    def __init__(self, stream: Any) -> None:
        self._codec = stream.codec_context
        self._pts: int | None = None
        # without a decoder (a codec this ffmpeg cannot decode) every packet counts
        self._found = self._codec is None
        self._flushed = False

    def feed(self, packet: Any) -> None:
        if self._found:
            return
        try:
            frames = self._codec.decode(packet)
        except av.error.FFmpegError:
            return  # a packet no decoder can use (a reference or parameter set is missing)
        self._take(frames)

    def _take(self, frames: list[Any]) -> None:
        for frame in frames:
            self._found = True
            self._pts = frame.pts  # None: the decoder gives no time, so nothing is left out
            return

    @property
    def found(self) -> bool:
        """Whether the first frame came out (`shows` is final for every packet)."""
        return self._found

    @property
    def pts(self) -> int | None:
        """The first shown frame's pts; None when every packet counts (no frame came out,
        or it came out without a time)."""
        if not self._found and not self._flushed:
            self._flushed = True  # a stream shorter than the decoder's delay
            with contextlib.suppress(av.error.FFmpegError):
                self._take(self._codec.decode(None))
        return self._pts

    def shows(self, pts: int | None) -> bool:
        """Whether the packet with this pts is shown (call after the last `feed`)."""
        first = self.pts
        return first is None or pts is None or pts >= first
