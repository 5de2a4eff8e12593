"""Every kind of file a home library holds, made with the bundled ffmpeg and encoded end
to end: the output looks as the source looks in a player (orientation, displayed aspect),
holds every frame the source decodes to, once and at its time, progressive, keeps every
audio track (channels, language), and decodes as cleanly as a plain ffmpeg encode of the
same source. docs/kinds-of-file.md lists what drapto does with each kind.

DTS-HD MA is not here: ffmpeg decodes it but has no encoder for it (its `dca` encoder
writes DTS core only), so no such file can be made. Phone rotation, DVD rips (see
test_interlaced.py), cover art, Xvid AVIs and odd names are not here either."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from encode_helpers import encode
from mediagen import SOFT_PATTERN, Audio, Cut, drop_head, make_video, run_ffmpeg

from drapto_engine.cluster.tasks import packet_index, ship_segment
from drapto_engine.services.segmentation.timestamps import frame_times

pytestmark = pytest.mark.slow

Maker = Callable[[str, Path], Path]
STRICT = ("-strict", "-2")  # ffmpeg's TrueHD and DTS encoders are experimental


def soft(duration: float) -> list[Cut]:
    return [Cut(duration, "testsrc2", SOFT_PATTERN)]


def tv_h264(ffmpeg: str, folder: Path) -> Path:
    """H.264 (B-frames, a keyframe every 12) and AAC in MPEG-TS, the first 30% of the
    recording missing: it starts mid-GOP, without the parameter sets."""
    whole = make_video(ffmpeg, folder / "whole.ts", cuts=soft(2.0), gop=12,
                       audio=[Audio("stereo", language="eng")],
                       output_args=["-bf", "2", "-f", "mpegts"])  # fmt: skip
    return starting_mid_gop(drop_head(whole, folder / "recording.ts", 0.3))


def tv_mpeg2(ffmpeg: str, folder: Path) -> Path:
    """MPEG-2 video with AC-3 5.1 and a second AC-3 track in MPEG-TS, starting mid-GOP."""
    whole = make_video(ffmpeg, folder / "whole.ts", cuts=soft(2.0), codec="mpeg2video", gop=12,
                       audio=[Audio("5.1", language="eng", codec="ac3"),
                              Audio("stereo", language="fra", codec="ac3")],
                       output_args=["-bf", "2", "-b:v", "2M", "-f", "mpegts"])  # fmt: skip
    return starting_mid_gop(drop_head(whole, folder / "recording.ts", 0.3))


def tv_h264_mp4(ffmpeg: str, folder: Path) -> Path:
    """That recording copied into MP4 with its first packets kept (`-copyinkf`): an
    indexed file that starts mid-GOP, with no keyframe to seek back to."""
    recording = tv_h264(ffmpeg, folder)
    copy = folder / "recording.mp4"
    run_ffmpeg(ffmpeg, ["-i", str(recording), "-map", "0", "-c", "copy", "-copyinkf", str(copy)])
    return starting_mid_gop(copy)


def cut_mp4(ffmpeg: str, folder: Path) -> Path:
    """A clip cut from an MP4 by stream copy at 1.3 s: it starts at the keyframe before
    the cut, and its edit list hides the frames before the cut from every player."""
    whole = make_video(ffmpeg, folder / "whole.mp4", cuts=soft(3.0), gop=25,
                       audio=[Audio("stereo", "eng")], output_args=["-bf", "2"])  # fmt: skip
    clip = folder / "clip.mp4"
    run_ffmpeg(ffmpeg, ["-ss", "1.3", "-i", str(whole), "-map", "0", "-c", "copy", str(clip)])
    return clip


def starting_mid_gop(path: Path) -> Path:
    """`path`, checked to start with video packets that no decoder can show."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        first = next(p for p in container.demux(stream) if p.size)
        assert not first.is_keyframe
        packets = 1 + sum(1 for p in container.demux(stream) if p.size)
    with av.open(str(path)) as container:
        assert sum(1 for _ in container.decode(video=0)) < packets
    return path


def mjpeg_avi(ffmpeg: str, folder: Path) -> Path:
    """A camera's Motion JPEG (full-range 4:2:2) with 16-bit PCM in AVI."""
    return make_video(ffmpeg, folder / "camera.avi", cuts=soft(1.0), codec="mjpeg",
                      pix_fmt="yuvj422p", audio=[Audio("stereo", codec="pcm_s16le")],
                      output_args=["-q:v", "3"])  # fmt: skip


def prores_422(ffmpeg: str, folder: Path) -> Path:
    """ProRes 422 (10-bit 4:2:2) with 24-bit PCM in MOV."""
    return make_video(ffmpeg, folder / "edit.mov", cuts=soft(1.0), codec="prores_ks",
                      pix_fmt="yuv422p10le", audio=[Audio("stereo", "eng", codec="pcm_s24le")],
                      output_args=["-profile:v", "2"])  # fmt: skip


def prores_4444(ffmpeg: str, folder: Path) -> Path:
    """ProRes 4444, which ffmpeg decodes as 12-bit 4:4:4, with 24-bit PCM in MOV."""
    return make_video(ffmpeg, folder / "edit.mov", cuts=soft(1.0), codec="prores_ks",
                      pix_fmt="yuv444p10le", audio=[Audio("stereo", codec="pcm_s24le")],
                      output_args=["-profile:v", "4"])  # fmt: skip


def dnxhd_mov(ffmpeg: str, folder: Path) -> Path:
    """DNxHD 90 (8-bit 4:2:2; DNxHD has fixed sizes, 1280x720 the smallest) with 16-bit
    PCM in MOV."""
    return make_video(ffmpeg, folder / "edit.mov", size=(1280, 720), cuts=soft(0.6),
                      codec="dnxhd", pix_fmt="yuv422p",
                      audio=[Audio("stereo", codec="pcm_s16le")],
                      output_args=["-b:v", "90M"])  # fmt: skip


def dnxhr_mxf(ffmpeg: str, folder: Path) -> Path:
    """DNxHR HQX (10-bit 4:2:2) with two mono 24-bit PCM tracks in MXF, as cameras write."""
    return make_video(ffmpeg, folder / "edit.mxf", cuts=soft(1.0), codec="dnxhd",
                      pix_fmt="yuv422p10le",
                      audio=[Audio("mono", codec="pcm_s24le"), Audio("mono", codec="pcm_s24le")],
                      output_args=["-profile:v", "dnxhr_hqx"])  # fmt: skip


def hdv(ffmpeg: str, folder: Path) -> Path:
    """HDV: 1440x1080 anamorphic (SAR 4:3, 16:9 on screen), MPEG-2 coded interlaced, top
    field first, each frame two moments woven, with MPEG audio layer II, in MPEG-TS."""
    return make_video(ffmpeg, folder / "tape.m2t", size=(1440, 1080), rate="50",
                      cuts=[Cut(1.0, "testsrc2", SOFT_PATTERN)], codec="mpeg2video", gop=12,
                      filters="tinterlace=mode=interleave_top,setsar=4/3,setfield=tff",
                      audio=[Audio("stereo", codec="mp2")],
                      output_args=["-flags:v", "+ilme+ildct", "-b:v", "25M", "-bf", "2",
                                   "-f", "mpegts"])  # fmt: skip


def webm(ffmpeg: str, folder: Path) -> Path:
    """VP9 and Opus in WebM."""
    return make_video(ffmpeg, folder / "clip.webm", cuts=soft(1.0), codec="libvpx-vp9",
                      audio=[Audio("stereo", "eng", codec="libopus")],
                      output_args=["-deadline", "realtime", "-cpu-used", "8"])  # fmt: skip


def wmv(ffmpeg: str, folder: Path) -> Path:
    """Windows Media Video 8 and Audio 2 in ASF."""
    return make_video(ffmpeg, folder / "clip.wmv", cuts=soft(1.0), codec="wmv2",
                      audio=[Audio("stereo", codec="wmav2")])  # fmt: skip


def disc_audio(ffmpeg: str, folder: Path) -> Path:
    """Every disc audio codec ffmpeg can write, one track each, in Matroska."""
    tracks = [
        Audio("5.1", "eng", codec="truehd"),
        Audio("5.1", "deu", codec="dca"),
        Audio("5.1", "fra", codec="eac3"),
        Audio("stereo", "ita", codec="flac"),
        Audio("stereo", "spa", codec="pcm_s16le"),
        Audio("mono", "jpn", codec="pcm_s24le"),
    ]
    return make_video(ffmpeg, folder / "disc.mkv", cuts=soft(1.0), audio=tracks,
                      output_args=STRICT)  # fmt: skip


KINDS: list[Maker] = [
    tv_h264, tv_mpeg2, tv_h264_mp4, cut_mp4, mjpeg_avi, prores_422, prores_4444, dnxhd_mov,
    dnxhr_mxf, hdv, webm, wmv, disc_audio,
]  # fmt: skip


@dataclass
class Facts:
    """A file as a player shows it: decoded frames, their times, shape, audio tracks."""

    displayed_aspect: Fraction
    times: list[float]  # each decoded frame's time, seconds from the container's start
    thumbnails: list[np.ndarray]  # each decoded frame, grey, scaled to its displayed aspect
    field_order: int
    audio: list[tuple[int, str | None]]  # (channels, language) per track


def look(path: Path, start_from_zero: bool) -> Facts:
    """`start_from_zero`: times from the container's start (how ffmpeg reads a source),
    else as written (an output keeps its source's clock)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        sar = stream.sample_aspect_ratio or Fraction(1)
        shown = Fraction(stream.codec_context.width * sar, stream.codec_context.height)
        thumb_height = 36
        thumb_width = max(2, round(thumb_height * shown))
        start = (container.start_time or 0) / av.time_base if start_from_zero else 0.0
        times: list[float] = []
        thumbnails: list[np.ndarray] = []
        for frame in container.decode(stream):
            times.append(float(frame.time) - start if frame.time is not None else float("nan"))
            small = frame.reformat(width=thumb_width, height=thumb_height, format="gray")
            thumbnails.append(small.to_ndarray().astype(np.float32))
        audio = [(a.codec_context.channels, a.language) for a in container.streams.audio]
        return Facts(shown, times, thumbnails, int(stream.codec_context.field_order), audio)


PROGRESSIVE = 1  # AV_FIELD_PROGRESSIVE


def decode_warnings(ffmpeg: str, path: Path) -> set[str]:
    """What ffmpeg says when it decodes every stream of `path`, addresses left out."""
    done = subprocess.run(
        [ffmpeg, "-hide_banner", "-nostdin", "-v", "warning", "-i", str(path), "-map", "0",
         "-f", "null", "-"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return {re.sub(r" @ 0x[0-9a-f]+", "", line) for line in done.stderr.splitlines()}


def plain_encode(ffmpeg: str, source: Path, out: Path) -> Path:
    """What a person would type: ffmpeg's own SVT-AV1 encode of the same file."""
    run_ffmpeg(ffmpeg, ["-i", str(source), "-map", "0:v:0", "-map", "0:a?",
                        "-c:v", "libsvtav1", "-preset", "12", "-c:a", "flac", str(out)])  # fmt: skip
    return out


def mismatch(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).mean())


@pytest.mark.parametrize("make", KINDS, ids=lambda make: make.__name__)
def test_each_kind_of_file_comes_out_as_a_player_shows_it(
    make: Maker, ffmpeg: str, tmp_path: Path
) -> None:
    source = make(ffmpeg, tmp_path)
    output = tmp_path / "encoded.mkv"
    run = encode(source, output)
    assert run.returncode == 0, run.stderr
    [analysis] = run.of("analysis")
    ours, theirs = look(output, start_from_zero=False), look(source, start_from_zero=True)
    assert ours.displayed_aspect == theirs.displayed_aspect
    assert ours.field_order == PROGRESSIVE
    if theirs.field_order > PROGRESSIVE:  # coded interlaced: deinterlaced, said so
        assert analysis["deinterlace"].startswith("deinterlaced with bwdif"), analysis
    # every frame the source decodes to, once, at its time (Matroska keeps milliseconds)
    assert len(ours.times) == len(theirs.times), (len(ours.times), len(theirs.times))
    assert analysis["frames"] == len(theirs.times)  # the figure the plan and summary show
    off = [i for i, (a, b) in enumerate(zip(ours.times, theirs.times, strict=True))
           if not abs(a - b) <= 0.0005 + 1e-9]  # fmt: skip
    assert not off, (off[:5], ours.times[:5], theirs.times[:5])
    # the same picture the same way up: closer to its source frame than to that frame
    # turned or mirrored
    middle = len(ours.thumbnails) // 2
    mine, original = ours.thumbnails[middle], theirs.thumbnails[middle]
    distance = mismatch(mine, original)
    for turned in (original[::-1], original[:, ::-1], original[::-1, ::-1]):
        assert distance * 2 < mismatch(mine, turned), distance
    assert distance < 5, distance
    assert ours.audio == theirs.audio
    plain = plain_encode(ffmpeg, source, tmp_path / "plain.mkv")
    new = decode_warnings(ffmpeg, output) - decode_warnings(ffmpeg, plain)
    assert not new, new


def test_a_recording_cut_mid_gop_ships_to_a_worker_from_its_first_shown_frame(
    ffmpeg: str, tmp_path: Path
) -> None:
    """A worker gets the packets of frames [0, n) of what frame_times counts: from the
    first keyframe on, nothing to drop before frame 0."""
    source = tv_h264(ffmpeg, tmp_path)
    shown = len(frame_times(source))
    index = packet_index(source)
    packets, preroll = ship_segment(source, 0, shown, index)
    assert preroll == 0
    shipped = tmp_path / "shipped.nut"
    shipped.write_bytes(packets)
    with av.open(str(shipped)) as container:
        times = [frame.pts for frame in container.decode(video=0)]
    assert len(times) == shown
    assert times == sorted(index.sorted_pts())


def test_a_recording_whose_audio_starts_first_keeps_every_segment_s_frames(
    ffmpeg: str, tmp_path: Path
) -> None:
    """Broadcast MPEG-TS often starts its audio before its video. A segment starting in
    the first 5 s is entered at 0 and trimmed by time: on the source's own timestamps,
    not on ffmpeg's shifted ones (which start at the video's start when it reads the
    video alone), so each segment holds its own frames."""
    cuts = [Cut(1.2, "testsrc2", SOFT_PATTERN), Cut(1.2, "testsrc2", f"{SOFT_PATTERN},hflip")]
    whole = make_video(ffmpeg, tmp_path / "whole.mkv", cuts=cuts, gop=10,
                       audio=[Audio("stereo", "eng")])  # fmt: skip
    source = tmp_path / "broadcast.ts"
    run_ffmpeg(ffmpeg, ["-itsoffset", "0.4", "-i", str(whole), "-i", str(whole),
                        "-map", "0:v", "-map", "1:a", "-c", "copy", str(source)])  # fmt: skip
    output = tmp_path / "broadcast.mkv"
    run = encode(source, output, "--min-segment", "1", "--max-segment", "2")
    assert run.returncode == 0, run.stderr
    assert len(run.of("segment_done")) == 2, run.events
    ours, theirs = look(output, start_from_zero=False), look(source, start_from_zero=True)
    assert len(ours.times) == len(theirs.times) == 60
    assert theirs.times[0] > 0.3  # the premise: the video starts well after the audio
    assert ours.times == pytest.approx(theirs.times, abs=0.0005 + 1e-9)
    # every frame is its own source frame, not a neighbour's
    errors = [mismatch(a, b) for a, b in zip(ours.thumbnails, theirs.thumbnails, strict=True)]
    shifted = [mismatch(a, b) for a, b in zip(ours.thumbnails[1:], theirs.thumbnails, strict=False)]
    assert max(errors) < min(shifted), (max(errors), min(shifted))


def test_a_raw_mpeg2_stream_is_refused_before_any_work(ffmpeg: str, tmp_path: Path) -> None:
    """A raw MPEG video stream (.m2v) has no timestamps: libavformat times its first frame
    one frame late (its dts plus the reorder delay) where ffmpeg's command line counts
    from 0, so segment 0 would drop source frame 0 and show each frame's successor, and
    validation, reading the same packet times, could not tell. It is refused instead."""
    cuts = [Cut(1.2, "testsrc2", SOFT_PATTERN), Cut(1.2, "testsrc2", f"{SOFT_PATTERN},hflip")]
    source = make_video(ffmpeg, tmp_path / "title.m2v", cuts=cuts, codec="mpeg2video", gop=10,
                        output_args=["-bf", "2", "-b:v", "2M"])  # fmt: skip
    output = tmp_path / "title.mkv"
    run = encode(source, output, "--min-segment", "1", "--max-segment", "2")
    assert run.returncode == 1
    assert run.stderr.splitlines() == [
        f"drapto: {source}: is a raw MPEG video stream with no timestamps: its frames cannot "
        "be placed exactly (remux it first, e.g. ffmpeg -i IN.m2v -c copy -f vob OUT.mpg)"
    ]
    assert not run.of("segment_started") and sorted(p.name for p in tmp_path.iterdir()) == [
        "title.m2v"
    ]
