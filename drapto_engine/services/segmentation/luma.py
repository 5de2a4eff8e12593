"""The scene scan's decoder: a child process that writes every frame of a video's main
stream to stdout as a tiny 8-bit grey picture (raw bytes, frame after frame).

    python luma.py SOURCE WIDTH HEIGHT

It does what `ffmpeg -threads 1 -skip_loop_filter all -i SOURCE -map 0:V:0 -vf
scale=WIDTH:HEIGHT:flags=area,format=gray -fps_mode passthrough -f rawvideo -` did, with
the same libraries (PyAV's libavcodec and libswscale) and byte for byte the same output on
every file of the shared media, for about a fifth less CPU: the ffmpeg command line
passes every packet and frame between five threads (demuxer, decoder, filter, encoder,
muxer), some twenty futex calls a frame, where this runs them in one.

It runs as a script, not as part of the package, so that it starts by importing PyAV
alone. Errors: one line on stderr, exit status 1. Like ffmpeg, a packet that does not
decode is reported and skipped.
"""

from __future__ import annotations

import sys
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


def scan(source: str, width: int, height: int) -> int:
    import av
    from av.video.reformatter import VideoReformatter

    out = sys.stdout.buffer
    try:
        with av.open(source) as container:
            stream = _main_video_stream(container)
            if stream is None:
                print(f"{source}: no video stream", file=sys.stderr)
                return 1
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
            block = bytearray()
            for packet in container.demux(stream):
                try:
                    frames = packet.decode()
                except av.error.InvalidDataError as error:
                    print(f"{source}: error while decoding: {error}", file=sys.stderr)
                    continue
                for frame in frames:
                    small = reformat(
                        frame, width, height, "gray", interpolation="AREA", **one_thread
                    )
                    block += _rows(small.planes[0], width, height)
                    if len(block) >= WRITE_BYTES:
                        out.write(block)
                        block.clear()
            out.write(block)
            out.flush()
    except av.FFmpegError as error:
        print(f"{source}: {error}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # the scan stopped reading: nothing left to do
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(scan(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
