"""Checks an output before it is put in place; each failed check is named."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av

from drapto_engine.core.errors import DraptoError
from drapto_engine.core.models import ContentLight, Dispositions, MasteringDisplay, MediaInfo
from drapto_engine.infrastructure.extents import stream_extents
from drapto_engine.infrastructure.hdr_probe import (
    count_rpu_frames,
    ffmpeg_input_dump,
    parse_dovi_record,
)
from drapto_engine.infrastructure.probe import probe
from drapto_engine.infrastructure.shown import FirstShown
from drapto_engine.services.segmentation.timestamps import main_video_stream

log = logging.getLogger(__name__)

AUDIO_TOLERANCE_S = 0.1
# AV1 stores chromaticities in 0.16 fixed point and luminance in 24.8 (max) and
# 18.14 (min) fixed point: 0.0001 nits comes back as 0.000122.
XY_TOLERANCE = 2e-4
LUMINANCE_TOLERANCE = 0.01
LUMINANCE_STEP = 1 / 16384
DOLBY_VISION_AV1_PROFILE = 10


class Failure(str):
    """A failed check's sentence that names its check (`check`), so that a rollback
    can tell whether the failure could come from the strategy it would turn off
    (core/flags.py: `Flag.cannot_fail`). A plain sentence could come from any."""

    check: str

    def __new__(cls, text: str, check: str) -> Failure:
        failure = super().__new__(cls, text)
        failure.check = check
        return failure


@dataclass(frozen=True)
class ExpectedAudio:
    channels: int
    duration_s: float


@dataclass(frozen=True)
class Expected:
    width: int
    """The width a player shows (the source's display matrix applied)."""
    height: int
    frames: int
    duration_s: float
    frame_duration_s: float
    audio: list[ExpectedAudio] = field(default_factory=list)
    subtitles: int = 0
    chapters: int = 0
    attachments: int = 0
    color_primaries: str | None = None
    color_transfer: str | None = None
    mastering_display: MasteringDisplay | None = None
    content_light: ContentLight | None = None
    dolby_vision_compat_id: int | None = None
    """The Dolby Vision compatibility id the output must carry; None: no Dolby Vision."""
    dispositions: dict[str, tuple[Dispositions, ...]] | None = None
    """The source's dispositions per kind ("video", "audio", "subtitle"), each track in
    output order; compared as far as Matroska keeps them. None: not checked."""
    frame_times: tuple[Fraction, ...] | None = None
    """The source's frame times (`source_frame_times`); each output frame must sit at its
    source frame's time rounded to the output's time base. None: not checked."""


# The flags Matroska stores: FlagDefault, FlagForced, FlagCommentary, FlagHearingImpaired,
# FlagVisualImpaired, FlagOriginal (1: original, 0: dub) and, for subtitles only,
# FlagTextDescriptions. Others (captions, lyrics...) have no place in the file.
MATROSKA_DISPOSITIONS = (
    "default",
    "forced",
    "comment",
    "hearing_impaired",
    "visual_impaired",
    "original",
    "dub",
)
MATROSKA_SUBTITLE_DISPOSITIONS = ("descriptions",)


def _kept(d: Dispositions, kind: str) -> str:
    names: tuple[str, ...] = MATROSKA_DISPOSITIONS
    if kind == "subtitle":
        names += MATROSKA_SUBTITLE_DISPOSITIONS
    return "+".join(name for name in names if getattr(d, name)) or "none"


def check_dispositions(
    media: MediaInfo, expected: dict[str, tuple[Dispositions, ...]]
) -> list[str]:
    """Each track's dispositions as its source track had them (those Matroska keeps)."""
    found: dict[str, tuple[Dispositions, ...]] = {
        "video": (media.video.dispositions,),
        "audio": tuple(a.dispositions for a in media.audio),
        "subtitle": tuple(s.dispositions for s in media.subtitles),
    }
    failures: list[str] = []
    for kind, wanted in expected.items():
        for position, (got, want) in enumerate(zip(found.get(kind, ()), wanted, strict=False)):
            if _kept(got, kind) != _kept(want, kind):
                failures.append(
                    f"{kind} track {position} dispositions {_kept(got, kind)}, "
                    f"source {_kept(want, kind)}"
                )
    return failures


def _round_half_away(value: Fraction) -> int:
    """av_rescale_q's rounding (AV_ROUND_NEAR_INF): halves go away from zero."""
    whole = abs(value.numerator) * 2 + value.denominator
    magnitude = whole // (2 * value.denominator)
    return magnitude if value >= 0 else -magnitude


def _packet_ticks(path: Path, index: int | None) -> tuple[list[int], Fraction, int]:
    """Sorted pts of the video packets that show a frame (see FirstShown), their time
    base, and the container's start in that time base (as ffmpeg shifts an input by it)."""
    with av.open(str(path)) as container:
        stream = main_video_stream(container, index)
        time_base = Fraction(stream.time_base or Fraction(1, 1000))
        start_us = container.start_time or 0
        start = _round_half_away(Fraction(start_us, 1_000_000) / time_base)
        first = FirstShown(stream)
        ticks: list[int] = []
        for p in container.demux(stream):
            if p.size:
                first.feed(p)
                if p.pts is not None and not p.is_discard:
                    ticks.append(p.pts)
        ticks = sorted(t for t in ticks if first.shows(t))
    return ticks, time_base, start


def source_frame_times(path: Path, index: int | None = None) -> tuple[Fraction, ...]:
    """Blocking: the exact time of every frame of the video stream `index` (default: the
    main one), in seconds from the container's start, read from the packets alone."""
    ticks, time_base, start = _packet_ticks(path, index)
    return tuple((t - start) * time_base for t in ticks)


def check_frame_times(path: Path, index: int | None, source: Sequence[Fraction]) -> list[str]:
    """Each output frame at its source frame's time, to the output's time base.

    The output keeps the source's clock (times from the source container's start), so
    its own timestamps are compared as written."""
    ticks, time_base, _ = _packet_ticks(path, index)
    wanted = [_round_half_away(t / time_base) for t in source]
    wrong = [i for i, (got, want) in enumerate(zip(ticks, wanted, strict=False)) if got != want]
    if not wrong:
        return []
    first = wrong[0]
    return [
        f"frame times: {len(wrong)} of {min(len(ticks), len(wanted))} frames are off the "
        f"source's (first: frame {first} at {float(ticks[first] * time_base):.6f} s, "
        f"source {float(source[first]):.6f} s)"
    ]


def _same_mastering(a: MasteringDisplay, b: MasteringDisplay) -> bool:
    points = zip(
        (a.red, a.green, a.blue, a.white_point),
        (b.red, b.green, b.blue, b.white_point),
        strict=True,
    )
    if any(abs(p[0] - q[0]) > XY_TOLERANCE or abs(p[1] - q[1]) > XY_TOLERANCE for p, q in points):
        return False
    return all(
        abs(x - y) <= max(LUMINANCE_TOLERANCE * abs(y), LUMINANCE_STEP)
        for x, y in ((a.min_luminance, b.min_luminance), (a.max_luminance, b.max_luminance))
    )


def check_hdr(path: Path, media: MediaInfo, expected: Expected, ffmpeg: str | None) -> list[str]:
    """Transfer, primaries, HDR10 metadata and Dolby Vision as the source had them."""
    failures: list[str] = []
    v = media.video
    if v.color_transfer != expected.color_transfer:
        failures.append(f"transfer is {v.color_transfer}, source {expected.color_transfer}")
    if v.color_primaries != expected.color_primaries:
        failures.append(f"primaries are {v.color_primaries}, source {expected.color_primaries}")
    if expected.mastering_display is None and v.mastering_display is not None:
        failures.append("output gained mastering display metadata the source lacks")
    elif expected.mastering_display is not None and (
        v.mastering_display is None
        or not _same_mastering(v.mastering_display, expected.mastering_display)
    ):
        failures.append(
            f"mastering display {v.mastering_display}, source {expected.mastering_display}"
        )
    if v.content_light != expected.content_light:
        failures.append(f"content light level {v.content_light}, source {expected.content_light}")
    record = parse_dovi_record(ffmpeg_input_dump(ffmpeg, path)) if ffmpeg else None
    if expected.dolby_vision_compat_id is None:
        if record is not None:
            failures.append(f"output gained Dolby Vision (profile {record.profile})")
        return failures
    if record is None:
        return [*failures, "no Dolby Vision configuration record"]
    if (record.profile, record.bl_compat_id) != (
        DOLBY_VISION_AV1_PROFILE,
        expected.dolby_vision_compat_id,
    ):
        failures.append(
            f"Dolby Vision profile {record.profile} compatibility {record.bl_compat_id}, "
            f"expected {DOLBY_VISION_AV1_PROFILE} compatibility {expected.dolby_vision_compat_id}"
        )
    frames, with_rpu = count_rpu_frames(path)
    if with_rpu != frames:
        failures.append(f"only {with_rpu} of {frames} frames carry a Dolby Vision RPU")
    return failures


def check_output(path: Path, expected: Expected, ffmpeg: str | None = None) -> list[str]:
    """Blocking: every check that fails, as a short sentence (empty when all pass)."""
    try:
        media = probe(path)
    except DraptoError as exc:
        return [f"output unreadable: {exc.problem}"]
    failures: list[str] = check_hdr(path, media, expected, ffmpeg)
    v = media.video
    extents = stream_extents(path)
    video_extent = extents.get(v.index)
    if v.codec != "av1":
        failures.append(Failure(f"video codec is {v.codec}, not av1", "format"))
    if v.bit_depth != 10:
        failures.append(Failure(f"video is {v.bit_depth}-bit, not 10-bit", "format"))
    if v.rotation:
        failures.append(Failure(f"output's display matrix turns it {v.rotation} degrees", "size"))
    # What a player shows: the coded size turned as the output's display matrix says.
    shown = (v.height, v.width) if v.rotation % 180 else (v.width, v.height)
    if shown != (expected.width, expected.height):
        failures.append(
            Failure(
                f"size {shown[0]}x{shown[1]}, expected {expected.width}x{expected.height}", "size"
            )
        )
    frames = video_extent.packets if video_extent else 0
    if frames != expected.frames:
        failures.append(f"{frames} video frames, source has {expected.frames}")
    duration = video_extent.duration_s if video_extent else 0.0
    if abs(duration - expected.duration_s) > expected.frame_duration_s + 1e-3:
        failures.append(
            f"video lasts {duration:.3f} s, source {expected.duration_s:.3f} s "
            f"(more than one frame apart)"
        )
    if expected.dispositions is not None:
        failures += check_dispositions(media, expected.dispositions)
    if expected.frame_times is not None:
        failures += check_frame_times(path, v.index, expected.frame_times)
    if len(media.audio) != len(expected.audio):
        failures.append(f"{len(media.audio)} audio tracks, source has {len(expected.audio)}")
    for position, (got, want) in enumerate(zip(media.audio, expected.audio, strict=False)):
        if got.codec != "opus":
            failures.append(f"audio track {position} is {got.codec}, not opus")
        if got.channels != want.channels:
            failures.append(
                f"audio track {position} has {got.channels} channels, expected {want.channels}"
            )
        got_extent = extents.get(got.index)
        got_duration = got_extent.duration_s if got_extent else 0.0
        if abs(got_duration - want.duration_s) > AUDIO_TOLERANCE_S:
            failures.append(
                f"audio track {position} lasts {got_duration:.3f} s, source {want.duration_s:.3f} s"
            )
    if len(media.subtitles) != expected.subtitles:
        failures.append(f"{len(media.subtitles)} subtitle tracks, source has {expected.subtitles}")
    if len(media.chapters) != expected.chapters:
        failures.append(f"{len(media.chapters)} chapters, source has {expected.chapters}")
    if len(media.attachments) != expected.attachments:
        failures.append(f"{len(media.attachments)} attachments, source has {expected.attachments}")
    log.info("validation of %s: %s", path.name, failures or "all checks passed")
    return failures
