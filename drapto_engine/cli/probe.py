"""`drapto probe FILE...`: media info and analysis, one block (or JSON line) per file.

A file that cannot be probed gets its one line on stderr and the others still print;
the exit status is 1 when any failed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import traceback
from pathlib import Path
from typing import Any

from drapto_engine.config import load_config
from drapto_engine.core.text import dumps
from drapto_engine.infrastructure.ffmpeg.toolchain import find_toolchain


def add_probe_parser(commands: Any) -> None:
    probe = commands.add_parser("probe", help="print media info and analysis for files")
    probe.add_argument("files", nargs="+", type=Path, metavar="FILE")
    probe.add_argument("--json", action="store_true", help="one JSON object per file per line")
    probe.add_argument("--no-crop", action="store_true", help="skip crop detection")


def run_probe(args: argparse.Namespace) -> int:
    return asyncio.run(_probe(args))


async def _probe(args: argparse.Namespace) -> int:
    # Imported here: the TUI's start-up must not pay for numpy and PyAV.
    from drapto_engine.cli.args import check_input
    from drapto_engine.cli.failure import explain
    from drapto_engine.core.reports import probe_json, probe_text
    from drapto_engine.services.detection import analyze_video

    ffmpeg = find_toolchain(load_config(args.config).ffmpeg_path).ffmpeg
    status = 0
    for path in args.files:
        try:
            check_input(path)
            analysis = await analyze_video(path, ffmpeg, crop_detection=not args.no_crop)
        except Exception as exc:  # one line per file, whatever went wrong; the rest go on
            if args.debug:
                traceback.print_exc()
            print(f"drapto: {explain(exc, path)[1]}", file=sys.stderr, flush=True)
            status = 1
            continue
        if args.json:
            print(dumps(probe_json(analysis)), flush=True)
        else:
            print(probe_text(analysis), flush=True)
    return status
