"""The documented shapes drapto prints: `probe --json` and the human summary."""

from __future__ import annotations

from typing import Any

from drapto_engine.core.models import ContentLight, MasteringDisplay, VideoAnalysis

UNKNOWN = "unknown"
"""What `drapto probe` prints for a tag the file does not carry."""


def probe_json(analysis: VideoAnalysis) -> dict[str, Any]:
    """The `drapto probe --json` object (schema in docs/usage.md)."""
    media = analysis.media
    v = media.video
    dovi = analysis.dolby_vision
    return {
        "path": str(media.path),
        "container": media.container,
        "size_bytes": media.size_bytes,
        "duration_s": round(media.duration_s, 6),
        "start_time_s": round(media.start_time_s, 6),
        "video": {
            "codec": v.codec,
            "width": v.width,
            "height": v.height,
            "frame_rate": str(v.frame_rate),
            "variable_frame_rate": v.variable_frame_rate,
            "frame_count": v.frame_count,
            "pix_fmt": v.pix_fmt,
            "bit_depth": v.bit_depth,
            "rotation": v.rotation,
            "sar": str(v.sar),
            "color_primaries": v.color_primaries,
            "color_transfer": v.color_transfer,
            "color_matrix": v.color_matrix,
            "color_range": v.color_range,
            "mastering_display": v.mastering_display.model_dump() if v.mastering_display else None,
            "content_light": v.content_light.model_dump() if v.content_light else None,
        },
        "dynamic_range": analysis.dynamic_range.value,
        "dolby_vision": {"profile": dovi.profile, "bl_compat_id": dovi.bl_compat_id}
        if dovi
        else None,
        "crop": analysis.crop.model_dump() if analysis.crop else None,
        "resolution_class": analysis.resolution_class.value,
        "default_crf": analysis.default_crf,
        "audio": [
            {
                "index": a.index,
                "codec": a.codec,
                "channels": a.channels,
                "layout": a.layout,
                "language": a.language,
                "title": a.title,
            }
            for a in media.audio
        ],
        "subtitles": [
            {"index": s.index, "codec": s.codec, "language": s.language, "title": s.title}
            for s in media.subtitles
        ],
        "attachments": len(media.attachments),
        "chapters": len(media.chapters),
    }


def probe_text(analysis: VideoAnalysis) -> str:
    """A readable block for `drapto probe`."""
    media = analysis.media
    v = media.video
    lines = [
        f"{media.path}",
        f"  container   {media.container}, {media.duration_s:.3f} s, {media.size_bytes} bytes",
        f"  video       {v.codec} {v.width}x{v.height} {v.pix_fmt} ({v.bit_depth}-bit), "
        f"{float(v.frame_rate):.3f} fps{' VFR' if v.variable_frame_rate else ''}, "
        f"{v.frame_count} frames, SAR {v.sar}, rotation {v.rotation}",
        f"  colour      primaries {_tag(v.color_primaries)}, transfer {_tag(v.color_transfer)},"
        f" matrix {_tag(v.color_matrix)}, range {_tag(v.color_range)}",
        f"  mastering   {_mastering(v.mastering_display)}",
        f"  light level {_light(v.content_light)}",
        f"  range       {analysis.dynamic_range.value}"
        + (
            f" (Dolby Vision profile {analysis.dolby_vision.profile}, "
            f"compatibility id {analysis.dolby_vision.bl_compat_id})"
            if analysis.dolby_vision
            else ""
        ),
        f"  crop        {analysis.crop.filter() if analysis.crop else 'none'}",
        f"  class       {analysis.resolution_class.value} (default CRF {analysis.default_crf})",
    ]
    for a in media.audio:
        lines.append(
            f"  audio #{a.index}    {a.codec} {a.channels} ch {a.layout or ''} "
            f"{a.language or 'und'} {a.title or ''}".rstrip()
        )
    for s in media.subtitles:
        lines.append(
            f"  subtitle #{s.index} {s.codec} {s.language or 'und'} {s.title or ''}".rstrip()
        )
    lines.append(f"  attachments {len(media.attachments)}, chapters {len(media.chapters)}")
    return "\n".join(lines)


def _tag(value: object) -> str:
    return UNKNOWN if value is None else str(value)


def _mastering(display: MasteringDisplay | None) -> str:
    """SMPTE ST 2086 as people read it: CIE xy of R, G, B and white, then luminance."""
    if display is None:
        return "none"

    def xy(point: tuple[float, float]) -> str:
        return f"({point[0]:.4f}, {point[1]:.4f})"

    return (
        f"R {xy(display.red)} G {xy(display.green)} B {xy(display.blue)}"
        f" WP {xy(display.white_point)},"
        f" luminance {display.min_luminance:g} to {display.max_luminance:g} cd/m2"
    )


def _light(light: ContentLight | None) -> str:
    if light is None:
        return "none"
    return f"MaxCLL {light.max_cll} cd/m2, MaxFALL {light.max_fall} cd/m2"
