"""Join the encoded segments (no re-encode) and mux them with everything else of the source."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from drapto_engine.core.models import AudioStream, Dispositions, MediaInfo

# Subtitle codecs Matroska cannot hold, and what they become.
SUBTITLE_CONVERSIONS = {"mov_text": "srt"}


def concat_list(segment_files: Sequence[Path], durations: Sequence[float] | None = None) -> str:
    """A concat demuxer list; quotes in names escaped as the demuxer expects.

    `durations` place each file exactly: from its first frame to the next file's first
    frame in the source. Without them the demuxer trusts each file's own span, whose
    last frame duration is only a guess under a variable frame rate.
    """
    lines = []
    for i, path in enumerate(segment_files):
        escaped = str(path.resolve()).replace("'", "'\\''")
        lines.append(f"file '{escaped}'")
        if durations is not None:
            lines.append(f"duration {durations[i]:.6f}")
    return "\n".join(lines) + "\n"


def _offset(seconds: float) -> list[str]:
    return ["-itsoffset", f"{seconds:.6f}"] if abs(seconds) > 1e-6 else []


def _disposition(d: Dispositions) -> str:
    names = [name for name in ("default", "forced", "comment") if getattr(d, name)]
    names += [name for name in ("hearing_impaired", "visual_impaired") if getattr(d, name)]
    return "+".join(names) or "0"


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
    video_offset_s: float = 0.0,
) -> list[str]:
    """Video from the concat list, Opus tracks, then subtitles, fonts, chapters, metadata.

    `-copyts` keeps every input on one timeline, the source container's: ffmpeg would
    otherwise rebase each input on its own start and lose offsets such as audio that
    starts after the video. The segments start at 0, so the video is shifted to where
    the source's video began; the Opus files already count from the container start.
    """
    args = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-copyts"]
    args += [*_offset(video_offset_s), "-f", "concat", "-safe", "0", "-i", str(concat_file)]
    for _, path in audio:
        args += ["-i", str(path)]
    source_input = 1 + len(audio)
    args += [*_offset(-media.start_time_s), "-i", str(media.path)]
    args += ["-map", "0:v:0"]
    args += [arg for i in range(len(audio)) for arg in ("-map", f"{1 + i}:a:0")]
    args += [arg for s in media.subtitles for arg in ("-map", f"{source_input}:{s.index}")]
    args += [arg for a in media.attachments for arg in ("-map", f"{source_input}:{a.index}")]
    args += ["-map_metadata", str(source_input), "-map_chapters", str(source_input), "-c", "copy"]
    args += _tags("v", 0, media.video.language, media.video.title)
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
