"""An engine process hosting its cluster, for tests that SIGKILL it: it prints the
scheduler's address, waits for a worker with encoder slots, queues SOURCE -> OUTPUT
(preset 12, 1-2 s segments) and runs it, printing each segment event as a JSON line.

    python cluster_engine_child.py FFMPEG CERTS FOLDER SOURCE OUTPUT
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from engine_helpers import remote_only_engine

from drapto_engine.cluster.scheduler import ENCODER
from drapto_engine.core.events import Event, SegmentDone, SegmentStarted
from drapto_engine.core.jobs import JobOptions


def say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


async def main(ffmpeg: str, certs: Path, folder: Path, source: Path, output: Path) -> None:
    engine = remote_only_engine(ffmpeg, certs, folder)
    await engine.start()
    assert engine.cluster is not None and engine.cluster.scheduler is not None
    scheduler = engine.cluster.scheduler
    say(address=engine.cluster.address)

    def emit(event: Event) -> None:
        if isinstance(event, SegmentStarted | SegmentDone):
            say(event=event.type, index=event.index, host=event.host, remote=event.remote)

    engine.bus.subscribe(emit)
    while not any(ws.resources.get(ENCODER) for ws in scheduler.workers.values()):
        await asyncio.sleep(0.1)
    options = JobOptions(preset=12, min_segment_s=1.0, max_segment_s=2.0)
    [entry] = await engine.add([(source, output)], options=options)
    say(entry=entry.id)
    await engine.run(only={entry.id}, ignore_pause=True)
    say(status=engine.entry(entry.id).status.value)


if __name__ == "__main__":
    ffmpeg, certs, folder, source, output = sys.argv[1:]
    asyncio.run(main(ffmpeg, Path(certs), Path(folder), Path(source), Path(output)))
