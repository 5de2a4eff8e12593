"""What the output must be, taken from the source as measured: the demands that
validation (validation.py) checks a finished file against."""

from __future__ import annotations

from fractions import Fraction

from drapto_engine.core.models import MediaInfo
from drapto_engine.infrastructure.extents import Extent
from drapto_engine.services.encoding.audio import output_channels
from drapto_engine.services.encoding.plan import VideoPlan
from drapto_engine.services.validation import Expected, ExpectedAudio


def expected_output(
    plan: VideoPlan,
    media: MediaInfo,
    extents: dict[int, Extent],
    frame_times: tuple[Fraction, ...] | None = None,
) -> Expected:
    """What validation demands of the output, taken from the source as measured."""
    video = extents.get(media.video.index)
    rate = float(media.video.frame_rate) or 25.0
    return Expected(
        width=plan.width,
        height=plan.height,
        frames=video.packets if video else media.video.frame_count,
        duration_s=video.duration_s if video else media.duration_s,
        frame_duration_s=1.0 / rate,
        audio=[
            ExpectedAudio(
                channels=output_channels(a),
                duration_s=extents[a.index].duration_s
                if a.index in extents
                else (a.duration_s or 0.0),
            )
            for a in media.audio
        ],
        subtitles=len(media.subtitles),
        chapters=len(media.chapters),
        attachments=len(media.attachments),
        color_primaries=media.video.color_primaries,
        color_transfer=media.video.color_transfer,
        mastering_display=media.video.mastering_display,
        content_light=media.video.content_light,
        dolby_vision_compat_id=dolby_vision_compat_id(plan) if plan.dolby_vision else None,
        dispositions={
            "video": (media.video.dispositions,),
            "audio": tuple(a.dispositions for a in media.audio),
            "subtitle": tuple(s.dispositions for s in media.subtitles),
        },
        frame_times=frame_times,
    )


def dolby_vision_compat_id(plan: VideoPlan) -> int:
    """The AV1 profile 10 compatibility id ffmpeg derives from the base layer's signalling."""
    dovi = plan.analysis.dolby_vision
    if dovi is not None and dovi.profile == 5:
        return 0
    transfer = plan.analysis.media.video.color_transfer
    return {"smpte2084": 1, "arib-std-b67": 4}.get(transfer or "", 2)
