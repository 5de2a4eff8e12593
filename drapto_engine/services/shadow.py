"""Shadow checks: a flag in shadow state has its other strategy's answer computed too,
and the difference is reported as a Discrepancy event (see core/flags.py)."""

from __future__ import annotations

from drapto_engine.core.events import Discrepancy
from drapto_engine.core.models import EncodeSettings, Segment, VideoAnalysis
from drapto_engine.services.encoding.plan import VideoPlan
from drapto_engine.services.segmentation import fixed_segments

SHADOW_CUT_TOLERANCE = 2  # frames: the scene detector's own accuracy


def crop_discrepancy(job: str, plan: VideoPlan, analysis: VideoAnalysis) -> Discrepancy:
    """Shadowed crop detection: detected crop against none; the metric is the share of
    the frame's area the two disagree on (0: no bars found)."""
    crop = analysis.crop
    video = analysis.media.video
    frame_area = video.width * video.height
    cropped_area = frame_area - crop.width * crop.height if crop else 0
    used = plan.crop.filter() if plan.crop else "none"
    other = "none" if plan.crop else (crop.filter() if crop else "none")
    return Discrepancy(
        job=job,
        flag="crop_detection",
        metric=cropped_area / frame_area if frame_area else 0.0,
        used=used,
        shadow=other,
    )


def scene_discrepancy(
    job: str, planned: list[Segment], times: list[float], settings: EncodeSettings
) -> Discrepancy:
    """Shadowed scene segmentation: scene-cut boundaries against fixed-length ones; the
    metric is the share of boundaries (of both plans) that the other plan lacks."""
    used = [s.start_frame for s in planned[1:]]
    fixed = [s.start_frame for s in fixed_segments(times, length_s=settings.max_segment_s)[1:]]
    if not settings.scene_detection:
        used, fixed = fixed, used

    def unmatched(mine: list[int], theirs: list[int]) -> int:
        return sum(all(abs(m - t) > SHADOW_CUT_TOLERANCE for t in theirs) for m in mine)

    total = len(used) + len(fixed)
    differing = unmatched(used, fixed) + unmatched(fixed, used)
    return Discrepancy(
        job=job,
        flag="scene_segmentation",
        metric=differing / total if total else 0.0,
        used=" ".join(map(str, used)) or "no cuts",
        shadow=" ".join(map(str, fixed)) or "no cuts",
    )
