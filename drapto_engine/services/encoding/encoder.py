"""The encoder protocol: what builds one segment's ffmpeg command for a dynamic range path.

It lives with the encoders (svt.py, which also chooses one for a plan: encoder_for), not
in the core: its signature names VideoPlan, and the core knows nothing above itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from drapto_engine.core.models import Segment
from drapto_engine.services.encoding.plan import VideoPlan


class SegmentEncoder(Protocol):
    """Builds the ffmpeg command that encodes one segment for one dynamic range path."""

    name: str

    def segment_argv(
        self, plan: VideoPlan, segment: Segment, output: Path, threads: int
    ) -> list[str]: ...
