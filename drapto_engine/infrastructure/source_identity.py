"""Which file a job's source is: recorded once, checked before each step that reads it.

A source replaced or rewritten while it is encoded would give a file made of two films.
`identify` records the file's identity (device, inode, size, modification time and a
cheap content fingerprint); `check_unchanged` compares the file as it is now against it
and raises `SourceChanged`. The stat half costs one system call; the fingerprint reads
three 64 KiB blocks, whatever the file's size.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from drapto_engine.core.errors import SourceChanged

BLOCK = 64 * 1024
"""Bytes read at each of the fingerprint's three places."""


class SourceIdentity(BaseModel):
    """A source file as it was when its job was analysed."""

    model_config = ConfigDict(frozen=True)

    device: int
    inode: int
    size: int
    mtime_ns: int
    fingerprint: str

    def differences(self, other: SourceIdentity, *, place: bool = True) -> list[str]:
        """What differs from `other`, in words ([] when it is the same file). Without
        `place`, a copy of the same bytes and time elsewhere (another inode) is the same."""
        said: list[str] = []
        if place and (self.device, self.inode) != (other.device, other.inode):
            said.append("another file now has its name")
        if self.size != other.size:
            said.append(f"size {self.size} -> {other.size} bytes")
        if self.mtime_ns != other.mtime_ns:
            said.append("modification time changed")
        if self.fingerprint and other.fingerprint and self.fingerprint != other.fingerprint:
            said.append("content differs")
        return said


def fingerprint(path: Path) -> str:
    """The sha256 (hex) of the file's size and of three BLOCK-sized blocks: at the start,
    the middle and the end (a file shorter than a block is read whole, each time).

    Blocking: three reads whatever the size. Two files with the same fingerprint have
    the same size and the same bytes in those blocks; files that differ only elsewhere
    are not told apart. Raises OSError when the file cannot be read. (Cluster workers
    compute the same digest of their copy of a source: keep the two in step.)
    """
    digest = hashlib.sha256()
    with path.open("rb") as file:
        size = file.seek(0, os.SEEK_END)
        digest.update(f"{size}\n".encode())
        for offset in (0, max(0, size // 2 - BLOCK // 2), max(0, size - BLOCK)):
            file.seek(offset)
            digest.update(file.read(BLOCK))
    return digest.hexdigest()


def _stat(path: Path, fingerprinted: str) -> SourceIdentity:
    stat = path.stat()
    return SourceIdentity(
        device=stat.st_dev,
        inode=stat.st_ino,
        size=stat.st_size,
        mtime_ns=stat.st_mtime_ns,
        fingerprint=fingerprinted,
    )


def identify(path: Path) -> SourceIdentity:
    """The file's identity now (blocking: a stat and the fingerprint's three reads)."""
    return _stat(path, fingerprint(path))


def check_unchanged(path: Path, recorded: SourceIdentity, *, content: bool = True) -> None:
    """Raise SourceChanged unless `path` is still the file `recorded` describes.

    Without `content`, only the stat is compared (one system call: cheap enough before
    every segment); with it, the fingerprint too."""
    try:
        now = _stat(path, fingerprint(path) if content else "")
    except OSError as exc:
        raise SourceChanged(path, f"it cannot be read now: {exc.strerror}") from exc
    said = recorded.differences(now)
    if said:
        raise SourceChanged(path, "; ".join(said))
