"""VMAF of an encoded segment against exactly the frames its encoder saw.

The reference side is read with the encode's own input options (seek, autorotate), its
stream map and its `-vf` chain (trim, deinterlace, crop, turn), then converted to the
encode's pixel format: the measurement is derived from the encode's arguments, never
written a second time. Both sides are retimed to their frame number before libvmaf, so
frames pair by index, not by timestamp.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from drapto_engine.core.errors import EncodeError
from drapto_engine.infrastructure.ffmpeg.runner import OnProgress, OnStart, run_ffmpeg

MODEL = "version=vmaf_v0.6.1"
"""libvmaf's built-in model (SDR, 1080p viewing at 3 picture heights)."""
FILTER_ENV = "DRAPTO_VMAF_FILTER"
"""Names the filter used instead of libvmaf (a test makes measuring fail with it)."""
MIN_FRAMES = 4
"""A segment shorter than this is not measured: a score of a handful of frames says
little, and the encode of the class's fixed CRF is kept for it."""
LOW_SHARE = 0.05
"""The 5% low: the mean of the worst 5% of frames' scores (at least one frame)."""

INPUT_OPTIONS = frozenset({"-threads", "-ss", "-noautorotate", "-copyts"})
"""Options before the encode's `-i` that decide which frames its decoder yields."""
VALUED = frozenset({"-threads", "-ss"})


class MeasureFailed(EncodeError):
    """VMAF could not be measured (libvmaf missing or crashing, an unreadable log, a
    segment too short): target quality rolls back to the fixed CRF."""


@dataclass(frozen=True)
class Score:
    """A segment's VMAF: the mean over its (measured) frames and its 5% low."""

    mean: float
    low5: float
    frames: int


def _after(argv: Sequence[str], option: str) -> str:
    try:
        return argv[list(argv).index(option) + 1]
    except (ValueError, IndexError):
        raise EncodeError(f"the segment arguments have no {option}") from None


def reference_input(encode_argv: Sequence[str]) -> tuple[list[str], str, str, str, int, str]:
    """From a segment encode's argv: its input options, input file, stream map, -vf
    chain, frame count and pixel format."""
    argv = list(encode_argv)
    at = argv.index("-i")
    options: list[str] = []
    i = 1
    while i < at:
        token = argv[i]
        if token in INPUT_OPTIONS:
            options.append(token)
            if token in VALUED:
                options.append(argv[i + 1])
                i += 1
        i += 1
    return (
        options,
        argv[at + 1],
        _after(argv, "-map"),
        _after(argv, "-vf"),
        int(_after(argv, "-frames:v")),
        _after(argv, "-pix_fmt"),
    )


def vmaf_argv(
    encode_argv: Sequence[str],
    distorted: Path,
    log: Path,
    *,
    subsample: int = 1,
    threads: int = 1,
) -> list[str]:
    """ffmpeg arguments scoring `distorted` (the encode's output) against the frames the
    encode of `encode_argv` fed its encoder, libvmaf's per-frame log written to `log`."""
    options, source, stream, chain, frames, pix_fmt = reference_input(encode_argv)
    retime = "settb=AVTB,setpts=N"
    name = os.environ.get(FILTER_ENV) or "libvmaf"
    vmaf = (
        f"{name}=model={MODEL}:log_fmt=json:log_path={_escaped(log)}"
        f":n_subsample={max(1, subsample)}:n_threads={max(1, threads)}:shortest=1"
    )
    graph = (
        f"[{stream}]{chain},trim=end_frame={frames},format={pix_fmt},{retime}[ref];"
        f"[1:v:0]format={pix_fmt},{retime}[dist];[dist][ref]{vmaf}"
    )
    return [
        encode_argv[0],
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        *options,
        "-i",
        source,
        "-threads",
        str(max(1, threads)),
        "-i",
        str(distorted),
        "-filter_complex",
        graph,
        "-frames:v",
        str(frames),
        "-progress",
        "pipe:1",
        "-nostats",
        "-f",
        "null",
        "-",
    ]


SAMPLE_RUN, SAMPLE_EVERY = 32, 64
"""A probe's sample: runs of 32 consecutive frames (two SVT-AV1 mini-GOPs) out of every
64, half the segment, from its start. Runs of 16 out of 48 scored up to 3.3 below the
probe of every frame on the 360p benchmark file; runs of 32 out of 64 within 0.4."""


def sampled(encode_argv: Sequence[str]) -> list[str]:
    """A segment encode's arguments cut down to its probe sample: a `select` after its
    `-vf` chain and the frame count of the sample. The measurement derived from these
    (vmaf_argv) selects the same frames of the reference."""
    argv = list(encode_argv)
    vf, count = argv.index("-vf") + 1, argv.index("-frames:v") + 1
    frames = int(argv[count])
    argv[vf] += f",select=lt(mod(n\\,{SAMPLE_EVERY})\\,{SAMPLE_RUN})"
    argv[count] = str(sum(n % SAMPLE_EVERY < SAMPLE_RUN for n in range(frames)))
    return argv


def _escaped(path: Path) -> str:
    """A path as a filter option's value inside a filter graph: escaped for the
    option parser (`\\ ' :`), then for the graph parser (`\\ ' [ ] , ;`)."""
    text = str(path)
    for level in ("\\':", "\\'[],;"):
        text = "".join("\\" + char if char in level else char for char in text)
    return text


def parse_log(text: str, source: Path | None = None) -> Score:
    """The mean and 5% low of libvmaf's JSON log (its per-frame scores)."""
    try:
        frames = json.loads(text)["frames"]
        scores = [float(frame["metrics"]["vmaf"]) for frame in frames]
    except (ValueError, KeyError, TypeError) as exc:
        raise MeasureFailed(f"libvmaf's log is unreadable ({exc})", source) from None
    scores = [s for s in scores if math.isfinite(s)]
    if not scores:
        raise MeasureFailed("libvmaf scored no frames", source)
    return score_of(scores)


def score_of(scores: Sequence[float]) -> Score:
    worst = sorted(scores)[: max(1, math.ceil(len(scores) * LOW_SHARE))]
    return Score(mean=sum(scores) / len(scores), low5=sum(worst) / len(worst), frames=len(scores))


async def measure_file(
    encode_argv: Sequence[str],
    distorted: Path,
    log: Path,
    *,
    subsample: int,
    threads: int,
    source: Path,
    on_start: OnStart | None = None,
    on_progress: OnProgress | None = None,
) -> Score:
    """Run the measurement of `distorted` (see vmaf_argv) and read its score; any
    failure is a MeasureFailed."""
    argv = vmaf_argv(encode_argv, distorted, log, subsample=subsample, threads=threads)
    try:
        result = await run_ffmpeg(argv, on_start=on_start, on_progress=on_progress)
    except OSError as exc:
        raise MeasureFailed(f"cannot run ffmpeg for VMAF: {exc.strerror}", source) from exc
    if result.returncode != 0:
        last = result.stderr_tail.splitlines()[-1] if result.stderr_tail else "no message"
        raise MeasureFailed(f"ffmpeg exit {result.returncode}: {last}", source)
    try:
        text = log.read_text(encoding="utf-8")
    except OSError as exc:
        raise MeasureFailed(f"libvmaf wrote no log ({exc.strerror})", source) from exc
    finally:
        log.unlink(missing_ok=True)
    return parse_log(text, source)
