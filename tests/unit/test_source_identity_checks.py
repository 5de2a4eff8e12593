"""The source identity: what its fingerprint reads, and what a check tells."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from drapto_engine.core.errors import MediaError, SourceChanged
from drapto_engine.infrastructure.source_identity import check_unchanged, fingerprint, identify


def test_fingerprint_reads_the_size_and_three_blocks(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    data = bytearray(1 << 20)
    path.write_bytes(data)
    first = fingerprint(path)
    assert first == fingerprint(path)
    # start, middle and end blocks count; a byte between them is not read
    for offset, seen in (
        (10, True),
        ((1 << 19) + 5, True),
        ((1 << 20) - 1, True),
        (200_000, False),
    ):
        altered = bytearray(data)
        altered[offset] = 1
        path.write_bytes(altered)
        assert (fingerprint(path) != first) == seen, offset
    path.write_bytes(data + b"\0")
    assert fingerprint(path) != first
    small = tmp_path / "small.bin"
    small.write_bytes(b"abc")
    assert identify(small).size == 3 and identify(small).fingerprint == fingerprint(small)


def test_a_check_names_what_differs(tmp_path: Path) -> None:
    path = tmp_path / "a.mkv"
    path.write_bytes(b"x" * 1000)
    recorded = identify(path)
    check_unchanged(path, recorded)
    check_unchanged(path, recorded, content=False)
    stat = path.stat()
    with path.open("r+b") as file:  # same inode, same size, same time: only content tells
        file.write(b"y")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    check_unchanged(path, recorded, content=False)
    with pytest.raises(SourceChanged) as caught:
        check_unchanged(path, recorded)
    assert isinstance(caught.value, MediaError)
    assert caught.value.one_line() == (
        f"{path}: the source changed during the encode (content differs); nothing was written"
    )
    other = tmp_path / "other.mkv"
    other.write_bytes(b"x" * 1001)
    os.replace(other, path)
    with pytest.raises(SourceChanged, match="another file now has its name; size 1000 -> 1001"):
        check_unchanged(path, recorded, content=False)
    assert identify(path).differences(recorded) == [
        "another file now has its name",
        "size 1001 -> 1000 bytes",
        "modification time changed",
        "content differs",
    ]
    copy = tmp_path / "copy.mkv"  # the same bytes and time under another inode
    copy.write_bytes(path.read_bytes())
    os.utime(copy, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns))
    assert identify(copy).differences(identify(path), place=False) == []
    assert identify(copy).differences(identify(path)) == ["another file now has its name"]
    path.unlink()
    with pytest.raises(SourceChanged, match="it cannot be read now"):
        check_unchanged(path, recorded, content=False)
