"""SVT-AV1 through ffmpeg: one segment (a frame range) of the source to AV1, 10-bit."""

from __future__ import annotations

from pathlib import Path

from drapto_engine.core.models import Segment
from drapto_engine.services.encoding.encoder import SegmentEncoder
from drapto_engine.services.encoding.plan import VideoPlan

PIX_FMT = "yuv420p10le"

MIN_SIDE = 16
"""The narrowest picture drapto encodes. libsvtav1 fails a frame whose coded size tops 8
times its raw size ("TU size > 8 raw frame size"), which pictures of a few pixels a
side do (1x1 always; 2x2 to 11x11 with detailed content, tried with SVT-AV1 4.2);
16 pixels a side leave it room."""


def size_problem(width: int, height: int) -> str | None:
    """Why the encoder cannot take a picture of this size, or None."""
    if min(width, height) >= MIN_SIDE:
        return None
    return (
        f"its picture of {width}x{height} is too small to encode "
        f"(SVT-AV1 needs at least {MIN_SIDE}x{MIN_SIDE})"
    )


UNTIMED = frozenset({"mpegvideo"})
"""Containers whose frames carry no timestamps of their own that drapto's reading and
ffmpeg's agree on: a raw MPEG video stream (.m2v) is timed by libavformat one frame
later than by ffmpeg's command line, so a segment would start one frame off."""


def container_problem(container: str) -> str | None:
    """Why frames of this container cannot be placed exactly, or None."""
    if container not in UNTIMED:
        return None
    return (
        "is a raw MPEG video stream with no timestamps: its frames cannot be placed "
        "exactly (remux it first, e.g. ffmpeg -i IN.m2v -c copy -f vob OUT.mpg)"
    )


def svt_params(plan: VideoPlan, threads: int) -> str:
    """The -svtav1-params string: the job's parameters and its thread share.

    HDR10 mastering display and content light level are not passed here: ffmpeg's
    libsvtav1 wrapper takes them from the decoded frames into both the bitstream and
    the container, while `mastering-display`/`content-light` would reach only the
    bitstream and leave the container disagreeing. Validation checks the result.
    """
    params = [plan.svtav1_params] if plan.svtav1_params else []
    params.append(f"lp={max(1, threads)}")
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


INEXACT_SEEK = frozenset({"mpeg", "mpegts", "mpegvideo"})
"""Containers without an index (MPEG-PS of DVDs, MPEG-TS of TV recordings): a seek finds
its place by reading timestamps and may land a frame or a GOP past the point asked for."""
SEEK_MARGIN_S = 5.0
"""How far before its first frame a segment of such a container is entered; the frames
in between are decoded and dropped by time (`trim`)."""
STATED_TIMES = frozenset({"mpeg", "mpegts"})
"""Those of them whose packets state their times: for the drop, ffmpeg keeps them as
they are (`-copyts`), since it would otherwise shift them by a start of its choosing,
the start of the streams it reads (the video alone), not the container's start that
frame times count from. A raw stream's times are ffmpeg's own count, from the seek."""


def seek(plan: VideoPlan, segment: Segment) -> tuple[float, float | None, bool]:
    """Where the input is entered (ffmpeg's -ss); where the container seeks inexactly,
    the time of the segment's first frame, from which frames are kept (None where the
    seek is exact); and whether that time is the source's own timestamp (`-copyts`)
    rather than one from the entry point.

    The first segment of an indexed container is read from the start of the file, not
    sought to: its first frame may come after time 0 (an AVI whose first frame was
    dropped), and a seek near the start of an AVI with packed B-frames lands on its
    second keyframe."""
    if segment.start_s <= 0:
        return 0.0, None, False
    media = plan.analysis.media
    if media.container not in INEXACT_SEEK:
        return (0.0 if segment.start_frame == 0 else segment.start_s), None, False
    entry = max(0.0, segment.start_s - SEEK_MARGIN_S)
    if media.container in STATED_TIMES:
        return entry, media.start_time_s + segment.start_s, True
    return entry, segment.start_s - entry, False


def video_filters(plan: VideoPlan, keep_from: float | None = None) -> list[str]:
    """Frames before the segment dropped (see `seek`), timestamps rebased to 0, then
    deinterlacing, then the crop, then the turn and flip of the source's display matrix.

    A segment starts at 0: the join places it at its first frame's source time (see
    `mux.concat_list`). Deinterlacing comes before the crop, whose offset may be an odd
    number of lines and would swap the fields. The crop was detected on the coded
    picture, so the turn comes after it; ffmpeg's own autorotate is off (see
    `segment_argv`), and the turned frames lose the display matrix, which would
    otherwise turn them again in a player.
    """
    filters = [f"trim=start={keep_from:.6f}"] if keep_from is not None else []
    filters.append("setpts=PTS-STARTPTS")
    if plan.interlace:
        filters.append(plan.interlace.filter())
    if plan.crop:
        filters.append(plan.crop.filter())
    if plan.analysis.media.video.display_matrix is not None:
        filters += [*plan.orientation.filters, "sidedata=mode=delete:type=DISPLAYMATRIX"]
    return ["-vf", ",".join(filters)]


# Frames keep the source stream's time base (the encoder's default is 1/frame rate,
# which moves variable-rate frames), and the segment files keep it too (see
# SEGMENT_SUFFIX): the only rounding is the final mux's, into Matroska's milliseconds.
ENCODER_TIME_BASE = ["-enc_time_base:v", "demux"]

SEGMENT_SUFFIX = ".mp4"
"""Segments are MP4, whose track time scale is the source's time base: a Matroska
segment would round each frame's time to the millisecond relative to the segment's
start, and the join's shift would round again, putting a frame 1 ms off the source
wherever the two roundings disagree (a quarter of a 29.97 fps file's frames)."""


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
    entry, keep_from, stated = seek(plan, segment)
    entered = ["-ss", f"{entry:.6f}"] if entry > 0 else []
    if stated:
        entered = ["-copyts", *entered]
    return [
        plan.ffmpeg,
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        # The decoder gets the segment's share too: ffmpeg's automatic frame threading
        # costs CPU the other encoders need, and one SVT thread cannot outrun it anyway.
        "-threads",
        str(max(1, threads)),
        *entered,
        # The picture is turned by video_filters, after the crop: a shipped segment
        # (cluster/tasks.py) may not carry the display matrix that autorotate reads.
        "-noautorotate",
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
        *video_filters(plan, keep_from),
        *ENCODER_TIME_BASE,
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
        # MP4 writes the Dolby Vision configuration record (dvcC) only when asked to
        # follow unofficial extensions; without it the record is lost at the join.
        *(["-strict", "unofficial"] if dolby_vision else []),
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


class DolbyVisionEncoder:
    """Every segment decoded from the source and encoded with its RPUs."""

    name = "svt-av1 dolby-vision"

    def segment_argv(
        self, plan: VideoPlan, segment: Segment, output: Path, threads: int
    ) -> list[str]:
        return segment_argv(plan, segment, output, threads, dolby_vision=True)


def encoder_for(plan: VideoPlan) -> SegmentEncoder:
    """The encoder of the plan's dynamic range path: Dolby Vision kept, or not."""
    return DolbyVisionEncoder() if plan.dolby_vision else SvtEncoder()
