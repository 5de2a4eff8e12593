"""The cheap content fingerprint: size and three 64 KiB blocks (start, middle, end)."""

from __future__ import annotations

from pathlib import Path

from drapto_engine.infrastructure.source_identity import BLOCK, fingerprint


def _write(path: Path, data: bytearray) -> Path:
    path.write_bytes(bytes(data))
    return path


def test_a_change_in_any_of_the_three_blocks_or_the_size_is_seen(tmp_path: Path) -> None:
    size = 10 * BLOCK
    base = bytearray(i % 251 for i in range(size))
    reference = fingerprint(_write(tmp_path / "a", base))
    assert fingerprint(_write(tmp_path / "same", bytearray(base))) == reference
    for offset in (0, size // 2, size - 1):
        changed = bytearray(base)
        changed[offset] ^= 0xFF
        assert fingerprint(_write(tmp_path / f"at-{offset}", changed)) != reference, offset
    assert fingerprint(_write(tmp_path / "longer", base + b"\0")) != reference
    # Outside the blocks nothing is read: the documented limit of a cheap fingerprint.
    elsewhere = bytearray(base)
    elsewhere[2 * BLOCK] ^= 0xFF
    assert fingerprint(_write(tmp_path / "elsewhere", elsewhere)) == reference


def test_small_and_empty_files(tmp_path: Path) -> None:
    empty = fingerprint(_write(tmp_path / "empty", bytearray()))
    assert len(empty) == 64
    assert fingerprint(_write(tmp_path / "one", bytearray(b"x"))) != empty
