"""Running the real `drapto encode` and inspecting outputs independently of drapto's validator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np
import psutil
import pytest
from forked import run_forked, warm_imports

from drapto_engine.services.segmentation.scenes import DECODER as SCAN_DECODER

DRAPTO = [sys.executable, "-m", "drapto_engine.cli"]
FAST = ["--preset", "12", "--progress", "json"]
ANIME_GROUP = pytest.mark.xdist_group("anime-encode")
"""For tests using the `anime_encode` fixture (conftest.py): one xdist worker runs them
all, so it encodes once."""


@dataclass
class Run:
    returncode: int
    events: list[dict[str, Any]]
    stderr: str

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]


def encode(
    source: Path,
    output: Path,
    *extra: str,
    timeout: float = 300,
    config: Path | None = None,
    real: bool = False,
) -> Run:
    """`drapto encode SOURCE -o OUTPUT` (fast preset, JSON progress) to its end.

    It runs in a child forked from the test process (forked.py): a real process with its
    own exit status, environment, signals and logging, without the ~0.5 CPU-s of a fresh
    interpreter's imports; `real` runs `python -m drapto_engine.cli` instead."""
    chosen = ["--config", str(config)] if config else []
    argv = [*chosen, "encode", str(source), "-o", str(output), *FAST, *extra]
    if real:
        done = subprocess.run(
            [*DRAPTO, *argv], capture_output=True, text=True, timeout=timeout, check=False
        )
    else:
        warm_imports()
        done = run_forked(argv, Path.cwd(), dict(os.environ), timeout)
    return Run(done.returncode, parse_events(done.stdout), done.stderr)


def parse_events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def peak_concurrency(events: list[dict[str, Any]]) -> int:
    running: set[tuple[int, int]] = set()
    peak = 0
    attempts: dict[int, int] = {}
    for e in events:
        if e["type"] == "segment_started":
            attempts[e["index"]] = e["attempt"]
            running.add((e["index"], e["attempt"]))
            peak = max(peak, len(running))
        elif e["type"] in ("segment_done", "segment_failed"):
            running.discard((e["index"], e.get("attempt", attempts.get(e["index"], 1))))
    return peak


@dataclass
class StreamFacts:
    codec: str
    kind: str
    channels: int = 0
    language: str | None = None
    title: str | None = None
    disposition: int = 0
    duration_s: float = 0.0
    start_s: float = 0.0
    packets: int = 0


@dataclass
class FileFacts:
    streams: list[StreamFacts] = field(default_factory=list)
    chapters: list[str | None] = field(default_factory=list)
    width: int = 0
    height: int = 0
    pix_fmt: str = ""
    frames_decoded: int = 0

    def of(self, kind: str) -> list[StreamFacts]:
        return [s for s in self.streams if s.kind == kind]


def inspect(path: Path, decode: bool = True) -> FileFacts:
    """Demux every packet (and decode the video) with PyAV, as a player would."""
    facts = FileFacts()
    with av.open(str(path)) as c:
        ends: dict[int, float] = {}
        starts: dict[int, float] = {}
        counts: dict[int, int] = {}
        for packet in c.demux():
            if packet.pts is None or not packet.size or packet.time_base is None:
                continue
            i = packet.stream.index
            t0 = float(packet.pts * packet.time_base)
            t1 = float((packet.pts + (packet.duration or 0)) * packet.time_base)
            starts[i] = min(starts.get(i, t0), t0)
            ends[i] = max(ends.get(i, t1), t1)
            counts[i] = counts.get(i, 0) + 1
        for s in c.streams:
            cc = getattr(s, "codec_context", None)
            facts.streams.append(
                StreamFacts(
                    codec=cc.codec.canonical_name if cc is not None else "",
                    kind=s.type,
                    channels=cc.channels if s.type == "audio" else 0,
                    language=s.language,
                    title=s.metadata.get("title"),
                    disposition=int(s.disposition),
                    duration_s=ends.get(s.index, 0.0) - starts.get(s.index, 0.0),
                    start_s=starts.get(s.index, 0.0),
                    packets=counts.get(s.index, 0),
                )
            )
        facts.chapters = [ch.get("metadata", {}).get("title") for ch in c.chapters()]
    if decode:
        with av.open(str(path)) as c:
            for frame in c.decode(video=0):
                facts.frames_decoded += 1
                facts.width, facts.height, facts.pix_fmt = (
                    frame.width,
                    frame.height,
                    frame.format.name,
                )
    return facts


def luma_thumbnails(path: Path, size: tuple[int, int] = (64, 36)) -> list[np.ndarray]:
    """Every decoded frame as a small float luma image, in order."""
    out = []
    with av.open(str(path)) as c:
        for frame in c.decode(video=0):
            small = frame.reformat(width=size[0], height=size[1], format="gray")
            out.append(small.to_ndarray().astype(np.float32))
    return out


def drapto_children_of(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def ffmpeg_processes_touching(folder: Path) -> list[psutil.Process]:
    """Any ffmpeg process (or scene-scan decoder, which is PyAV's) whose command line
    names a path under `folder`."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmd = " ".join(proc.info.get("cmdline") or [])
        if ("ffmpeg" in cmd or str(SCAN_DECODER) in cmd) and str(folder) in cmd:
            found.append(proc)
    return found
