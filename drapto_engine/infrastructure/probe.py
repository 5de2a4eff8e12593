"""Media probing in-process with PyAV; ffmpeg's input dump for stream-level side data.

No system ffprobe is needed. Blocking: async callers use `probe_async`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import struct
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from drapto_engine.core.errors import MediaError
from drapto_engine.core.models import (
    AttachmentStream,
    AudioStream,
    Chapter,
    Dispositions,
    ExtraVideoStream,
    MediaInfo,
    Rational,
    SubtitleStream,
    VideoStream,
)
from drapto_engine.infrastructure.hdr_probe import (
    CONTENT_LIGHT_SIDE_DATA,
    DOVI_METADATA_SIDE_DATA,
    DOVI_RPU_SIDE_DATA,
    MASTERING_SIDE_DATA,
    ffmpeg_input_dump,
    frame_side_data,
    parse_content_light,
    parse_dovi_record,
    parse_mastering_display,
)

log = logging.getLogger(__name__)

# AVStream disposition bits (libavformat/avformat.h), by the names ffmpeg's options use.
_DISPOSITION_BITS = {name: int(av.stream.Disposition[name]) for name in Dispositions.model_fields}

DISPLAY_MATRIX_SIDE_DATA = "DISPLAYMATRIX"

# A video that stops this much before the container's stated end is truncated.
_TRUNCATION_TOLERANCE_S = 1.0


def _dispositions(value: int) -> Dispositions:
    return Dispositions(**{name: bool(value & bit) for name, bit in _DISPOSITION_BITS.items()})


def _check_file(path: Path) -> None:
    if not path.exists():
        raise MediaError("no such file", path)
    if path.is_dir():
        raise MediaError("is a directory, not a media file", path)
    if not path.is_file():
        raise MediaError("is not a regular file", path)
    if path.stat().st_size == 0:
        raise MediaError("is empty (0 bytes)", path)


def _open(path: Path) -> Any:
    try:
        return av.open(str(path), metadata_errors="replace")
    except av.error.InvalidDataError as exc:
        raise MediaError(
            "is not a readable media file (ffmpeg found invalid data: not a video, or truncated)",
            path,
        ) from exc
    except av.error.FFmpegError as exc:
        raise MediaError(f"cannot be opened: {exc.strerror or exc}", path) from exc


def _first_frame(container: Any, stream: Any, path: Path) -> Any:
    try:
        for frame in container.decode(stream):
            return frame
    except av.error.FFmpegError as exc:
        raise MediaError(f"video cannot be decoded: {exc.strerror or exc}", path) from exc
    raise MediaError("video stream has no decodable frame (truncated or empty)", path)


def _bit_depth(pix_fmt: str) -> int:
    try:
        return int(av.VideoFormat(pix_fmt).components[0].bits)
    except (ValueError, IndexError):
        return 8


def _irregular(pts: list[int]) -> bool:
    """Whether frame durations vary by more than timestamp rounding: a variable frame rate."""
    deltas = [b - a for a, b in itertools.pairwise(sorted(set(pts)))]
    return len(deltas) > 1 and max(deltas) - min(deltas) > max(2, max(deltas) // 50)


def _scan_video_end(
    container: Any, stream: Any, first_pts: int | None
) -> tuple[int, float, list[int]]:
    """Count the video packets that show a frame (none showing before the first decoded
    frame, at `first_pts`: see infrastructure/shown.py), find where the video really
    ends (seconds), collect the pts."""
    count = 0
    end = 0.0
    pts: list[int] = []
    tb = stream.time_base
    for packet in container.demux(stream):
        if packet.size == 0:
            continue
        if first_pts is not None and packet.pts is not None and packet.pts < first_pts:
            continue
        count += 1
        if packet.pts is not None:
            pts.append(packet.pts)
            end = max(end, float((packet.pts + (packet.duration or 0)) * tb))
    return count, end, pts


_REORDER_LIMIT = 64
"""Packets past the first shown frame's after which no earlier frame can follow: more
than any decoder reorders (H.264 and HEVC hold at most 16 frames)."""


def _unshown_at_start(container: Any, stream: Any, first_pts: int | None) -> int:
    """How many packets at the start of the stream show before the first decoded frame
    (at `first_pts`), which no decoder shows: a file that starts mid-GOP, or the frames
    an MP4 edit list cuts off (see infrastructure/shown.py)."""
    if first_pts is None:
        return 0
    unshown = after = 0
    for packet in container.demux(stream):
        if not packet.size or packet.pts is None:
            continue
        if packet.pts < first_pts:
            unshown += 1
            continue
        after += 1
        if after > _REORDER_LIMIT:
            break
    return unshown


def _video_end_near_tail(container: Any, stream: Any, duration_s: float) -> tuple[float, list[int]]:
    """Where the video ends and the pts found, reading only the last seconds of the file."""
    target = max(0.0, duration_s - 5.0) + (container.start_time or 0) / av.time_base
    try:
        container.seek(int(target / stream.time_base), stream=stream, backward=True)
    except av.error.FFmpegError:
        return 0.0, []
    end = 0.0
    pts: list[int] = []
    for packet in container.demux(stream):
        if packet.size and packet.pts is not None:
            pts.append(packet.pts)
            end = max(end, float((packet.pts + (packet.duration or 0)) * stream.time_base))
    return end, pts


_ATTACHED_PIC = int(av.stream.Disposition.attached_pic)

# Cover art codecs: the name and mime type an attached picture gets when the source
# gives none (an MP4 or audio file's cover), as Matroska's cover art convention names it.
_PICTURE_TYPES = {
    "mjpeg": ("cover.jpg", "image/jpeg"),
    "png": ("cover.png", "image/png"),
    "bmp": ("cover.bmp", "image/bmp"),
    "gif": ("cover.gif", "image/gif"),
    "webp": ("cover.webp", "image/webp"),
    "tiff": ("cover.tiff", "image/tiff"),
}


def is_cover(stream: Any) -> bool:
    """Whether a video stream is cover art (ffmpeg's attached_pic: one picture)."""
    return bool(int(stream.disposition) & _ATTACHED_PIC)


def _main_video(container: Any, path: Path) -> Any:
    """The first video stream that is not cover art (the one `-map 0:V:0` picks)."""
    for stream in container.streams.video:
        if not is_cover(stream):
            return stream
    if container.streams.video:
        raise MediaError("is not a video: its only picture is cover art", path)
    raise MediaError("has no video stream", path)


def _cover(stream: Any, number: int) -> AttachmentStream:
    """The `number`th cover art stream, named as its source names it or by its codec."""
    codec = stream.codec_context.codec.canonical_name if stream.codec_context else ""
    name, mimetype = _PICTURE_TYPES.get(codec, (f"cover.{codec or 'bin'}", None))
    if number > 1:  # cover.jpg, cover_2.jpg...
        stem, _, ext = name.rpartition(".")
        name = f"{stem}_{number}.{ext}"
    return AttachmentStream(
        index=stream.index,
        filename=stream.metadata.get("filename") or name,
        mimetype=stream.metadata.get("mimetype") or mimetype or "application/octet-stream",
        cover=True,
    )


def _attachments(container: Any) -> tuple[AttachmentStream, ...]:
    """Every attachment (fonts and the like) and every cover art stream, in stream order."""
    found = [
        AttachmentStream(index=s.index, filename=s.name, mimetype=s.mimetype)
        for s in container.streams
        if s.type == "attachment"
    ]
    covers = [s for s in container.streams.video if is_cover(s)]
    found += [_cover(s, i) for i, s in enumerate(covers, start=1)]
    return tuple(sorted(found, key=lambda a: a.index))


def _extra_video(container: Any, main: Any) -> tuple[ExtraVideoStream, ...]:
    return tuple(
        ExtraVideoStream(
            index=s.index,
            codec=s.codec_context.codec.canonical_name if s.codec_context else "unknown",
            width=s.codec_context.width if s.codec_context else 0,
            height=s.codec_context.height if s.codec_context else 0,
            title=s.metadata.get("title"),
        )
        for s in container.streams.video
        if s is not main and not is_cover(s)
    )


def cover_picture(path: Path, index: int) -> bytes:
    """Blocking: the bytes of the picture a cover art stream holds (its one packet)."""
    with _open(path) as container:
        for packet in container.demux(container.streams[index]):
            if packet.size:
                return bytes(packet)
    raise MediaError(f"its cover art (stream #{index}) holds no picture", path)


@contextlib.contextmanager
def _from_start(container: Any, path: Path) -> Iterator[Any]:
    """`container` sought back to its start, or the file opened afresh where that seek
    fails (an AVI whose first index entry, a dropped frame, is no keyframe)."""
    try:
        # To the start time, not 0: a file without an index (a cut Matroska has no cues)
        # cannot seek before its first timestamp.
        container.seek(container.start_time or 0)
    except av.error.FFmpegError:
        with _open(path) as fresh:
            yield fresh
        return
    yield container


def _video_stream(
    container: Any, stream: Any, path: Path, start_s: float, duration_s: float
) -> VideoStream:
    cc = stream.codec_context
    first = _first_frame(container, stream, path)
    side = frame_side_data(first)
    average = stream.average_rate or stream.guessed_rate or stream.base_rate or Fraction(0)
    base = stream.base_rate or average
    # The container's own index (an MP4 sample table) counts the frames, less those at
    # its start that no decoder shows; a Matroska NUMBER_OF_FRAMES statistics tag is not
    # trusted, since a remux may leave it stale. An AVI index counts the empty chunks of
    # dropped frames too: its packets are counted.
    indexed = int(stream.frames or 0) if container.format.name != "avi" else 0
    with _from_start(container, path) as source:
        video = source.streams[stream.index]
        if indexed:
            frame_count = indexed - _unshown_at_start(source, video, first.pts)
            end, pts = _video_end_near_tail(source, video, duration_s)
        else:
            frame_count, end, pts = _scan_video_end(source, video, first.pts)
    if start_s + duration_s - end > _TRUNCATION_TOLERANCE_S:
        raise MediaError(
            f"is truncated: its video stops at {max(end - start_s, 0):.2f} s of {duration_s:.2f} s",
            path,
        )
    sar = stream.sample_aspect_ratio or cc.sample_aspect_ratio or Fraction(1)
    pix_fmt = first.format.name
    # Matroska's average rate is its default duration, so the timestamps must be looked at too.
    vfr = _irregular(pts) or bool(
        average and base and abs(float(average) - float(base)) > 0.001 * float(base)
    )
    return VideoStream(
        index=stream.index,
        codec=cc.codec.canonical_name,
        width=first.width,
        height=first.height,
        sar=Rational.of(sar),
        dar=Rational.of(stream.display_aspect_ratio) if stream.display_aspect_ratio else None,
        rotation=int(getattr(first, "rotation", 0) or 0),
        display_matrix=struct.unpack("=9i", side[DISPLAY_MATRIX_SIDE_DATA])
        if len(side.get(DISPLAY_MATRIX_SIDE_DATA, b"")) == 36
        else None,
        field_order=_FIELD_ORDERS.get(int(cc.field_order or 0)),
        pix_fmt=pix_fmt,
        bit_depth=_bit_depth(pix_fmt),
        frame_rate=Rational.of(average),
        variable_frame_rate=vfr,
        frame_count=frame_count,
        color_primaries=_colour_name(first.color_primaries, "primaries"),
        color_transfer=_colour_name(first.color_trc, "trc"),
        color_matrix=_colour_name(first.colorspace, "space"),
        color_range=_colour_name(first.color_range, "range"),
        mastering_display=parse_mastering_display(side[MASTERING_SIDE_DATA])
        if MASTERING_SIDE_DATA in side
        else None,
        content_light=parse_content_light(side[CONTENT_LIGHT_SIDE_DATA])
        if CONTENT_LIGHT_SIDE_DATA in side
        else None,
        language=stream.language,
        title=stream.metadata.get("title"),
        dispositions=_dispositions(int(stream.disposition)),
    )


# AVFieldOrder (codec_par.h) to ffmpeg's names; 0 (unknown) is None.
_FIELD_ORDERS = {1: "progressive", 2: "tt", 3: "bb", 4: "tb", 5: "bt"}

# libavutil's enum values to ffmpeg's option names (pixfmt.h); unlisted values stay None.
_COLOUR_NAMES: dict[str, dict[int, str]] = {
    "primaries": {
        1: "bt709",
        4: "bt470m",
        5: "bt470bg",
        6: "smpte170m",
        7: "smpte240m",
        9: "bt2020",
        11: "smpte431",
        12: "smpte432",
    },
    "trc": {
        1: "bt709",
        4: "gamma22",
        5: "gamma28",
        6: "smpte170m",
        7: "smpte240m",
        8: "linear",
        13: "iec61966-2-1",
        14: "bt2020-10",
        15: "bt2020-12",
        16: "smpte2084",
        18: "arib-std-b67",
    },
    "space": {
        0: "gbr",
        1: "bt709",
        5: "bt470bg",
        6: "smpte170m",
        7: "smpte240m",
        9: "bt2020nc",
        10: "bt2020c",
        14: "ictcp",
    },
    "range": {1: "tv", 2: "pc"},
}


def _colour_name(value: Any, kind: str) -> str | None:
    if value is None:
        return None
    return _COLOUR_NAMES[kind].get(int(value))


def _audio(stream: Any) -> AudioStream:
    cc = stream.codec_context
    start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
    duration = float(stream.duration * stream.time_base) if stream.duration else None
    return AudioStream(
        index=stream.index,
        codec=cc.codec.canonical_name,
        channels=cc.channels,
        layout=cc.layout.name if cc.layout else None,
        sample_rate=cc.sample_rate,
        language=stream.language,
        title=stream.metadata.get("title"),
        dispositions=_dispositions(int(stream.disposition)),
        start_time_s=start,
        duration_s=duration,
    )


def _chapters(container: Any) -> tuple[Chapter, ...]:
    chapters = []
    for chapter in container.chapters():
        tb = chapter["time_base"]
        chapters.append(
            Chapter(
                start_s=float(chapter["start"] * tb),
                end_s=float(chapter["end"] * tb),
                title=chapter.get("metadata", {}).get("title"),
            )
        )
    return tuple(chapters)


def probe(path: Path, ffmpeg: str | None = None) -> MediaInfo:
    """Everything drapto needs to know about a file; raises MediaError for bad input."""
    path = Path(path)
    _check_file(path)
    with _open(path) as container:
        main = _main_video(container, path)
        duration_s = (container.duration or 0) / av.time_base
        start_s = (container.start_time or 0) / av.time_base
        if duration_s and "matroska" in container.format.name:
            # Matroska states its duration from timestamp zero, other containers from the start.
            duration_s = max(duration_s - start_s, 0.0)
        video = _video_stream(container, main, path, start_s, duration_s)
        streams = container.streams
        info = MediaInfo(
            path=path,
            container=container.format.name,
            size_bytes=path.stat().st_size,
            duration_s=duration_s,
            start_time_s=start_s,
            video=video,
            audio=tuple(_audio(s) for s in streams.audio),
            subtitles=tuple(
                SubtitleStream(
                    index=s.index,
                    codec=s.codec_context.codec.canonical_name if s.codec_context else "unknown",
                    language=s.language,
                    title=s.metadata.get("title"),
                    dispositions=_dispositions(int(s.disposition)),
                )
                for s in streams.subtitles
            ),
            attachments=_attachments(container),
            extra_video=_extra_video(container, main),
            chapters=_chapters(container),
            metadata=dict(container.metadata),
        )
    if ffmpeg is not None:
        record = parse_dovi_record(ffmpeg_input_dump(ffmpeg, path))
        if record is not None:
            info = info.model_copy(update={"dolby_vision": record})
    return info


def has_dovi_rpu_on_first_frame(path: Path) -> bool:
    """Whether the first decoded frame carries a Dolby Vision RPU."""
    with _open(path) as container:
        frame = _first_frame(container, _main_video(container, path), path)
        return bool({DOVI_RPU_SIDE_DATA, DOVI_METADATA_SIDE_DATA} & set(frame_side_data(frame)))


async def probe_async(path: Path, ffmpeg: str | None = None) -> MediaInfo:
    return await asyncio.to_thread(probe, path, ffmpeg)
