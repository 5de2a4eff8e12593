"""What every segment of one job shares: source, analysis, resolved settings, encoder."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from drapto_engine.core.models import (
    Crop,
    DynamicRange,
    EncodeSettings,
    Interlace,
    VideoAnalysis,
)
from drapto_engine.services.encoding.encoder import IEncoder


def segments_video(settings: EncodeSettings, dolby_vision: bool) -> bool:
    """Whether the video is encoded in segments (kept Dolby Vision only on request)."""
    return settings.segmented and (settings.segmented_dolby_vision or not dolby_vision)


@dataclass(frozen=True)
class VideoPlan:
    ffmpeg: str
    source: Path
    analysis: VideoAnalysis
    preset: int
    crf: int
    svtav1_params: str
    crop: Crop | None
    dolby_vision: bool
    segmented: bool
    warnings: tuple[str, ...] = field(default=())
    interlace: Interlace | None = None  # set only when the video is to be deinterlaced

    @classmethod
    def make(cls, ffmpeg: str, analysis: VideoAnalysis, settings: EncodeSettings) -> VideoPlan:
        """Resolve the job's settings against what detection found (may raise for DV)."""
        from drapto_engine.services.encoding.dolby_vision import decide

        warnings: list[str] = []
        dolby_vision = False
        if analysis.dynamic_range is DynamicRange.DOLBY_VISION and analysis.dolby_vision:
            decision = decide(analysis.dolby_vision, analysis.media.path, settings.hdr10_fallback)
            dolby_vision = decision.keep
            if decision.warning:
                warnings.append(decision.warning)
        media = analysis.media
        warnings += [
            f"{extra.describe()} is not kept: drapto encodes one video stream "
            f"(#{media.video.index})"
            for extra in media.extra_video
        ]
        crop = analysis.crop if settings.crop else None
        if dolby_vision and crop is not None and not settings.dolby_vision_crop:
            warnings.append(
                f"not cropping ({crop.filter()} detected): the Dolby Vision RPU describes the "
                "full frame; turn on dolby_vision_crop to crop anyway"
            )
            crop = None
        return cls(
            ffmpeg=ffmpeg,
            source=analysis.media.path,
            analysis=analysis,
            preset=settings.preset,
            crf=settings.crf if settings.crf is not None else analysis.default_crf,
            svtav1_params=settings.svtav1_params,
            crop=crop,
            dolby_vision=dolby_vision,
            segmented=segments_video(settings, dolby_vision),
            warnings=tuple(warnings),
            interlace=analysis.interlace
            if analysis.interlace and analysis.interlace.deinterlace
            else None,
        )

    @property
    def encoder(self) -> IEncoder:
        from drapto_engine.services.encoding.dolby_vision import DolbyVisionEncoder
        from drapto_engine.services.encoding.svt import SvtEncoder

        return DolbyVisionEncoder() if self.dolby_vision else SvtEncoder()

    @property
    def width(self) -> int:
        return self.crop.width if self.crop else self.analysis.media.video.width

    @property
    def height(self) -> int:
        return self.crop.height if self.crop else self.analysis.media.video.height
