"""A worker's progress and probes messages come back as sent; anything else is ignored."""

from __future__ import annotations

import pytest

from drapto_engine.cluster.tasks import probes_message, probes_of, progress_message, progress_of
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


def test_probes_survive_the_round_trip() -> None:
    message = probes_message("drapto-segment-x-3", [[36, 94.25], [44, 91.5]])
    assert probes_of({**message, "worker": "tls://10.0.0.5:1"}) == (
        "drapto-segment-x-3",
        [[36, 94.25], [44, 91.5]],
    )
    as_dask_reads_it = {"key": "k", "probes": ((36, 94.25), (44, 91.5))}  # msgpack: tuples
    assert probes_of(as_dask_reads_it) == ("k", [[36, 94.25], [44, 91.5]])


@pytest.mark.parametrize(
    "probes",
    [
        "36:94",
        [[36]],
        [[36.0, 94.0]],  # a CRF is a whole number
        [[True, 94.0]],
        [[0, 94.0]],
        [[64, 94.0]],
        [[36, float("nan")]],
        [[36, 101.0]],
        [[36, "94"]],
        [[36, 94.0]] * 9,  # more than a search runs
    ],
)
def test_a_workers_probes_are_checked_not_trusted(probes: object) -> None:
    assert probes_of({"key": "k", "probes": probes}) is None
    assert probes_of({"probes": [[36, 94.0]]}) is None  # no key
