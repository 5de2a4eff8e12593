"""Domain models: what a media file is, what analysis found, what gets encoded.

Values are frozen pydantic models so they can be hashed, compared, stored as JSON
and sent over the wire unchanged.
"""

from __future__ import annotations

from enum import StrEnum
from fractions import Fraction
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class Value(BaseModel):
    """Base for immutable value models."""

    model_config = ConfigDict(defer_build=True, frozen=True, extra="forbid")


class DynamicRange(StrEnum):
    SDR = "sdr"
    HDR10 = "hdr10"
    HLG = "hlg"
    DOLBY_VISION = "dolby_vision"


class ResolutionClass(StrEnum):
    SD = "SD"
    HD = "HD"
    UHD = "UHD"


class Rational(Value):
    """An exact ratio such as a frame rate (24000/1001) or an aspect ratio."""

    num: int
    den: int

    @classmethod
    def of(cls, value: Fraction | int | str) -> Rational:
        f = Fraction(value)
        return cls(num=f.numerator, den=f.denominator)

    def as_fraction(self) -> Fraction:
        return Fraction(self.num, self.den) if self.den else Fraction(0)

    def __float__(self) -> float:
        return float(self.as_fraction())

    def __str__(self) -> str:
        return f"{self.num}/{self.den}"


class MasteringDisplay(Value):
    """SMPTE ST 2086 mastering display colour volume (chromaticities in CIE xy, luminance in nits)."""

    red: tuple[float, float]
    green: tuple[float, float]
    blue: tuple[float, float]
    white_point: tuple[float, float]
    min_luminance: float
    max_luminance: float


class ContentLight(Value):
    """CTA-861.3 content light level."""

    max_cll: int
    max_fall: int


class Dispositions(Value):
    """A stream's disposition flags, named as ffmpeg's `-disposition` option names them."""

    default: bool = False
    forced: bool = False
    comment: bool = False
    hearing_impaired: bool = False
    visual_impaired: bool = False
    original: bool = False
    dub: bool = False
    lyrics: bool = False
    karaoke: bool = False
    clean_effects: bool = False
    captions: bool = False
    descriptions: bool = False
    metadata: bool = False
    dependent: bool = False
    still_image: bool = False

    def names(self) -> list[str]:
        """The flags that are set, in field order."""
        return [name for name, value in self if value]


class VideoStream(Value):
    index: int
    codec: str
    width: int
    height: int
    sar: Rational = Rational(num=1, den=1)
    dar: Rational | None = None
    rotation: int = 0
    display_matrix: tuple[int, ...] | None = None
    """The 3x3 display matrix (16.16 fixed point, row by row) a player turns and flips
    the picture by; None: shown as coded."""
    field_order: str | None = None  # progressive, tt, bb, tb or bt as the stream says; None: unsaid
    pix_fmt: str
    bit_depth: int
    frame_rate: Rational
    variable_frame_rate: bool = False
    frame_count: int
    color_primaries: str | None = None
    color_transfer: str | None = None
    color_matrix: str | None = None
    color_range: str | None = None
    mastering_display: MasteringDisplay | None = None
    content_light: ContentLight | None = None
    language: str | None = None
    title: str | None = None
    dispositions: Dispositions = Dispositions()


class AudioStream(Value):
    index: int
    codec: str
    channels: int
    layout: str | None = None
    sample_rate: int
    language: str | None = None
    title: str | None = None
    dispositions: Dispositions = Dispositions()
    start_time_s: float = 0.0
    duration_s: float | None = None


class SubtitleStream(Value):
    index: int
    codec: str
    language: str | None = None
    title: str | None = None
    dispositions: Dispositions = Dispositions()


class AttachmentStream(Value):
    index: int
    filename: str | None = None
    mimetype: str | None = None
    cover: bool = False
    """Cover art: a picture ffmpeg shows as an attached_pic video stream (a Matroska image
    attachment, an MP4 or audio file's cover). Its filename and mimetype are the source's
    own, else derived from its codec (cover.jpg, image/jpeg)."""


class ExtraVideoStream(Value):
    """A video stream besides the main one that is not cover art (a second angle, a
    picture-in-picture): drapto encodes one video stream, so it is not kept."""

    index: int
    codec: str
    width: int
    height: int
    title: str | None = None

    def describe(self) -> str:
        title = f' "{self.title}"' if self.title else ""
        return f"video stream #{self.index} ({self.codec} {self.width}x{self.height}{title})"


class Chapter(Value):
    start_s: float
    end_s: float
    title: str | None = None


class DolbyVisionInfo(Value):
    """What the DOVI configuration record (or the first frame's RPU) says."""

    profile: int
    level: int | None = None
    bl_compat_id: int | None = None
    rpu: bool = True
    el: bool = False
    bl: bool = True


class MediaInfo(Value):
    path: Path
    container: str
    size_bytes: int
    duration_s: float
    start_time_s: float = 0.0
    video: VideoStream
    audio: tuple[AudioStream, ...] = ()
    subtitles: tuple[SubtitleStream, ...] = ()
    attachments: tuple[AttachmentStream, ...] = ()
    """Every attachment, cover art included (`cover`)."""
    extra_video: tuple[ExtraVideoStream, ...] = ()
    chapters: tuple[Chapter, ...] = ()
    dolby_vision: DolbyVisionInfo | None = None
    metadata: dict[str, str] = Field(default_factory=dict)


class Crop(Value):
    """A crop rectangle in source pixels (even sizes and offsets)."""

    width: int
    height: int
    x: int
    y: int

    def filter(self) -> str:
        return f"crop={self.width}:{self.height}:{self.x}:{self.y}"


class Interlace(Value):
    """Whether the picture is made of interlaced fields: the stream's own field order,
    checked by ffmpeg's idet filter on sampled frames (the flag may say either wrongly)."""

    field_order: str | None  # as the stream says (VideoStream.field_order)
    frames_checked: int
    interlaced_frames: int  # idet's multi-frame verdict: tff or bff
    top_first: bool  # the majority of idet's interlaced verdicts
    deinterlace: bool

    def filter(self) -> str:
        """bwdif, one output frame per input frame (frame count and times unchanged), on
        every frame (the flags may lie), with the parity idet found."""
        parity = "tff" if self.top_first else "bff"
        return f"bwdif=mode=send_frame:parity={parity}:deint=all"

    def describe(self) -> str:
        said = {
            "progressive": "flagged progressive",
            "tt": "flagged top field first",
            "tb": "flagged top field first",
            "bb": "flagged bottom field first",
            "bt": "flagged bottom field first",
        }.get(self.field_order or "", "field order unflagged")
        found = f"idet: {self.interlaced_frames} of {self.frames_checked} frames interlaced"
        if self.deinterlace:
            order = "top" if self.top_first else "bottom"
            return f"deinterlaced with bwdif, {order} field first ({said}; {found})"
        return f"progressive ({said}; {found})"


class VideoAnalysis(Value):
    """What detection decided about a file's video."""

    media: MediaInfo
    dynamic_range: DynamicRange
    dolby_vision: DolbyVisionInfo | None = None
    crop: Crop | None = None
    interlace: Interlace | None = None  # None: not checked (flagged progressive, or UHD)
    resolution_class: ResolutionClass
    default_crf: int


class EncodeDefaults(Value):
    """The defaults of upstream drapto, one place for all of them."""

    preset: int = 6
    crf_sd: int = 24
    crf_hd: int = 26
    crf_uhd: int = 26
    svtav1_params: str = "tune=0:ac-bias=0.1:enable-variance-boost=0:keyint=10s:scd=1:scm=0"
    min_segment_s: float = 5.0
    max_segment_s: float = 20.0


DEFAULTS = EncodeDefaults()


class EncodeSettings(Value):
    """Settings that shape an encode's output (a changed one starts a job afresh)."""

    preset: int = Field(default=DEFAULTS.preset, ge=-2, le=13)  # as core.jobs.PRESET_MIN
    """SVT-AV1 preset: lower is slower and smaller."""
    crf: int | None = Field(default=None, ge=0, le=63)
    """Constant rate factor; None takes the resolution class default."""
    target_vmaf: float | None = Field(default=None, ge=50, le=99)  # as core.jobs.TargetVmaf
    """Each segment's CRF chosen to land its measured mean VMAF on this; None: fixed CRF."""
    crf_range: tuple[int, int] = (10, 63)  # as core.jobs.DEFAULT_CRF_RANGE
    """The CRFs the target_vmaf search chooses from."""
    target_quality: bool = True
    """The target_quality flag: off, target_vmaf is ignored and the CRF is fixed."""
    svtav1_params: str = DEFAULTS.svtav1_params
    """Extra SVT-AV1 parameters, colon separated."""
    min_segment_s: float = Field(default=DEFAULTS.min_segment_s, gt=0)
    """Shortest segment the planner makes (a trailing shorter one is merged)."""
    max_segment_s: float = Field(default=DEFAULTS.max_segment_s, gt=0)
    """Longest segment; longer scenes are split evenly."""
    crop: bool = True
    """Apply the detected crop."""
    scene_detection: bool = True
    """Cut at scene changes; off gives fixed-length segments."""
    segmented: bool = True
    """Encode in parallel segments; off gives one whole-file encode."""
    hdr10_fallback: bool = False
    """Encode a Dolby Vision source whose profile cannot be kept as plain HDR10 instead of failing."""
    segmented_dolby_vision: bool = True
    """Encode Dolby Vision in parallel segments; off gives one whole-file run (the rollback path)."""
    dolby_vision_crop: bool = False
    """Crop Dolby Vision sources too (the RPU then still describes the uncropped frame)."""


class SegmentState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class Segment(Value):
    """A frame range of the source, [start_frame, end_frame)."""

    index: int
    start_frame: int
    end_frame: int
    start_s: float
    end_s: float

    @property
    def frame_count(self) -> int:
        return self.end_frame - self.start_frame

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s
