"""Finding the videos in a library folder, and where each one's output goes.

Blocking (walks the disk and probes every candidate): async callers use
`asyncio.to_thread`.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from drapto_engine.core.names import OUTPUT_SUFFIX, VIDEO_EXTENSIONS

_DIGITS = re.compile(r"(\d+)")


class Scan(BaseModel):
    """What a folder scan found.

    `videos`: the files to encode, absolute, in natural order of their path below the
    folder ("Ep 2" before "Ep 10"). `rejected`: (path, why) for each file with a video
    extension that does not probe as a usable video, and each folder that could not be
    read; a caller shows them as warnings.
    """

    model_config = ConfigDict(defer_build=True, frozen=True, extra="forbid")

    videos: list[Path]
    rejected: list[tuple[Path, str]]


def output_path(source: Path, output_dir: Path | None, root: Path | None = None) -> Path:
    """`<stem>.av1.mkv` beside the input, or `<output_dir>/<folder below root>/<stem>.mkv`."""
    if output_dir is None:
        return source.with_name(f"{source.stem}{OUTPUT_SUFFIX}")
    relative = source.parent.relative_to(root) if root is not None else Path()
    return output_dir / relative / f"{source.stem}.mkv"


_NOT_REGULAR = (
    (stat.S_ISFIFO, "is a FIFO (named pipe), not a regular file"),
    (stat.S_ISSOCK, "is a socket, not a regular file"),
    (stat.S_ISCHR, "is a device, not a regular file"),
    (stat.S_ISBLK, "is a device, not a regular file"),
)


def file_problem(path: Path) -> str | None:
    """Why `path` is not a regular file to read, from its metadata alone: nothing is
    opened (opening a FIFO blocks until a writer comes). None for a regular file."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        if path.is_symlink():
            return f"is a broken link (its target {os.readlink(path)} does not exist)"
        return "no such file"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "is a symbolic link loop"
        return f"cannot be read: {exc.strerror or exc}"
    if stat.S_ISDIR(mode):
        return "is a directory"
    if stat.S_ISREG(mode):
        return None
    return next((why for kind, why in _NOT_REGULAR if kind(mode)), "is not a regular file")


def is_video_file(path: Path, ffmpeg: str | None = None) -> str | None:
    """None when `path` opens as a container with a video stream, otherwise why not.

    Unreadable covers more than permissions (which do not stop root): a link whose
    target is gone, something that is not a regular file (a FIFO would block the
    reader), an empty file, bytes that are no media. Only the header is read: a full
    probe counts every packet of files without a frame-count tag (seconds for a film),
    too slow for scanning a library."""
    del ffmpeg  # kept for callers that pass it; the header says enough
    import av  # here: every `drapto` command imports this module, few open a file

    problem = file_problem(path)
    if problem is not None:
        return problem
    try:
        info = path.stat()
        if info.st_size == 0:
            return "is empty (0 bytes)"
        with av.open(str(path)) as container:
            if not container.streams.video:
                return "has no video stream"
    except av.error.FFmpegError as exc:
        return f"is not a readable media file ({exc.strerror or type(exc).__name__})"
    except FileNotFoundError:
        return "no such file"
    except OSError as exc:
        return f"cannot be read: {exc.strerror or exc}"
    return None


ALREADY_AV1 = "already AV1"
"""The note of a source skipped because its video is AV1 already (see `force`)."""


def is_av1(path: Path) -> bool:
    """Whether the file's video (its first video stream, as drapto encodes) is AV1
    already: re-encoding it loses quality for little gain, so a folder or queue file
    skips it and `drapto encode` refuses it unless forced. Reads the header only;
    a file that cannot be read is not AV1 here (the encode then says what is wrong)."""
    import av

    try:
        with av.open(str(path)) as container:
            video = container.streams.video
            return bool(video) and video[0].codec_context.codec.canonical_name == "av1"
    except (av.error.FFmpegError, OSError):
        return False


def natural_key(relative: Path) -> tuple[tuple[str | int, ...], ...]:
    """Sort key comparing digit runs as numbers and the rest without case, part by part."""
    # re.split with a group alternates text and digits, text first, so every tuple has
    # str at even and int at odd positions and any two compare without a TypeError.
    return tuple(
        tuple(int(t) if i % 2 else t.casefold() for i, t in enumerate(_DIGITS.split(part)))
        for part in relative.parts
    )


def scan_folder(folder: Path, ffmpeg: str, *, skip: Iterable[Path] = ()) -> Scan:
    """Every video under `folder`, recursively, confirmed by probing.

    Left out: hidden files and folders (drapto's `.drapto-work-*` folders and
    `.<stem>.drapto-partial-<pid>.<ext>` files are hidden by construction), drapto's own
    `*.av1.mkv` outputs, files without a video extension (silently), anything in a folder of `skip`
    (a batch's output folders, so outputs inside the library are not queued again), and
    a second path to a file already found (through a symlink). Symlinked folders are
    followed, each real folder once, so a link loop ends.
    """
    folder = folder.absolute()
    skipped = {_real(p) for p in skip}
    rejected: list[tuple[Path, str]] = []
    candidates = _walk(folder, skipped, rejected)
    candidates.sort(key=lambda p: (natural_key(p.relative_to(folder)), str(p)))
    videos: list[Path] = []
    seen: set[Path] = set()
    for path in candidates:
        real = _real(path)
        if real in seen:
            continue
        seen.add(real)
        why = is_video_file(path, ffmpeg)
        if why is None:
            videos.append(path)
        else:
            rejected.append((path, why))
    return Scan(videos=videos, rejected=rejected)


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path.expanduser()))


def _walk(folder: Path, skipped: set[Path], rejected: list[tuple[Path, str]]) -> list[Path]:
    """Candidate files under `folder` (unsorted); unreadable folders go to `rejected`."""
    found: list[Path] = []
    visited = {_real(folder)}
    pending = [folder]
    while pending:
        current = pending.pop()
        try:
            entries = list(os.scandir(current))
        except OSError as exc:
            rejected.append((current, f"folder cannot be read: {exc.strerror or exc}"))
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            if _is_dir(entry):
                real = _real(path)
                if real not in visited and real not in skipped:
                    visited.add(real)
                    pending.append(path)
            elif _is_candidate(entry):
                found.append(path)
    return found


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()  # follows symlinks: a linked folder is scanned (once)
    except OSError:
        return False


def _is_candidate(entry: os.DirEntry[str]) -> bool:
    """A file with a video extension, not one of drapto's outputs. Anything so named
    that is not a folder counts (a broken link, a FIFO): the scan then says why it
    cannot be encoded instead of leaving it out silently."""
    name = entry.name.lower()
    if name.endswith(OUTPUT_SUFFIX):
        return False
    return os.path.splitext(name)[1] in VIDEO_EXTENSIONS
