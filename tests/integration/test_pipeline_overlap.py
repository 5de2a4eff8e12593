"""Stages that need nothing from each other run at once: the scene scan beside analysis."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import FAST, make_engine
from mediagen import cut_frames

from drapto_engine.core.events import SegmentPlanned
from drapto_engine.core.jobs import EntryStatus

pytestmark = pytest.mark.slow


async def test_scene_scan_runs_while_analysis_does(
    tmp_path: Path, make_media: Any, ffmpeg: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import av

    import drapto_engine.services.orchestrator as orchestrator
    import drapto_engine.services.segmentation as segmentation

    scenes = [1.6, 2.4, 2.0]
    source = make_media("overlap.mkv", size=(160, 90), cuts=scenes, gop=25)
    scanning = threading.Event()
    real_detect = segmentation.detect_cuts

    async def detect(*args: Any, **kwargs: Any) -> list[int]:
        scanning.set()
        return await real_detect(*args, **kwargs)

    # Analysis waits for the scan to begin: it does within moments when the two
    # overlap, and never (until the wait gives up) when the scan waits for analysis.
    scan_began_during_analysis: list[bool] = []
    real_analyze = orchestrator.analyze_media

    def analyze(*args: Any, **kwargs: Any) -> Any:
        scan_began_during_analysis.append(scanning.wait(timeout=10))
        return real_analyze(*args, **kwargs)

    monkeypatch.setattr(segmentation, "detect_cuts", detect)
    monkeypatch.setattr(orchestrator, "analyze_media", analyze)
    output = tmp_path / "overlap.av1.mkv"
    session = make_engine(tmp_path, ffmpeg)
    async with session.engine.running():
        [done] = await session.run([(source, output)], FAST)
    assert done.status is EntryStatus.DONE, done.error
    assert scan_began_during_analysis == [True]
    # The plan the early scan made is the scene plan: segments open at the cuts.
    starts = {e.start_frame for e in session.of(SegmentPlanned)}
    assert set(cut_frames(scenes)) <= starts
    with av.open(str(output)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert frames == sum(round(s * 25) for s in scenes)
    session.engine.close()
