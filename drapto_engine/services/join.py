"""The join: finished segments put together without re-encoding and muxed with the
audio, subtitles, fonts, chapters and cover art into the hidden partial output."""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
from pathlib import Path

from drapto_engine.core.errors import DiskFull, EncodeError
from drapto_engine.core.models import AttachmentStream, AudioStream, MediaInfo
from drapto_engine.infrastructure.disk import GIB
from drapto_engine.infrastructure.ffmpeg.runner import run_ffmpeg
from drapto_engine.infrastructure.probe import cover_picture
from drapto_engine.services.encoding.mux import concat_list, mux_argv
from drapto_engine.services.resume import StoredPlan


async def join(
    ffmpeg: str,
    media: MediaInfo,
    files: list[Path],
    timing: StoredPlan,
    audio: list[tuple[AudioStream, Path]],
    work: Path,
    partial: Path,
) -> None:
    """Join the segments without re-encoding and mux them with the audio, subtitles,
    fonts, chapters and cover art into `partial`."""
    listing = work / "segments.txt"
    starts = [round(s * 1_000_000) for s in timing.starts_s]
    end = round(timing.end_s * 1_000_000)
    try:
        # a folder name that is not UTF-8 is written as its own bytes
        listing.write_text(
            concat_list(files, starts, end), encoding="utf-8", errors="surrogateescape"
        )
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        raise DiskFull(
            f"no space left to join the segments: their list cannot be written in "
            f"{work} ({_size(shutil.disk_usage(work).free)} free now); the {len(files)} "
            "encoded segments are kept there for the next run",
            media.path,
        ) from exc
    covers = await asyncio.to_thread(_write_covers, media, work)
    result = await run_ffmpeg(
        mux_argv(ffmpeg, media, listing, audio, partial, video_start_us=starts[0], covers=covers)
    )
    if result.returncode == 0:
        return
    if _out_of_space(result.returncode, result.stderr_tail):
        needed = sum(p.stat().st_size for p in [*files, *(a for _, a in audio)])
        free = shutil.disk_usage(partial.parent).free
        raise DiskFull(
            f"no space left to join the segments: the output needs about "
            f"{_size(needed)} in {partial.parent} ({_size(free)} free now); the "
            f"{len(files)} encoded segments are kept in {work} for the next run",
            media.path,
        )
    last = result.stderr_tail.splitlines()[-1] if result.stderr_tail else "no message"
    raise EncodeError(
        f"concat and mux failed (ffmpeg exit {result.returncode}): {last}", media.path
    )


def _write_covers(media: MediaInfo, work: Path) -> list[tuple[AttachmentStream, Path]]:
    """Each cover art picture of the source, as a file in the work folder to attach."""
    covers = []
    for cover in media.attachments:
        if cover.cover:
            picture = work / f"cover-{cover.index}"
            picture.write_bytes(cover_picture(media.path, cover.index))
            covers.append((cover, picture))
    return covers


def _out_of_space(returncode: int, stderr: str) -> bool:
    """Whether an ffmpeg run failed for want of disk space: ffmpeg ends with the
    negated error code (ENOSPC: -28, exit status 228) and says so."""
    return returncode == (-errno.ENOSPC) & 0xFF or os.strerror(errno.ENOSPC) in stderr


def _size(size: int) -> str:
    return f"{size / GIB:.1f} GiB" if size >= GIB else f"{size / (1 << 20):.1f} MiB"
