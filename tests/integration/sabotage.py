"""`drapto` as a real process whose finished segments are damaged as they finish.

Usage: python sabotage.py shorten DRAPTO-ARGS...

The damage is done by an event subscriber, synchronously on `segment_done`, so the
segment file is shorter before drapto reads it again for the join (no race with a
watcher in another process). Everything else is the real CLI: its exit status, its
events on stdout, its one-line error on stderr.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from drapto_engine.core import events
from drapto_engine.infrastructure.ffmpeg.toolchain import find_toolchain
from drapto_engine.services.encoding.svt import SEGMENT_SUFFIX
from drapto_engine.services.workdir import WORK_PREFIX

DROPPED_FRAMES = 3


def recopy(ffmpeg: str, segment: Path, *options: str) -> None:
    """Replace `segment` by a stream copy of itself made with `options` (a real file)."""
    copy = segment.with_name(segment.stem + ".copy" + SEGMENT_SUFFIX)
    subprocess.run(
        [ffmpeg, "-v", "error", "-y", "-i", str(segment), "-map", "0", "-c", "copy",
         *options, str(copy)],
        check=True,
    )  # fmt: skip
    os.replace(copy, segment)


def shorten(ffmpeg: str, segment: Path, frames: int) -> None:
    """Replace `segment` by a copy of its first frames (a real, shorter AV1 file)."""
    recopy(ffmpeg, segment, "-frames:v", str(max(1, frames - DROPPED_FRAMES)))


def install(mode: str, output: Path) -> None:
    ffmpeg = find_toolchain().ffmpeg
    original = events.EventBus.emit

    def emit(self: events.EventBus, event: events.Event) -> None:
        original(self, event)
        if mode == "shorten" and isinstance(event, events.SegmentDone) and not event.resumed:
            work = output.parent / f"{WORK_PREFIX}{event.job}"
            shorten(ffmpeg, work / f"segment-{event.index:05d}{SEGMENT_SUFFIX}", event.frames)

    events.EventBus.emit = emit  # type: ignore[method-assign]


def main() -> int:
    mode, *args = sys.argv[1:]
    output = Path(args[args.index("-o") + 1]).absolute()
    install(mode, output)
    from drapto_engine.cli.main import main as drapto

    return drapto(args)


if __name__ == "__main__":
    sys.exit(main())
