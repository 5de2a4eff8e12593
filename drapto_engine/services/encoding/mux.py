"""Join the encoded segments (no re-encode) and mux them with everything else of the source."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from drapto_engine.core.models import AttachmentStream, AudioStream, Dispositions, MediaInfo

# Subtitle codecs Matroska cannot hold, and what they become.
SUBTITLE_CONVERSIONS = {"mov_text": "srt"}


def _seconds(us: int) -> str:
    """Microseconds as the exact decimal ffmpeg parses back to the same microseconds."""
    sign = "-" if us < 0 else ""
    whole, fraction = divmod(abs(us), 1_000_000)
    return f"{sign}{whole}.{fraction:06d}"


def concat_list(
    segment_files: Sequence[Path],
    starts_us: Sequence[int] | None = None,
    end_us: int | None = None,
) -> str:
    """A concat demuxer list; quotes in names escaped as the demuxer expects.

    Each segment starts at 0 and the demuxer shifts file k by the sum of the durations
    before it. With `starts_us`, the source time of each segment's first frame in whole
    microseconds, each duration is the exact gap between two starts, so the sum is
    exactly file k's start less the first file's (`mux_argv`'s `video_start_us` adds
    that back): the shift, turned into the segment's time base (the source's), lands on
    the source's own tick, and no frame time is rounded before the final mux. `end_us`,
    where the video ends, sizes the last file. Without `starts_us` the demuxer trusts
    each file's own span, whose last frame duration is only a guess under a variable
    frame rate.
    """
    lines = []
    for i, path in enumerate(segment_files):
        escaped = str(path.resolve()).replace("'", "'\\''")
        lines.append(f"file '{escaped}'")
        if starts_us is None:
            continue
        following = starts_us[i + 1] if i + 1 < len(starts_us) else end_us
        if following is not None and following > starts_us[i]:
            lines.append(f"duration {_seconds(following - starts_us[i])}")
    return "\n".join(lines) + "\n"


def _offset(us: int) -> list[str]:
    return ["-itsoffset", _seconds(us)] if us else []


def _disposition(d: Dispositions) -> str:
    """Every flag the source stream had ("0": none, so ffmpeg adds none of its own)."""
    return "+".join(d.names()) or "0"


def _tags(kind: str, position: int, language: str | None, title: str | None) -> list[str]:
    args: list[str] = []
    if language:
        args += [f"-metadata:s:{kind}:{position}", f"language={language}"]
    if title:
        args += [f"-metadata:s:{kind}:{position}", f"title={title}"]
    return args


def mux_argv(
    ffmpeg: str,
    media: MediaInfo,
    concat_file: Path,
    audio: Sequence[tuple[AudioStream, Path]],
    output: Path,
    video_start_us: int = 0,
    covers: Sequence[tuple[AttachmentStream, Path]] = (),
) -> list[str]:
    """Video from the concat list, Opus tracks, then subtitles, fonts, cover art,
    chapters, metadata.

    Cover art (`covers`: each cover and its picture, written out of the source) is
    attached as a Matroska attachment with the source's file name and mime type: copied
    as a stream, ffmpeg would make it a one-frame video track instead.

    `-copyts` keeps every input on one timeline, the source container's: ffmpeg would
    otherwise rebase each input on its own start and lose offsets such as audio that
    starts after the video. The joined segments start at 0 (see `concat_list`), so the
    video is shifted back to where its first segment began, the source's own time
    relative to its container's start; the Opus files count from the container start
    too, and the source itself is shifted by its container's start.
    """
    args = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-copyts"]
    args += [*_offset(video_start_us), "-f", "concat", "-safe", "0", "-i", str(concat_file)]
    for _, path in audio:
        args += ["-i", str(path)]
    source_input = 1 + len(audio)
    args += [*_offset(-round(media.start_time_s * 1_000_000)), "-i", str(media.path)]
    args += ["-map", "0:v:0"]
    args += [arg for i in range(len(audio)) for arg in ("-map", f"{1 + i}:a:0")]
    args += [arg for s in media.subtitles for arg in ("-map", f"{source_input}:{s.index}")]
    mapped = [a for a in media.attachments if not a.cover]
    args += [arg for a in mapped for arg in ("-map", f"{source_input}:{a.index}")]
    for position, (cover, picture) in enumerate(covers, start=len(mapped)):
        args += ["-attach", str(picture)]
        args += [f"-metadata:s:t:{position}", f"mimetype={cover.mimetype}"]
        args += [f"-metadata:s:t:{position}", f"filename={cover.filename}"]
    args += ["-map_metadata", str(source_input), "-map_chapters", str(source_input), "-c", "copy"]
    args += _tags("v", 0, media.video.language, media.video.title)
    args += ["-disposition:v:0", _disposition(media.video.dispositions)]
    for position, (stream, _) in enumerate(audio):
        args += _tags("a", position, stream.language, stream.title)
        args += [f"-disposition:a:{position}", _disposition(stream.dispositions)]
    for position, sub in enumerate(media.subtitles):
        if sub.codec in SUBTITLE_CONVERSIONS:
            args += [f"-c:s:{position}", SUBTITLE_CONVERSIONS[sub.codec]]
        args += _tags("s", position, sub.language, sub.title)
        args += [f"-disposition:s:{position}", _disposition(sub.dispositions)]
    args += ["-f", "matroska", str(output)]
    return args
