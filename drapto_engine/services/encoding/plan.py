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
    def turn(self) -> int:
        """The clockwise quarter turns (0 to 3) a player gives the picture: the source's
        display matrix (PyAV's rotation is counter-clockwise degrees)."""
        return (-self.analysis.media.video.rotation // 90) % 4

    @property
    def coded_size(self) -> tuple[int, int]:
        """The encoded picture's size before it is turned: the crop's, else the source's."""
        video = self.analysis.media.video
        return (self.crop.width, self.crop.height) if self.crop else (video.width, video.height)

    @property
    def width(self) -> int:
        """The output's width as a player shows the source: turned a quarter, it is the
        coded height."""
        return self.coded_size[self.turn % 2]

    @property
    def height(self) -> int:
        return self.coded_size[1 - self.turn % 2]
