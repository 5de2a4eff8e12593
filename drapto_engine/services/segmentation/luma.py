"""The scene scan's child: it decodes a video's main stream and shrinks every frame to a
tiny 8-bit grey picture, then either scores the pictures itself or writes them out.

    python luma.py SOURCE WIDTH HEIGHT THRESHOLD   # scores them (what the scan runs)
    python luma.py SOURCE WIDTH HEIGHT             # writes them to stdout, raw

Scoring: the cut rules of detector.py, fed BATCH frames at a time, with a JSON line on
stdout after each batch, {"settled": N, "cuts": [new cuts]} (every cut below frame N is
final), and a last line {"frames": N, "cuts": [[frame, score, kind], ...]}. The frames
never cross a pipe and drapto's own process does no numpy work for the scan.

Raw frames: what `ffmpeg -threads 1 -skip_loop_filter all -i SOURCE -map 0:V:0 -vf
scale=WIDTH:HEIGHT:flags=area,format=gray -fps_mode passthrough -f rawvideo -` writes,
with the same libraries (PyAV's libavcodec and libswscale) and byte for byte the same
output on every file of the shared media, for about a fifth less CPU: the ffmpeg command
line passes every packet and frame between five threads (demuxer, decoder, filter,
encoder, muxer), some twenty futex calls a frame, where this runs them in one.

It runs as a script, not as part of the package, so that it starts by importing PyAV
(and numpy) alone. Errors: one line on stderr, exit status 1. Like ffmpeg, a packet that
does not decode is reported and skipped.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Iterator
from typing import Any

WRITE_BYTES = 1 << 18  # frames are written in blocks of about this size


def _main_video_stream(container: Any) -> Any:
    """The first video stream that is not cover art (ffmpeg's `-map 0:V:0`)."""
    import av

    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    return None


def _rows(plane: Any, width: int, height: int) -> bytes | memoryview:
    """The picture's bytes without the padding at the end of each row."""
    data = memoryview(plane)
    if plane.line_size == width:
        return data
    return b"".join(data[r * plane.line_size : r * plane.line_size + width] for r in range(height))


def _small_frames(source: str, width: int, height: int) -> Iterator[bytes | memoryview]:
    """Every frame of the main video stream as WIDTH x HEIGHT grey bytes; raises
    LookupError for a file with no video stream."""
    import av
    from av.video.reformatter import VideoReformatter

    with av.open(source) as container:
        stream = _main_video_stream(container)
        if stream is None:
            raise LookupError(f"{source}: no video stream")
        decoder = stream.codec_context
        # One thread: frame threading costs more CPU in all, taken from the encoders
        # that share the cores. Deblocking only smooths block edges, which shrinking
        # to the analysis size averages away anyway; skipping it saves a quarter of
        # the decode.
        decoder.thread_count = 1
        decoder.options = {"skip_loop_filter": "all"}
        reformat = VideoReformatter().reformat
        # PyAV 17 scales in threads unless told otherwise; earlier ones have no such
        # argument and use one.
        one_thread = {"threads": 1} if int(av.__version__.split(".")[0]) >= 17 else {}
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.error.InvalidDataError as error:
                print(f"{source}: error while decoding: {error}", file=sys.stderr)
                continue
            for frame in frames:
                small = reformat(frame, width, height, "gray", interpolation="AREA", **one_thread)
                yield _rows(small.planes[0], width, height)


def write_frames(source: str, width: int, height: int) -> None:
    out = sys.stdout.buffer
    block = bytearray()
    for rows in _small_frames(source, width, height):
        block += rows
        if len(block) >= WRITE_BYTES:
            out.write(block)
            block.clear()
    out.write(block)
    out.flush()


def _detector_module() -> Any:
    """detector.py: as part of the package when this file was imported from it (tests),
    else as the file beside this script (importing the package would import all of
    drapto)."""
    if __package__:
        return importlib.import_module(f"{__package__}.detector")
    return importlib.import_module("detector")


def score_frames(source: str, width: int, height: int, threshold: float) -> None:
    import numpy as np

    detector_module = _detector_module()
    detector = detector_module.CutDetector(threshold)
    batch = detector_module.BATCH
    out = sys.stdout.buffer
    frame_bytes = width * height
    buffer = bytearray(batch * frame_bytes)
    pixels = np.frombuffer(buffer, np.uint8)
    reported = 0

    def feed(count: int) -> None:
        nonlocal reported
        detector.feed(pixels[: count * frame_bytes].reshape(count, height, width))
        new = detector.cut_frames[reported:]
        reported += len(new)
        out.write(json.dumps({"settled": detector.settled, "cuts": new}).encode() + b"\n")
        out.flush()

    count = 0
    for rows in _small_frames(source, width, height):
        buffer[count * frame_bytes : (count + 1) * frame_bytes] = rows
        count += 1
        if count == batch:
            feed(count)
            count = 0
    if count:
        feed(count)
    detector.finish()
    cuts = [[cut.frame, cut.score, cut.kind] for cut in detector.cuts]
    out.write(json.dumps({"frames": detector.frames, "cuts": cuts}).encode() + b"\n")
    out.flush()


def main(argv: list[str]) -> int:
    import av

    source, width, height = argv[0], int(argv[1]), int(argv[2])
    try:
        if len(argv) > 3:
            score_frames(source, width, height, float(argv[3]))
        else:
            write_frames(source, width, height)
    except LookupError as error:
        print(error, file=sys.stderr)
        return 1
    except av.FFmpegError as error:
        print(f"{source}: {error}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # the scan stopped reading: nothing left to do
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
