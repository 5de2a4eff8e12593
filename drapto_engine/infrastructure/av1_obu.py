"""Dolby Vision RPUs in AV1, counted from the packets (no decoding).

An AV1 temporal unit is a run of OBUs. A Dolby Vision RPU travels in a metadata OBU
(type 5) of metadata type ITU-T T.35 (4), country code 0xB5 (USA), provider code
0x003B (Dolby), provider-oriented code 0x00000800.
"""

from __future__ import annotations

from pathlib import Path

import av

OBU_METADATA = 5
METADATA_ITUT_T35 = 4
DOLBY_T35_PREFIX = bytes([0xB5, 0x00, 0x3B, 0x00, 0x00, 0x08, 0x00])


def _leb128(data: bytes, pos: int) -> tuple[int, int]:
    value = 0
    for i in range(8):
        if pos >= len(data):
            raise ValueError("truncated leb128")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            break
    return value, pos


def has_dolby_rpu(packet: bytes) -> bool:
    """Whether one AV1 temporal unit carries a Dolby Vision T.35 metadata OBU."""
    pos = 0
    try:
        while pos < len(packet):
            header = packet[pos]
            obu_type = (header >> 3) & 0x0F
            has_extension = bool(header & 0x04)
            has_size = bool(header & 0x02)
            pos += 2 if has_extension else 1
            if has_size:
                size, pos = _leb128(packet, pos)
            else:
                size = len(packet) - pos
            payload = packet[pos : pos + size]
            pos += size
            if obu_type == OBU_METADATA:
                metadata_type, start = _leb128(payload, 0)
                if metadata_type == METADATA_ITUT_T35 and payload[start:].startswith(
                    DOLBY_T35_PREFIX
                ):
                    return True
    except (ValueError, IndexError):
        return False
    return False


def count_rpu_packets(path: Path) -> tuple[int, int]:
    """(video packets, packets carrying an RPU) of an AV1 file's first video stream."""
    frames = with_rpu = 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for packet in container.demux(stream):
            if not packet.size:
                continue
            frames += 1
            with_rpu += has_dolby_rpu(bytes(packet))
    return frames, with_rpu
