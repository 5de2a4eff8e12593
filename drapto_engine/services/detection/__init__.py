"""Detection: dynamic range, Dolby Vision, crop and resolution class of a file."""

from __future__ import annotations

import asyncio
from pathlib import Path

from drapto_engine.core.models import MediaInfo, VideoAnalysis
from drapto_engine.infrastructure.probe import has_dovi_rpu_on_first_frame, probe
from drapto_engine.services.detection.crop import detect_crop
from drapto_engine.services.detection.dynamic_range import classify
from drapto_engine.services.detection.interlace import detect_interlace
from drapto_engine.services.detection.resolution import default_crf, resolution_class


def analyze_media(media: MediaInfo, *, crop_detection: bool = True) -> VideoAnalysis:
    """Blocking analysis of an already probed file."""
    rpu = media.dolby_vision is None and has_dovi_rpu_on_first_frame(media.path)
    kind, dovi = classify(media, rpu)
    crop = detect_crop(media.path, kind, media.duration_s) if crop_detection else None
    cls = resolution_class(media.video.width)
    return VideoAnalysis(
        media=media,
        dynamic_range=kind,
        dolby_vision=dovi,
        crop=crop,
        interlace=detect_interlace(media.path, media.video, media.duration_s),
        resolution_class=cls,
        default_crf=default_crf(cls),
    )


async def analyze_video(path: Path, ffmpeg: str, *, crop_detection: bool = True) -> VideoAnalysis:
    """Probe and analyse a file without blocking the event loop."""
    media = await asyncio.to_thread(probe, path, ffmpeg)
    return await asyncio.to_thread(analyze_media, media, crop_detection=crop_detection)
