"""Synthetic media for tests, made with ffmpeg's lavfi sources.

Every file is deterministic: the same arguments give the same frames, timestamps and
metadata, so tests can assert exact values (frame counts, crop rectangles, tags).
Sources and sizes are kept tiny so a file takes well under a second to make.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

# Sources with no dark edges: padding them gives bars that are the only dark border.
# rgbtestsrc is left out on purpose: its gradients start from black at the left edge.
DEFAULT_SOURCES: tuple[tuple[str, str], ...] = (
    ("testsrc2", ""),
    ("smptebars", ""),
    ("mandelbrot", ""),
    ("testsrc2", "hue=h=120"),
)

# Same arguments, same bytes: no random Matroska UIDs, no encoder version tags.
BITEXACT = ["-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact"]

MakeMedia = Callable[..., Path]
"""The `make_media` fixture: make_media("name.mkv", **make_video options) -> Path."""

_CODEC_SPEED: dict[str, list[str]] = {
    "libx264": ["-preset", "ultrafast"],
    "libx265": ["-preset", "ultrafast"],
    "libsvtav1": ["-preset", "12"],
}


@dataclass(frozen=True)
class Cut:
    """One scene: `duration` seconds of a lavfi source, then optional filters."""

    duration: float
    source: str = "testsrc2"
    filters: str = ""


@dataclass(frozen=True)
class Audio:
    """An audio track: a sine tone in a channel layout ("mono", "stereo", "5.1", "7.1")."""

    layout: str
    language: str | None = None
    title: str | None = None
    disposition: str | None = None  # e.g. "default", "forced", "comment", "0" for none
    codec: str = "aac"
    frequency: int = 440


@dataclass(frozen=True)
class Subtitle:
    """A subtitle track written as SRT, one cue a second."""

    cues: tuple[str, ...] = ("one", "two")
    language: str | None = None
    title: str | None = None
    disposition: str | None = None


@dataclass(frozen=True)
class ChapterMark:
    start_s: float
    end_s: float
    title: str


def frame_total(duration: float, rate: str) -> int:
    """How many frames `duration` seconds at `rate` hold (what make_video writes)."""
    return round(Fraction(duration) * Fraction(rate))


def run_ffmpeg(ffmpeg: str, args: Sequence[str]) -> None:
    """Run ffmpeg quietly; a failure raises with ffmpeg's own message."""
    done = subprocess.run(
        [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"ffmpeg {' '.join(args)} failed: {done.stderr.strip()}")


def _source(cut: Cut, size: tuple[int, int], rate: str, pix_fmt: str) -> str:
    """One cut as a filter chain of exactly the right number of frames."""
    width, height = size
    frames = frame_total(cut.duration, rate)
    chain = [f"{cut.source}=s={width}x{height}:r={rate}"]
    if cut.filters:
        chain.append(cut.filters)
    chain += [f"trim=end_frame={frames}", "setpts=PTS-STARTPTS"]
    chain += [f"scale={width}:{height}", "setsar=1", f"format={pix_fmt}"]
    return ",".join(chain)


def _letterbox(
    size: tuple[int, int], pad: tuple[int, int, int, int], bar_luma: int | None, pix_fmt: str
) -> str:
    """Shrink the picture to the pad's content size and surround it with bars.

    Padding happens in 4:4:4, where pad does not round odd offsets to the chroma grid, so
    the luma edge of the picture is exactly where `pad` says even for odd sizes."""
    width, height = size
    cw, ch, x, y = pad
    full = pix_fmt.replace("420", "444").replace("422", "444")
    chain = [f"scale={cw}:{ch}", f"format={full}", f"pad={width}:{height}:{x}:{y}:black"]
    if bar_luma is not None:
        # geq works in the frame's own code range, so the bar value is exact at any bit depth.
        inside = f"between(X,{x},{x + cw - 1})*between(Y,{y},{y + ch - 1})"
        chain.append(f"geq=lum='if({inside},lum(X,Y),{bar_luma})':cb='cb(X,Y)':cr='cr(X,Y)'")
    chain += ["setsar=1", f"format={pix_fmt}"]
    return ",".join(chain)


def video_graph(
    *,
    size: tuple[int, int],
    rate: str,
    pix_fmt: str,
    cuts: Sequence[Cut],
    pad: tuple[int, int, int, int] | None,
    bar_luma: int | None,
    colour: str,
    filters: str,
) -> str:
    """The lavfi graph: the cuts joined, then bars, colour tags and any extra filters."""
    chains = [f"{_source(cut, size, rate, pix_fmt)}[c{i}]" for i, cut in enumerate(cuts)]
    labels = "".join(f"[c{i}]" for i in range(len(cuts)))
    tail = [f"concat=n={len(cuts)}:v=1:a=0"]
    if pad is not None:
        tail.append(_letterbox(size, pad, bar_luma, pix_fmt))
    if colour:
        tail.append(colour)
    if filters:
        tail.append(filters)
    return ";".join(chains) + f";{labels}{','.join(tail)}[out0]"


def scenes_of(cuts: Sequence[float | Cut]) -> list[Cut]:
    """Durations become cuts cycling through DEFAULT_SOURCES, so each boundary is a hard
    scene cut; explicit `Cut`s are kept as they are."""
    return [
        c if isinstance(c, Cut) else Cut(float(c), *DEFAULT_SOURCES[i % len(DEFAULT_SOURCES)])
        for i, c in enumerate(cuts)
    ]


def cut_frames(cuts: Sequence[float | Cut], rate: str = "25") -> list[int]:
    """The first frame of each scene after the first: where the hard cuts are."""
    starts: list[int] = []
    total = 0
    for cut in scenes_of(cuts)[:-1]:
        total += frame_total(cut.duration, rate)
        starts.append(total)
    return starts


def _srt(cues: Sequence[str]) -> str:
    blocks = [
        f"{i + 1}\n00:00:{i:02d},000 --> 00:00:{i:02d},900\n{text}\n" for i, text in enumerate(cues)
    ]
    return "\n".join(blocks)


def _ffmetadata(chapters: Sequence[ChapterMark]) -> str:
    lines = [";FFMETADATA1"]
    for chapter in chapters:
        lines += [
            "[CHAPTER]",
            "TIMEBASE=1/1000",
            f"START={round(chapter.start_s * 1000)}",
            f"END={round(chapter.end_s * 1000)}",
            f"title={chapter.title}",
        ]
    return "\n".join(lines) + "\n"


def _colour_tags(
    primaries: str | None, trc: str | None, colorspace: str | None, color_range: str | None
) -> str:
    """A setparams filter tagging the frames: ffmpeg 9 lets frame tags override the
    -color_primaries and -color_trc output options, so the frames themselves are tagged."""
    given = {
        "color_primaries": primaries,
        "color_trc": trc,
        "colorspace": colorspace,
        "range": color_range,
    }
    params = [f"{name}={value}" for name, value in given.items() if value is not None]
    return f"setparams={':'.join(params)}" if params else ""


def _video_codec_args(
    codec: str, pix_fmt: str, master_display: str | None, max_cll: str | None
) -> list[str]:
    args = ["-c:v", codec, *_CODEC_SPEED.get(codec, []), "-pix_fmt", pix_fmt]
    if codec == "libx265":
        params = ["log-level=error"]
        if master_display or max_cll:
            params.append("hdr10=1")
        if master_display:
            params.append(f"master-display={master_display}")
        if max_cll:
            params.append(f"max-cll={max_cll}")
        args += ["-x265-params", ":".join(params)]
    elif master_display or max_cll:
        raise ValueError("HDR10 mastering metadata is written by libx265 only")
    return args


def make_video(
    ffmpeg: str,
    out: Path,
    *,
    size: tuple[int, int] = (320, 240),
    duration: float = 2.0,
    rate: str = "25",
    pix_fmt: str = "yuv420p",
    codec: str = "libx264",
    source: str = "testsrc2",
    cuts: Sequence[float | Cut] | None = None,
    pad: tuple[int, int, int, int] | None = None,
    bar_luma: int | None = None,
    filters: str = "",
    primaries: str | None = None,
    trc: str | None = None,
    colorspace: str | None = None,
    color_range: str | None = None,
    master_display: str | None = None,
    max_cll: str | None = None,
    gop: int | None = None,
    audio: Sequence[str | Audio] = (),
    subtitles: Sequence[Subtitle] = (),
    chapters: Sequence[ChapterMark] = (),
    output_args: Sequence[str] = (),
) -> Path:
    """Write a synthetic video (and any audio, subtitles, chapters) to `out`; return it.

    `pad` is (content width, content height, x, y): the picture is shrunk to the content
    size and placed at (x, y) on a `size` frame, with black bars, or bars of luma code
    `bar_luma` (in the pixel format's own range, e.g. 0..1023 for 10-bit). `cuts` are
    scene durations (cycling through DEFAULT_SOURCES) or explicit `Cut`s; without them
    the video is `duration` seconds of `source`. `filters` run last (e.g. "setsar=4/3").
    `gop` sets the keyframe interval in frames (x264's ultrafast preset never adds a
    keyframe at a scene cut, so a short file is otherwise a single GOP).
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    scenes = [Cut(duration, source)] if cuts is None else scenes_of(cuts)
    graph = video_graph(
        size=size,
        rate=rate,
        pix_fmt=pix_fmt,
        cuts=scenes,
        pad=pad,
        bar_luma=bar_luma,
        colour=_colour_tags(primaries, trc, colorspace, color_range),
        filters=filters,
    )
    inputs = ["-f", "lavfi", "-i", graph]
    maps = ["-map", "0:v"]
    seconds = sum(c.duration for c in scenes)
    for i, spec in enumerate(audio):
        _add_audio(i, spec if isinstance(spec, Audio) else Audio(spec), seconds, inputs, maps)
    for i, sub in enumerate(subtitles):
        _add_subtitle(i, sub, out, inputs, maps)
    if chapters:
        _add_chapters(chapters, out, inputs, maps)
    video_args = _video_codec_args(codec, pix_fmt, master_display, max_cll)
    if gop is not None:
        video_args += ["-g", str(gop)]
    run_ffmpeg(ffmpeg, [*inputs, *maps, *video_args, *BITEXACT, *output_args, str(out)])
    return out


def _input_count(inputs: Sequence[str]) -> int:
    return sum(arg == "-i" for arg in inputs)


def _add_audio(track: int, spec: Audio, seconds: float, inputs: list[str], maps: list[str]) -> None:
    """A sine tone input, mapped as audio track `track` (each track a different pitch)."""
    tone = f"sine=frequency={spec.frequency + 110 * track}:sample_rate=48000:duration={seconds}"
    maps += ["-map", f"{_input_count(inputs)}:a", f"-c:a:{track}", spec.codec]
    maps += _stream_tags(f"a:{track}", spec.language, spec.title, spec.disposition)
    inputs += ["-f", "lavfi", "-i", f"{tone},aformat=channel_layouts={spec.layout}"]


def _add_subtitle(track: int, sub: Subtitle, out: Path, inputs: list[str], maps: list[str]) -> None:
    """An SRT file beside `out`, mapped as subtitle track `track`."""
    srt = out.with_name(f"{out.stem}.sub{track}.srt")
    srt.write_text(_srt(sub.cues), encoding="utf-8")
    codec = "mov_text" if out.suffix in {".mp4", ".mov", ".m4v"} else "srt"
    maps += ["-map", f"{_input_count(inputs)}:s", f"-c:s:{track}", codec]
    maps += _stream_tags(f"s:{track}", sub.language, sub.title, sub.disposition)
    inputs += ["-i", str(srt)]


def _add_chapters(
    chapters: Sequence[ChapterMark], out: Path, inputs: list[str], maps: list[str]
) -> None:
    """An ffmetadata file beside `out` whose chapters the output takes."""
    chapter_file = out.with_name(f"{out.stem}.chapters.txt")
    chapter_file.write_text(_ffmetadata(chapters), encoding="utf-8")
    maps += ["-map_chapters", str(_input_count(inputs))]
    inputs += ["-f", "ffmetadata", "-i", str(chapter_file)]


def _stream_tags(
    spec: str, language: str | None, title: str | None, disposition: str | None
) -> list[str]:
    args: list[str] = []
    if language is not None:
        args += [f"-metadata:s:{spec}", f"language={language}"]
    if title is not None:
        args += [f"-metadata:s:{spec}", f"title={title}"]
    if disposition is not None:
        args += [f"-disposition:{spec}", disposition]
    return args


def make_audio_only(
    ffmpeg: str, out: Path, *, layout: str = "stereo", duration: float = 1.0
) -> Path:
    """An audio-only file (e.g. .mka): a sine tone, no video stream."""
    graph = (
        f"sine=frequency=440:sample_rate=48000:duration={duration},aformat=channel_layouts={layout}"
    )
    run_ffmpeg(ffmpeg, ["-f", "lavfi", "-i", graph, "-c:a", "aac", str(out)])
    return out


def remux(
    ffmpeg: str,
    src: Path,
    out: Path,
    *,
    input_args: Sequence[str] = (),
    output_args: Sequence[str] = (),
) -> Path:
    """Copy all streams of `src` into `out`, with options before the input (e.g.
    `-display_rotation 90`) or before the output (e.g. `-movflags +faststart`)."""
    run_ffmpeg(
        ffmpeg, [*input_args, "-i", str(src), "-map", "0", "-c", "copy", *output_args, str(out)]
    )
    return out


def truncate(src: Path, out: Path, fraction: float) -> Path:
    """The first `fraction` of `src`'s bytes, as a download cut short would leave it."""
    data = src.read_bytes()
    out.write_bytes(data[: int(len(data) * fraction)])
    return out


ONE_KEYFRAME_MIN_S = 8
"""drapto enters a segment of an MPEG-TS 5 s before its start (svt.SEEK_MARGIN_S: the
container has no index); a segment starting later than that in a file with no keyframe
after the first decodes nothing there, so it fails for real."""


def one_keyframe_ts(ffmpeg: str, out: Path, seconds: int = 12) -> Path:
    """A 160x90 MPEG-TS with a single keyframe and no index: a segmented encode fails on
    its segments past ONE_KEYFRAME_MIN_S, and only a whole-file encode works (the real
    failure that rollback tests need)."""
    assert seconds > ONE_KEYFRAME_MIN_S
    run_ffmpeg(ffmpeg, [
        "-f", "lavfi", "-i", f"testsrc2=size=160x90:rate=25:duration={seconds}",
        "-c:v", "libx264", "-preset", "ultrafast", "-g", "100000", "-sc_threshold", "0",
        "-f", "mpegts", str(out),
    ])  # fmt: skip
    return out


_VOP = b"\x00\x00\x01\xb6"
# The user data DivX 5 and Xvid's VfW write: the "p" tells decoders the B-frames are packed.
_PACKED_USER_DATA = b"\x00\x00\x01\xb2DivX503b1393p"


def _n_vop(time_increment_bits: int) -> bytes:
    """An MPEG-4 "not coded" P-VOP: the placeholder a packed B-frame leaves in its slot."""
    bits = "01" + "0" + "1" + "0" * time_increment_bits + "1" + "0"
    bits += "0" + "1" * ((8 - (len(bits) + 1) % 8) % 8)  # stuffing to the byte
    return _VOP + int(bits, 2).to_bytes(len(bits) // 8, "big")


def make_xvid_avi(
    ffmpeg: str, out: Path, *, duration: float = 4.0, dropped_first: str | None = "empty"
) -> Path:
    """An AVI as Xvid's and DivX's VfW codecs wrote them: MPEG-4 ASP with one B-frame
    packed into the packet of the frame before it (an N-VOP in its own slot), MP3 audio,
    and with `dropped_first` a dropped frame before the first picture: an "empty" chunk,
    or an "n-vop" (a not coded VOP, which decodes to nothing).

    ffmpeg writes B-frames unpacked, so its packets are packed here with PyAV. The
    frames are 25 fps testsrc2, a keyframe every 50."""
    import av  # only the tests that make this file need it

    plain = out.with_name(f"{out.stem}.unpacked.avi")
    run_ffmpeg(
        ffmpeg,
        ["-f", "lavfi", "-i", f"testsrc2=s=160x120:r=25:d={duration}",
         "-f", "lavfi", "-i", f"sine=d={duration}", "-c:v", "mpeg4", "-vtag", "XVID",
         "-bf", "1", "-g", "50", "-q:v", "4", "-c:a", "libmp3lame", "-b:a", "64k",
         *BITEXACT, str(plain)],
    )  # fmt: skip
    with av.open(str(plain)) as source, av.open(str(out), "w", format="avi") as target:
        video = source.streams.video[0]
        streams = {s.index: target.add_stream_from_template(s) for s in source.streams}
        packets = [p for p in source.demux() if p.size]
        dropped = {"empty": b"", "n-vop": _n_vop(5)}
        chunks = [(dropped[dropped_first], False)] if dropped_first else []
        for packet in (p for p in packets if p.stream is video):
            data = bytes(packet)
            if data[data.index(_VOP) + 4] >> 6 == 2 and chunks and chunks[-1][0]:  # a B-VOP
                chunks[-1] = (chunks[-1][0] + data, chunks[-1][1])
                chunks.append((_n_vop(5), False))  # 25 ticks a second: 5 bits
                continue
            if packet.is_keyframe:
                at = data.index(_VOP)
                data = data[:at] + _PACKED_USER_DATA + data[at:]
            chunks.append((data, packet.is_keyframe))
        for i, (data, key) in enumerate(chunks):
            chunk = av.Packet(data)
            chunk.stream = streams[video.index]
            chunk.time_base = video.time_base
            chunk.dts = chunk.pts = i
            chunk.is_keyframe = key
            target.mux(chunk)
        for packet in (p for p in packets if p.stream is not video):
            packet.stream = streams[packet.stream.index]
            target.mux(packet)
    plain.unlink()
    return out


# A picture idet takes for progressive (testsrc2's own fine moving edges read as
# interlaced, see services/detection/interlace.py): testsrc2 at half size, scaled back up.
SOFT_PATTERN = "scale=iw/2:ih/2,scale=iw*2:ih*2"

TS_PACKET = 188


def drop_head(src: Path, out: Path, share: float, unit: int = TS_PACKET) -> Path:
    """`src` without its first `share` of bytes, cut at a `unit` boundary (an MPEG-TS
    packet is 188 bytes): a recording that started mid-stream, so its first video packets
    belong to a GOP whose keyframe and parameter sets were never received."""
    data = src.read_bytes()
    out.write_bytes(data[(int(len(data) * share) // unit) * unit :])
    return out
