"""Run the drapto CLI in this process and, at its end, write the process's own CPU time
and its children's (the encoders, crop detection, scene scan, mux, validation) as JSON.

    .venv/bin/python bench/drapto_rusage.py OUT.json [--profile OUT.prof] -- encode FILE ...

`getrusage(RUSAGE_SELF)` is drapto's own work (every thread: progress parsing, psutil
sampling, events, SQLite, PyAV packet reads, the scene detector's numpy);
`RUSAGE_CHILDREN` is every ffmpeg it ran and waited for. With --profile, the main
thread runs under cProfile timed by its own CPU clock (threads started with
asyncio.to_thread are not profiled; the profiler itself adds to RUSAGE_SELF).
"""

from __future__ import annotations

import json
import resource
import sys
import time


def cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    out, rest = sys.argv[1], sys.argv[2:]
    profile = None
    if rest[:1] == ["--profile"]:
        profile, rest = rest[1], rest[2:]
    if rest[:1] == ["--"]:
        rest = rest[1:]
    start = time.monotonic()
    from drapto_engine.cli.main import main as drapto

    status = 1
    try:
        if profile:
            import cProfile

            with cProfile.Profile(time.thread_time) as prof:  # CPU of the main thread
                status = drapto(rest)
            prof.dump_stats(profile)
        else:
            status = drapto(rest)
    finally:
        figures = {
            "self_cpu_s": cpu(resource.RUSAGE_SELF),
            "children_cpu_s": cpu(resource.RUSAGE_CHILDREN),
            "wall_s": time.monotonic() - start,
            "exit": status,
        }
        with open(out, "w") as file:
            json.dump(figures, file)
    return status


if __name__ == "__main__":
    sys.exit(main())
