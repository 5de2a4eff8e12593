"""Regenerate screenshots/*.svg from a scripted session against a real engine:

    .venv/bin/python tools/screenshots.py [--out screenshots]

Makes a small library with lavfi (two SDR films, an HDR10 clip, an HLG clip), starts
an engine service in a temporary runtime folder, queues the library, and once the
first job is encoding its segments takes a screenshot of every screen: the queue,
the job detail with its segment grid, resources, flags, the log, the add dialog, the
quit dialog, the queue and the job again at 80x24, the queue at 160x48 (the full
segment grid and sparklines) and the remove confirmation. The engine is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from drapto_tui.client import find_toolchain

SIZE = (110, 34)

LIBRARY = {
    "Films/Big Night (2021).mkv": ["-f", "lavfi", "-i", "testsrc2=size=960x540:rate=24:duration=40"],
    "Films/Quiet Harbour (2019).mkv": [
        "-f", "lavfi", "-i", "mandelbrot=size=640x360:rate=25", "-t", "20",
    ],
    "Clips/Sunset HDR10.mkv": [
        "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=24:duration=6",
        "-c:v", "libx265", "-pix_fmt", "yuv420p10le",
        "-x265-params", "colorprim=bt2020:transfer=smpte2084:colormatrix=bt2020nc:log-level=error",
        "-color_primaries", "bt2020", "-color_trc", "smpte2084", "-colorspace", "bt2020nc",
    ],
    "Clips/Stadium HLG.mkv": [
        "-f", "lavfi", "-i", "smptehdbars=size=640x360:rate=25:duration=6",
        "-c:v", "libx265", "-pix_fmt", "yuv420p10le",
        "-x265-params", "colorprim=bt2020:transfer=arib-std-b67:colormatrix=bt2020nc:log-level=error",
        "-color_primaries", "bt2020", "-color_trc", "arib-std-b67", "-colorspace", "bt2020nc",
    ],
}  # fmt: skip


def make_library(ffmpeg: str, root: Path) -> None:
    for name, args in LIBRARY.items():
        out = root / name
        out.parent.mkdir(parents=True, exist_ok=True)
        codec = [] if "-c:v" in args else ["-c:v", "libx264", "-g", "48"]
        subprocess.run([ffmpeg, "-v", "error", "-y", *args, *codec, str(out)], check=True)
    # an interrupted download, as libraries have: the engine skips it with a warning
    (root / "Films" / "Harbour (partial download).mkv").write_bytes(b"\x1a\x45\xdf\xa3" * 64)


async def session(library: Path, out: Path, fixture: Path | None) -> None:
    from textual.widgets import DirectoryTree, Input

    from drapto_engine.core.jobs import JobOptions
    from drapto_tui.app import DraptoApp
    from drapto_tui.client import Config, service_connector
    from drapto_tui.widgets.queue_table import QueueTable

    connect = service_connector(Config(), None)  # starts an engine in the temporary runtime
    setup = await connect()
    await setup.set_workers(2)
    options = JobOptions(preset=8, max_segment_s=4.0, min_segment_s=2.0)
    await setup.add_paths([str(library / "Clips")], options=options)
    await setup.close()
    app = DraptoApp(connect, settings=library / "tui.toml", browse_root=library)
    async with app.run_test(size=SIZE) as pilot:

        async def until(condition: Callable[[], bool], timeout: float = 120) -> None:
            deadline = time.monotonic() + timeout
            while not condition():
                assert time.monotonic() < deadline, "the session did not get there in time"
                await pilot.pause(0.05)

        async def shot(name: str, *keys: str) -> None:
            """Press keys, let the app redraw twice, save the screen."""
            await pilot.press(*keys)
            ticks = app.ticks
            await until(lambda: app.ticks >= ticks + 2)
            app.save_screenshot(str(out / name))

        await until(lambda: app.mirror is not None)
        mirror = app.mirror
        assert mirror is not None

        def film() -> int | None:
            """The entry of a film with finished segments and one well under way."""
            for entry in mirror.state.entries:
                job = mirror.state.jobs.get(entry.job or "")
                segments = job.segments.values() if job else []
                if (
                    "Films" in entry.input
                    and sum(s.state == "done" for s in segments) >= 2
                    and any(s.state == "running" and s.percent >= 30 for s in segments)
                ):
                    return entry.id
            return None

        await mirror.client.add_paths([str(library / "Films")], options=options)  # seen live
        await until(lambda: film() is not None)
        shown = film()
        assert shown is not None
        table = app.screen.query_one(QueueTable)
        table.select_entry(shown)
        await shot("queue.svg")
        if fixture is not None:
            fixture.write_text(mirror.state.model_dump_json(indent=1))

        def under_way() -> bool:
            entry = mirror.entry(shown)
            job = mirror.state.jobs.get(entry.job or "") if entry else None
            segments = job.segments.values() if job else []
            return any(s.state == "running" and s.percent >= 10 for s in segments)

        await until(under_way, timeout=30)
        await shot("job.svg", "enter")
        await shot("resources.svg", "escape", "2")
        await shot("flags.svg", "3")
        await shot("log.svg", "4")
        await pilot.press("1", "a")
        tree = app.screen.query_one(DirectoryTree)
        await until(lambda: bool(tree.root.children))
        app.screen.query_one(Input).cursor_blink = False
        await shot("add.svg")
        await shot("quit.svg", "escape", "q")
        await pilot.press("escape")
        await until(lambda: app.screen is table.screen)
        await pilot.resize_terminal(80, 24)
        table.focus()
        await shot("queue-80x24.svg")
        await shot("job-80x24.svg", "enter")
        await pilot.press("escape")
        await until(lambda: app.screen is table.screen)
        await shot("remove-80x24.svg", "end", "x")  # asks, naming the row
        await pilot.press("escape")
        await until(lambda: app.screen is table.screen)
        table.select_entry(shown)
        await pilot.resize_terminal(160, 48)
        await shot("queue-160x48.svg")
        await app.leave(stop_engine=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="regenerate the TUI screenshots")
    parser.add_argument("--out", type=Path, default=Path("screenshots"))
    parser.add_argument(
        "--fixture", type=Path, help="also save the engine snapshot shown (for snapshot tests)"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    ffmpeg = find_toolchain().ffmpeg
    with tempfile.TemporaryDirectory(prefix="drapto-shots-") as folder:
        root = Path(folder)
        for var in ("XDG_RUNTIME_DIR", "XDG_STATE_HOME", "XDG_CONFIG_HOME"):
            path = root / var.lower()
            path.mkdir(mode=0o700)
            os.environ[var] = str(path)
        library = root / "library"
        make_library(ffmpeg, library)
        fixture = args.fixture.resolve() if args.fixture else None
        asyncio.run(session(library, args.out.resolve(), fixture))


if __name__ == "__main__":
    main()
