"""HDR10 and Dolby Vision facts about a file, read without trusting the encoder that made it.

Where each fact lives (checked with ffmpeg 9.0.2 and PyAV 18, whose libraries are 8.1):

* The DOVI configuration record and the stream-level mastering display / content light
  level are only in ffmpeg's input dump (`ffmpeg -hide_banner -i FILE`, on stderr): PyAV
  does not expose stream side data. `parse_stream_side_data` reads that dump.
* Per-frame mastering display / content light level are frame side data
  (`MASTERING_DISPLAY_METADATA`, 88 bytes; `CONTENT_LIGHT_LEVEL`, 8 bytes): see
  `parse_mastering_display`, `parse_content_light` and `first_frame_hdr`.
* Dolby Vision RPUs are counted from the packets, not from decoded frames: an HEVC RPU is
  a NAL unit of type 62, an AV1 RPU an ITU-T T.35 metadata OBU with Dolby's codes. PyAV's
  libdav1d attaches only `DOVI_METADATA` (never `DOVI_RPU_BUFFER`) to AV1 frames, and
  PyAV's HEVC decoder leaves `DOVI_RPU_BUFFER` off some frames that do carry an RPU.
"""

from __future__ import annotations

import re
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av

from drapto_engine.core.models import ContentLight, DolbyVisionInfo, MasteringDisplay

# --- ffmpeg's input dump ------------------------------------------------------------------

_STREAM_LINE = re.compile(r"^\s*Stream #(\d+):(\d+)\S*: (\w+):")
_DOVI_LINE = re.compile(
    r"DOVI configuration record: version: (\d+)\.(\d+), profile: (\d+), level: (\d+), "
    r"rpu flag: (\d), el flag: (\d), bl flag: (\d), compatibility id: (\d+)"
    r"(?:, compression: (\d+))?"
)
_NUM = r"(-?\d+(?:\.\d+)?)"
_PAIR = rf"\(\s*{_NUM}\s*[, ]\s*{_NUM}\s*\)"
# "Mastering display metadata: has_primaries:1 has_luminance:1 r(0.7080,0.2920)
#  g(0.1700,0.7970) b(0.1310 0.0460) wp(0.3127, 0.3290) min_luminance=0.000100,
#  max_luminance=1000.000000" (note the missing comma in b and the space in wp).
_MASTERING_LINE = re.compile(
    r"Mastering display metadata: has_primaries:(\d) has_luminance:(\d) "
    rf"r{_PAIR} g{_PAIR} b{_PAIR} wp{_PAIR} "
    rf"min_luminance={_NUM}, max_luminance={_NUM}"
)
_CLL_LINE = re.compile(r"Content light level metadata: MaxCLL=(\d+), MaxFALL=(\d+)")


@dataclass(frozen=True)
class StreamSideData:
    """The side data ffmpeg prints under one stream of an input."""

    stream: str
    """"input:stream", e.g. "0:0"."""
    kind: str
    """"Video", "Audio", "Subtitle", "Attachment", "Data"."""
    dolby_vision: DolbyVisionInfo | None = None
    dovi_compression: int | None = None
    """The record's metadata compression (0 none, 1 limited, 3 extended); None if absent."""
    mastering_display: MasteringDisplay | None = None
    content_light: ContentLight | None = None


def ffmpeg_input_dump(ffmpeg: str, path: Path, timeout: float = 60) -> str:
    """What `ffmpeg -hide_banner -i FILE` prints (it exits 1: no output was named)."""
    done = subprocess.run(
        [ffmpeg, "-hide_banner", "-nostdin", "-i", str(path)],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=timeout,
        check=False,
    )
    return done.stderr


def parse_stream_side_data(dump: str) -> dict[str, StreamSideData]:
    """Per stream ("0:0"), the DOVI record and HDR10 metadata of ffmpeg's input dump.

    Only the input part is read: anything from the first "Output #" line on is ignored."""
    found: dict[str, dict[str, Any]] = {}
    current: dict[str, Any] | None = None
    for line in dump.splitlines():
        if line.startswith("Output #"):
            break
        if line.startswith("Input #"):
            current = None
            continue
        stream = _STREAM_LINE.match(line)
        if stream:
            key = f"{stream.group(1)}:{stream.group(2)}"
            current = found.setdefault(key, {"stream": key, "kind": stream.group(3)})
            continue
        if current is None:
            continue
        if dovi := _DOVI_LINE.search(line):
            current["dolby_vision"] = _dovi_info(dovi)
            if dovi.group(9) is not None:
                current["dovi_compression"] = int(dovi.group(9))
        elif mastering := _MASTERING_LINE.search(line):
            current["mastering_display"] = _mastering_from_text(mastering)
        elif cll := _CLL_LINE.search(line):
            current["content_light"] = ContentLight(
                max_cll=int(cll.group(1)), max_fall=int(cll.group(2))
            )
    return {key: StreamSideData(**values) for key, values in found.items()}


def parse_dovi_record(dump: str) -> DolbyVisionInfo | None:
    """The DOVI configuration record of the first video stream that has one, if any."""
    for side in parse_stream_side_data(dump).values():
        if side.kind == "Video" and side.dolby_vision is not None:
            return side.dolby_vision
    return None


def _dovi_info(match: re.Match[str]) -> DolbyVisionInfo:
    profile, level, rpu, el, bl, compat = (int(match.group(i)) for i in range(3, 9))
    return DolbyVisionInfo(
        profile=profile, level=level, rpu=bool(rpu), el=bool(el), bl=bool(bl), bl_compat_id=compat
    )


def _mastering_from_text(match: re.Match[str]) -> MasteringDisplay | None:
    if match.group(1) != "1" or match.group(2) != "1":
        return None
    v = [float(match.group(i)) for i in range(3, 13)]
    return MasteringDisplay(
        red=(v[0], v[1]),
        green=(v[2], v[3]),
        blue=(v[4], v[5]),
        white_point=(v[6], v[7]),
        min_luminance=v[8],
        max_luminance=v[9],
    )


# --- frame side data ----------------------------------------------------------------------

MASTERING_SIDE_DATA = "MASTERING_DISPLAY_METADATA"
CONTENT_LIGHT_SIDE_DATA = "CONTENT_LIGHT_LEVEL"
DOVI_METADATA_SIDE_DATA = "DOVI_METADATA"
DOVI_RPU_SIDE_DATA = "DOVI_RPU_BUFFER"


def parse_mastering_display(raw: bytes) -> MasteringDisplay | None:
    """Decode AVMasteringDisplayMetadata (88 bytes, native little-endian):
    display_primaries[3][2] (R, G, B; x then y), white_point[2], min_luminance,
    max_luminance (ten AVRational {int32 num, int32 den}), then int has_primaries,
    int has_luminance.

    Chromaticities are rounded to 4 decimals and luminances to 6, as ffmpeg prints them,
    so values read here equal those `parse_stream_side_data` reads from the dump.
    None when the struct is short or either half is flagged absent."""
    if len(raw) < 88:
        return None
    values = struct.unpack_from("<22i", raw)
    ratios = [values[i] / values[i + 1] if values[i + 1] else 0.0 for i in range(0, 20, 2)]
    has_primaries, has_luminance = values[20], values[21]
    if not (has_primaries and has_luminance):
        return None
    xy = [round(r, 4) for r in ratios[:8]]
    return MasteringDisplay(
        red=(xy[0], xy[1]),
        green=(xy[2], xy[3]),
        blue=(xy[4], xy[5]),
        white_point=(xy[6], xy[7]),
        min_luminance=round(ratios[8], 6),
        max_luminance=round(ratios[9], 6),
    )


def parse_content_light(raw: bytes) -> ContentLight | None:
    """Decode AVContentLightMetadata (8 bytes): unsigned MaxCLL, then MaxFALL."""
    if len(raw) < 8:
        return None
    max_cll, max_fall = struct.unpack_from("<2I", raw)
    return ContentLight(max_cll=max_cll, max_fall=max_fall)


def frame_side_data(frame: Any) -> dict[str, bytes]:
    """A decoded PyAV frame's side data by type name (the first of each type).

    PyAV up to 18.1.0 iterates a frame's side data as items that carry their `type`;
    18.1.1 made it a mapping from the type to the item: both are read."""
    found: dict[str, bytes] = {}
    side = frame.side_data
    for entry in side:
        kind, item = (entry.type, entry) if hasattr(entry, "type") else (entry, side[entry])
        found.setdefault(getattr(kind, "name", str(kind)), bytes(item))
    return found


def first_frame_hdr(path: Path) -> tuple[MasteringDisplay | None, ContentLight | None]:
    """Mastering display and content light level attached to the first decoded frame."""
    with av.open(str(path)) as container:
        for frame in container.decode(container.streams.video[0]):
            side = frame_side_data(frame)
            mastering = side.get(MASTERING_SIDE_DATA)
            cll = side.get(CONTENT_LIGHT_SIDE_DATA)
            return (
                parse_mastering_display(mastering) if mastering is not None else None,
                parse_content_light(cll) if cll is not None else None,
            )
    return None, None


# --- RPUs in the packets ------------------------------------------------------------------

HEVC_NAL_DOVI_RPU = 62
AV1_OBU_METADATA = 5
AV1_METADATA_ITUT_T35 = 4
# country code USA, terminal provider code Dolby, provider-oriented code 0x800
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


def av1_packet_has_rpu(packet: bytes) -> bool:
    """Whether an AV1 temporal unit (low-overhead OBUs) holds a Dolby Vision T.35 OBU."""
    pos = 0
    try:
        while pos < len(packet):
            header = packet[pos]
            obu_type = (header >> 3) & 0x0F
            pos += 2 if header & 0x04 else 1
            if header & 0x02:
                size, pos = _leb128(packet, pos)
            else:
                size = len(packet) - pos
            if obu_type == AV1_OBU_METADATA:
                payload = packet[pos : pos + size]
                metadata_type, start = _leb128(payload, 0)
                if metadata_type == AV1_METADATA_ITUT_T35 and payload.startswith(
                    DOLBY_T35_PREFIX, start
                ):
                    return True
            pos += size
    except (ValueError, IndexError):
        return False
    return False


def _annexb_nal_types(packet: bytes) -> list[int]:
    types = []
    pos = packet.find(b"\x00\x00\x01")
    while pos != -1 and pos + 3 < len(packet):
        types.append((packet[pos + 3] >> 1) & 0x3F)
        pos = packet.find(b"\x00\x00\x01", pos + 3)
    return types


def _length_prefixed_nal_types(packet: bytes, length_size: int) -> list[int] | None:
    """NAL unit types of a length-prefixed access unit; None if the lengths do not add up."""
    types = []
    pos = 0
    while pos < len(packet):
        if pos + length_size >= len(packet):
            return None
        size = int.from_bytes(packet[pos : pos + length_size], "big")
        pos += length_size
        if size == 0 or pos + size > len(packet):
            return None
        types.append((packet[pos] >> 1) & 0x3F)
        pos += size
    return types


def hevc_nal_length_size(extradata: bytes | None) -> int | None:
    """The NAL length field size of an hvcC record, or None for Annex B (start codes)."""
    if extradata and len(extradata) > 22 and extradata[0] == 1:
        return (extradata[21] & 0x03) + 1
    return None


def hevc_packet_has_rpu(packet: bytes, length_size: int | None) -> bool:
    """Whether an HEVC access unit holds a Dolby Vision RPU (NAL unit type 62).

    `length_size` comes from the hvcC record (Matroska, MP4); None means Annex B. A packet
    whose lengths do not add up is read as Annex B (some muxers mix the two)."""
    types = _length_prefixed_nal_types(packet, length_size) if length_size else None
    if types is None:
        types = _annexb_nal_types(packet)
    return HEVC_NAL_DOVI_RPU in types


def count_rpu_frames(path: Path) -> tuple[int, int]:
    """(frames, frames carrying a Dolby Vision RPU) of the first video stream.

    Counts demuxed packets (one per frame for HEVC and AV1) without decoding: about
    ten times faster than decoding, and exact where decoders are not (see the module
    docstring). Other codecs give (frames, 0)."""
    frames = with_rpu = 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        codec = stream.codec_context.codec.canonical_name
        length_size = hevc_nal_length_size(stream.codec_context.extradata)
        for packet in container.demux(stream):
            if not packet.size:
                continue
            frames += 1
            data = bytes(packet)
            if codec == "hevc":
                with_rpu += hevc_packet_has_rpu(data, length_size)
            elif codec == "av1":
                with_rpu += av1_packet_has_rpu(data)
    return frames, with_rpu
