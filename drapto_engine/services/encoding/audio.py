"""Audio to Opus: bitrate by channel count, layouts libopus refuses remapped, tags kept."""

from __future__ import annotations

from pathlib import Path

from drapto_engine.core.models import AudioStream

# Layouts libopus encodes as they are (its mapping family 1 set).
OPUS_LAYOUTS = frozenset({"mono", "stereo", "3.0", "quad", "5.0", "5.1", "6.1", "7.1"})
# What a layout libopus refuses becomes, by channel count.
STANDARD_LAYOUT = {
    1: "mono",
    2: "stereo",
    3: "3.0",
    4: "quad",
    5: "5.0",
    6: "5.1",
    7: "6.1",
    8: "7.1",
}
MAX_OPUS_CHANNELS = 8


def bitrate_kbps(channels: int) -> int:
    """64k mono, 128k stereo, 256k 5.1, 384k 7.1, 48k a channel otherwise."""
    return {1: 64, 2: 128, 6: 256, 8: 384}.get(channels, 48 * channels)


def output_channels(stream: AudioStream) -> int:
    return min(stream.channels, MAX_OPUS_CHANNELS)


def target_layout(stream: AudioStream) -> str | None:
    """The layout to convert to, or None when libopus takes the source's as it is."""
    if stream.layout in OPUS_LAYOUTS and stream.channels <= MAX_OPUS_CHANNELS:
        return None
    return STANDARD_LAYOUT[output_channels(stream)]


def audio_argv(ffmpeg: str, source: Path, stream: AudioStream, output: Path) -> list[str]:
    """Encode one audio stream of the source to an Opus .mka, timing and tags kept."""
    layout = target_layout(stream)
    remap = ["-af", f"aformat=channel_layouts={layout}"] if layout else []
    return [
        ffmpeg,
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-i",
        str(source),
        "-map",
        f"0:{stream.index}",
        "-vn",
        "-sn",
        "-dn",
        "-map_chapters",
        "-1",
        *remap,
        "-c:a",
        "libopus",
        "-b:a",
        f"{bitrate_kbps(output_channels(stream))}k",
        "-vbr",
        "on",
        "-mapping_family",
        "1" if output_channels(stream) > 2 else "0",
        "-progress",
        "pipe:1",
        "-nostats",
        str(output),
    ]
