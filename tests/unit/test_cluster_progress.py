"""A worker's progress message comes back as the same Progress; anything else is ignored."""

from __future__ import annotations

from drapto_engine.cluster.tasks import progress_message, progress_of
from drapto_engine.infrastructure.ffmpeg.progress import Progress


def test_progress_survives_the_round_trip() -> None:
    progress = Progress(frame=48, fps=31.5, out_time_s=2.0, speed=1.3, ended=False)
    message = progress_message("drapto-segment-x-3", progress)
    assert progress_of({**message, "worker": "tls://10.0.0.5:1"}) == (
        "drapto-segment-x-3",
        progress,
    )


def test_other_events_are_ignored() -> None:
    assert progress_of("text") is None
    assert progress_of({"key": "k", "frame": 1}) is None
