"""Regenerate screenshots/*.svg from a scripted session against a real engine:

    .venv/bin/python -m drapto_tui.screenshots [--out screenshots]

Makes a small library with lavfi (two SDR films, an HDR10 clip, an HLG clip), starts
an engine service in a temporary runtime folder, queues the library, and once the
first job is encoding its segments takes a screenshot of every screen: the queue,
the job detail with its segment grid, resources, flags, the log, the add dialog, the
quit dialog, and the queue again at 80x24. The engine is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import tempfile
import time
from pathlib import Path

from drapto_engine.infrastructure.ffmpeg.toolchain import find_toolchain

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


async def session(library: Path, out: Path, fixture: Path | None) -> None:
    from drapto_engine.core.jobs import JobOptions
    from drapto_engine.server.autostart import connect_or_start
    from drapto_engine.server.client import EngineClient
    from drapto_tui.app import DraptoApp

    async def connect() -> EngineClient:
        client = await connect_or_start(
            None, state_dir=None, config_path=None, start=True, client_name="screenshots"
        )
        assert client is not None
        return client

    setup = await connect()
    assert setup is not None
    await setup.set_workers(2)
    await setup.add_paths(
        [str(library / "Films"), str(library / "Clips")],
        options=JobOptions(preset=8, max_segment_s=4.0, min_segment_s=2.0),
    )
    await setup.close()
    app = DraptoApp(connect, settings=library / "tui.toml")
    async with app.run_test(size=SIZE) as pilot:
        deadline = time.monotonic() + 120
        while True:
            await pilot.pause(0.25)
            link = app.link
            jobs = link.state.jobs.values() if link else []
            if any(sum(s.state == "done" for s in j.segments.values()) >= 2 for j in jobs):
                break
            assert time.monotonic() < deadline, "no job reached its segments in time"
        await pilot.pause(1.5)
        shots = out
        app.save_screenshot(str(shots / "queue.svg"))
        if fixture is not None and app.link is not None:
            fixture.write_text(app.link.state.model_dump_json(indent=1))
        await pilot.press("enter")
        await pilot.pause(0.6)
        app.save_screenshot(str(shots / "job.svg"))
        await pilot.press("escape", "2")
        await pilot.pause(1.2)
        app.save_screenshot(str(shots / "resources.svg"))
        await pilot.press("3")
        await pilot.pause(0.4)
        app.save_screenshot(str(shots / "flags.svg"))
        await pilot.press("4")
        await pilot.pause(0.4)
        app.save_screenshot(str(shots / "log.svg"))
        await pilot.press("1", "a")
        await pilot.pause(0.6)
        app.save_screenshot(str(shots / "add.svg"))
        await pilot.press("escape", "q")
        await pilot.pause(0.4)
        app.save_screenshot(str(shots / "quit.svg"))
        await pilot.press("escape")
        await pilot.resize_terminal(80, 24)
        await pilot.pause(0.6)
        app.save_screenshot(str(shots / "queue-80x24.svg"))
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
