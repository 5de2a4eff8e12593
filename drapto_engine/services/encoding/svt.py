"""SVT-AV1 through ffmpeg: one segment (a frame range) of the source to AV1, 10-bit."""

from __future__ import annotations

from pathlib import Path

from drapto_engine.core.models import MasteringDisplay, Segment
from drapto_engine.services.encoding.plan import VideoPlan

PIX_FMT = "yuv420p10le"


def _xy(point: tuple[float, float]) -> str:
    return f"({point[0]:.4f},{point[1]:.4f})"


def mastering_display_param(md: MasteringDisplay) -> str:
    """SVT-AV1's `mastering-display` syntax: G(x,y)B(x,y)R(x,y)WP(x,y)L(max,min)."""
    return (
        f"G{_xy(md.green)}B{_xy(md.blue)}R{_xy(md.red)}WP{_xy(md.white_point)}"
        f"L({md.max_luminance:.4f},{md.min_luminance:.4f})"
    )


def svt_params(plan: VideoPlan, threads: int) -> str:
    """The -svtav1-params string: the job's parameters, thread share, HDR10 metadata."""
    params = [plan.svtav1_params] if plan.svtav1_params else []
    params.append(f"lp={max(1, threads)}")
    video = plan.analysis.media.video
    if video.mastering_display is not None:
        params.append(f"mastering-display={mastering_display_param(video.mastering_display)}")
    if video.content_light is not None:
        cl = video.content_light
        params.append(f"content-light={cl.max_cll},{cl.max_fall}")
    return ":".join(params)


def colour_args(plan: VideoPlan) -> list[str]:
    """Colour tags copied from the source (only those it states)."""
    video = plan.analysis.media.video
    args: list[str] = []
    for option, value in (
        ("-color_primaries", video.color_primaries),
        ("-color_trc", video.color_transfer),
        ("-colorspace", video.color_matrix),
        ("-color_range", video.color_range),
    ):
        if value:
            args += [option, value]
    return args


def video_filters(plan: VideoPlan) -> list[str]:
    filters = [plan.crop.filter()] if plan.crop else []
    return ["-vf", ",".join(filters)] if filters else []


def segment_argv(
    plan: VideoPlan,
    segment: Segment,
    output: Path,
    threads: int,
    dolby_vision: bool = False,
) -> list[str]:
    """ffmpeg arguments encoding exactly segment.frame_count frames from segment.start_s.

    `-dolbyvision` is always explicit: libsvtav1's "auto" would turn any RPU it meets
    on the decoded frames into Dolby Vision, which the SDR/HDR10/HLG path must not do.
    """
    seek = ["-ss", f"{segment.start_s:.6f}"] if segment.start_s > 0 else []
    return [
        plan.ffmpeg,
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        *seek,
        "-i",
        str(plan.source),
        "-map",
        f"0:{plan.analysis.media.video.index}",
        "-frames:v",
        str(segment.frame_count),
        "-an",
        "-sn",
        "-dn",
        "-map_chapters",
        "-1",
        "-map_metadata",
        "-1",
        "-fps_mode",
        "passthrough",
        *video_filters(plan),
        "-c:v",
        "libsvtav1",
        "-preset",
        str(plan.preset),
        "-crf",
        str(plan.crf),
        "-pix_fmt",
        PIX_FMT,
        "-svtav1-params",
        svt_params(plan, threads),
        "-dolbyvision",
        "1" if dolby_vision else "0",
        *colour_args(plan),
        "-progress",
        "pipe:1",
        "-nostats",
        str(output),
    ]


class SvtEncoder:
    """SDR, HDR10 and HLG: colour tags and HDR10 metadata carried, never Dolby Vision."""

    name = "svt-av1"

    def segment_argv(
        self, plan: VideoPlan, segment: Segment, output: Path, threads: int
    ) -> list[str]:
        return segment_argv(plan, segment, output, threads, dolby_vision=False)
