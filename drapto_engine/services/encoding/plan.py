"""What every segment of one job shares: source, analysis, resolved settings (its
encoder: svt.encoder_for)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from drapto_engine.core.errors import MediaError
from drapto_engine.core.models import (
    Crop,
    DynamicRange,
    EncodeSettings,
    Interlace,
    VideoAnalysis,
)
from drapto_engine.services.encoding.dolby_vision import decide


def segments_video(settings: EncodeSettings, dolby_vision: bool) -> bool:
    """Whether the video is encoded in segments (kept Dolby Vision only on request)."""
    return settings.segmented and (settings.segmented_dolby_vision or not dolby_vision)


@dataclass(frozen=True)
class Orientation:
    """How a player shows the coded picture: the filters that make the pixels so, and
    whether they swap its width and height."""

    filters: tuple[str, ...] = ()
    swaps: bool = False


def orientation(matrix: Sequence[int] | None, path: Path) -> Orientation:
    """The display matrix as ffmpeg's own player logic applies it (fftools'
    get_rotation and its autorotate filters: a quarter turn is a transpose, with a
    flip where the matrix mirrors). A turn other than a quarter is refused."""
    if matrix is None:
        return Orientation()
    m = [value / 65536 for value in matrix]
    scale0, scale1 = math.hypot(m[0], m[3]), math.hypot(m[1], m[4])
    if scale0 == 0 or scale1 == 0:
        return Orientation()
    theta = float(round(math.degrees(math.atan2(m[1] / scale1, m[0] / scale0))))
    theta -= 360 * math.floor(theta / 360 + 0.9 / 360)
    if abs(theta - 90) < 1:
        return Orientation(("transpose=cclock_flip" if m[3] > 0 else "transpose=clock",), True)
    if abs(theta - 180) < 1:
        flips = ("hflip",) * (m[0] < 0) + ("vflip",) * (m[4] < 0)
        return Orientation(flips)
    if abs(theta - 270) < 1:
        return Orientation(("transpose=clock_flip" if m[3] < 0 else "transpose=cclock",), True)
    if abs(theta) < 1:
        return Orientation(("vflip",) * (m[4] < 0))
    raise MediaError(
        f"its display matrix turns the picture {(360 - theta) % 360:.0f} degrees: "
        "drapto turns pictures by quarter turns only",
        path,
    )


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
    target_vmaf: float | None = None
    """Each segment's CRF searched for this VMAF (services/quality); `crf` is then the
    fixed CRF it rolls back to. None: every segment at `crf`."""
    crf_range: tuple[int, int] = (10, 63)  # as core.jobs.DEFAULT_CRF_RANGE
    vmaf_offset: float = 0.0
    """What the job's finished segments learned: finals score this far above their
    probes' line (quality.search.learned_offset); the next segment's first final uses it."""
    vmaf_start: int | None = None
    """The CRF the job's finished segments were kept at (quality.search.learned_start):
    the next segment's first probe. None: the middle of the CRF range."""

    @classmethod
    def make(cls, ffmpeg: str, analysis: VideoAnalysis, settings: EncodeSettings) -> VideoPlan:
        """Resolve the job's settings against what detection found (may raise for DV)."""
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
        crf = settings.crf if settings.crf is not None else analysis.default_crf
        if settings.target_vmaf is not None and not settings.target_quality:
            warnings.append(
                f"target VMAF {settings.target_vmaf:g} is not used: the target_quality flag "
                f"is off, so every segment is encoded at CRF {crf}"
            )
        return cls(
            ffmpeg=ffmpeg,
            source=analysis.media.path,
            analysis=analysis,
            preset=settings.preset,
            crf=crf,
            svtav1_params=settings.svtav1_params,
            crop=crop,
            dolby_vision=dolby_vision,
            segmented=segments_video(settings, dolby_vision),
            warnings=tuple(warnings),
            interlace=analysis.interlace
            if analysis.interlace and analysis.interlace.deinterlace
            else None,
            target_vmaf=settings.target_vmaf if settings.target_quality else None,
            crf_range=settings.crf_range,
        )

    @property
    def orientation(self) -> Orientation:
        """How a player shows the source (its display matrix), done to the pixels."""
        return orientation(self.analysis.media.video.display_matrix, self.source)

    @property
    def coded_size(self) -> tuple[int, int]:
        """The encoded picture's size before it is turned: the crop's, else the source's."""
        video = self.analysis.media.video
        return (self.crop.width, self.crop.height) if self.crop else (video.width, video.height)

    @property
    def width(self) -> int:
        """The output's width as a player shows the source: turned a quarter, it is the
        coded height."""
        return self.coded_size[self.orientation.swaps]

    @property
    def height(self) -> int:
        return self.coded_size[not self.orientation.swaps]
