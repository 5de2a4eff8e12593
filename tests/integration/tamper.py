"""`drapto` as a real process whose source, join or output is tampered with mid-run.

Usage: python tamper.py MODE OTHER DRAPTO-ARGS...   (OTHER: a file, or "-" for none)

Modes, each done by an event subscriber synchronously on drapto's own event, so the
moment is exact (no race with a watcher in another process):
  swap      on the first encoded segment, `os.replace(OTHER, source)`: another file
            takes the source's name (as `mv other.mkv a.mkv` would)
  rewrite   when the join starts (every segment encoded, nothing else reading the
            source), OTHER's bytes are written over the source in place (same inode), and
            its modification time is put back as it was: only the content fingerprint can
            see it. (On a segment's end a stat of the next segment, in a thread, could
            fall between the write and the put-back and see the time changed.)
  diskfull  whenever a join starts, the partial output's name is made a link to /dev/full:
            the join's writes fail with a real ENOSPC from the kernel
  worklistfull  whenever a join starts, its list of segments in the work folder is
            made a link to /dev/full: writing it fails with ENOSPC
  retime    when validation starts, one frame of the joined output is moved 1 ms
            (ffmpeg's setts bitstream filter): the frame count and duration still hold
  takeover  as the job is recorded done (validation passed), the test's own process
            (drapto's parent) takes the job's lock in the state database first, as a
            drapto that found the lock stale would: the output must not take its name
Everything else is the real CLI: its exit status, its events on stdout, its one-line
error on stderr.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from drapto_engine.core import events
from drapto_engine.core.state import JobStage
from drapto_engine.infrastructure import store
from drapto_engine.infrastructure.ffmpeg.toolchain import find_toolchain
from drapto_engine.services.outputs import partial_name
from drapto_engine.services.workdir import WORK_PREFIX

ONE_FRAME_LATE = "pts=if(eq(N\\,10)\\,PTS+1\\,PTS):dts=if(eq(N\\,10)\\,DTS+1\\,DTS)"


def retime(ffmpeg: str, path: Path) -> None:
    """Replace `path` by a stream copy of itself with one frame moved 1 ms."""
    copy = path.with_name(path.stem + ".retimed" + path.suffix)
    subprocess.run(
        [ffmpeg, "-v", "error", "-y", "-i", str(path), "-map", "0", "-c", "copy",
         "-bsf:v", f"setts={ONE_FRAME_LATE}", str(copy)],
        check=True,
    )  # fmt: skip
    os.replace(copy, path)


def install(mode: str, other: Path, source: Path, output: Path) -> None:
    original = events.EventBus.emit
    done: set[str] = set()

    def once(what: str) -> bool:
        first = what not in done
        done.add(what)
        return first

    def emit(self: events.EventBus, event: events.Event) -> None:
        original(self, event)
        if isinstance(event, events.SegmentDone) and not event.resumed:
            if mode == "swap" and once(mode):
                os.replace(other, source)
        elif isinstance(event, events.StageChanged):
            partial = partial_name(output)
            if mode == "rewrite" and event.stage == "muxing" and once(mode):
                stat = source.stat()
                with source.open("r+b") as file:
                    file.write(other.read_bytes())
                os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))
            if mode == "diskfull" and event.stage == "muxing":
                partial.symlink_to("/dev/full")
            elif mode == "worklistfull" and event.stage == "muxing":
                listing = output.parent / f"{WORK_PREFIX}{event.job}" / "segments.txt"
                listing.unlink(missing_ok=True)
                listing.symlink_to("/dev/full")
            elif mode == "retime" and event.stage == "validating":
                retime(find_toolchain().ffmpeg, partial)

    events.EventBus.emit = emit  # type: ignore[method-assign]
    if mode == "takeover":
        take_over_before_done()


def take_over_before_done() -> None:
    original = store.StateStore.set_stage

    def set_stage(
        self: store.StateStore, job_id: str, pid: int, stage: JobStage, *args: Any, **kwargs: Any
    ) -> None:
        if stage is JobStage.DONE:
            with self.transaction() as db:
                db.execute("UPDATE jobs SET lock_pid = ? WHERE id = ?", (os.getppid(), job_id))
        original(self, job_id, pid, stage, *args, **kwargs)

    store.StateStore.set_stage = set_stage  # type: ignore[method-assign]


def main() -> int:
    mode, other, *args = sys.argv[1:]
    source = Path(args[args.index("encode") + 1]).absolute()
    output = Path(args[args.index("-o") + 1]).absolute()
    install(mode, Path(other), source, output)
    from drapto_engine.cli.main import main as drapto

    return drapto(args)


if __name__ == "__main__":
    sys.exit(main())
