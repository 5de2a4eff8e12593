"""Search, encode, measure, correct: one segment brought to its target VMAF.

The same code runs on the engine's machine and on a cluster worker; what differs is
given as a `Machine`: the segment's encode arguments at a CRF and preset (`argv_at`),
how an encoder is run there (`run`: the engine's slot tracks it for the resource
manager, a worker sends its progress back) and how a measurement's process is tracked.
Probe sampling and the measurement (vmaf.py) are built here from those arguments. The
outcome is plain data (ints, floats, text), so a worker sends it back with msgpack.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drapto_engine.infrastructure.ffmpeg.runner import OnProgress, OnStart
from drapto_engine.services.encoding.plan import VideoPlan
from drapto_engine.services.quality.search import (
    Point,
    Target,
    brackets,
    estimate,
    first_final,
    score_at,
)
from drapto_engine.services.quality.vmaf import (
    MIN_FRAMES,
    MeasureFailed,
    Score,
    measure_file,
    sampled,
)

log = logging.getLogger(__name__)

PROBES, MAX_PROBES = 2, 3
"""Probe encodes before the final one: two, and a third when those two do not bracket
the target (an interpolation lands closer than an extrapolation)."""
PROBE_PRESET_STEP = 2
"""Probes run this many presets faster than the final encode (see docs/internals.md):
at 1080p, a probe at preset 8 scored 0.2-1.4 below a preset 6 final of the same CRF,
one at preset 10 3.2 below it at CRF 50 (its finals missed the band above it)."""
PROBE_PRESET_MAX = 12
PROBE_SUBSAMPLE = FINAL_SUBSAMPLE = 3
"""Probes and the finals of long segments are scored on every 3rd frame. An even step
falls in step with SVT-AV1's hierarchical mini-GOP (16 frames): every 2nd frame scored
a synthetic segment 2.2 above all its frames, as the frames of the lower temporal layers
are the better ones. An odd step visits every position of the mini-GOP; on real footage
it moved a mean by less than 0.1, and halved the measurement, which costs 2.5 times a
preset 10 encode when every frame is scored (docs/internals.md)."""
SAMPLE_MIN_FRAMES = 128
"""Segments of at least this many frames are probed on a sample of them (vmaf.sampled)
and their finals scored on every FINAL_SUBSAMPLE-th frame; shorter ones on every frame."""


@dataclass(frozen=True)
class Machine:
    """How this machine encodes and measures one segment."""

    argv_at: Callable[[int, int, Path], list[str]]
    """The segment's encode arguments at (crf, preset) into a file."""
    run: Callable[[list[str]], Awaitable[None]]
    """Runs an encoder's arguments (its progress reported as the segment's)."""
    threads: int
    source: Path
    """The source as the user named it (for messages)."""
    on_start: OnStart | None = None
    """Called with each measurement's process (the engine's resource manager tracks it)."""
    on_progress: OnProgress | None = None
    """Gets a measurement's progress: the segment shows it, and a stall watchdog sees
    that the segment is still being worked on."""

    async def encode(self, crf: int, preset: int, path: Path, *, sample: bool = False) -> list[str]:
        """Encode at `crf` and `preset` into `path` (with `sample`, only the probe sample
        of the segment's frames); the arguments it ran."""
        argv = self.argv_at(crf, preset, path)
        if sample:
            argv = sampled(argv)
        await self.run(argv)
        return argv

    async def measure(self, argv: list[str], path: Path, subsample: int) -> Score:
        """The score of `path` against the frames the encode of `argv` read, on every
        `subsample`-th of them."""
        return await measure_file(
            argv,
            path,
            path.with_name(f"{path.stem}.vmaf.json"),
            subsample=subsample,
            threads=self.threads,
            source=self.source,
            on_start=self.on_start,
            on_progress=self.on_progress,
        )


MET, MISSED, BOUND, FALLBACK, SHORT = "met", "missed", "bound", "fallback", "short"
"""A segment's target status: in the band; outside it after the correction; at a bound
of the CRF range that could not reach the target; the fixed CRF because measuring
failed; the fixed CRF because the segment is too short to measure."""


@dataclass
class Outcome:
    """What the search chose and measured (plain data: it crosses msgpack)."""

    crf: int
    vmaf: float | None = None
    vmaf_low5: float | None = None
    probes: list[list[float]] = field(default_factory=list)
    """[crf, score] of each probe, in the order they ran."""
    status: str = MET
    note: str | None = None
    """Why the target was not met, for a warning (None when met)."""
    encodes: int = 0
    """Encoders run (probes, finals, the correction)."""

    def data(self) -> dict[str, Any]:
        return {
            "crf": self.crf,
            "vmaf": self.vmaf,
            "vmaf_low5": self.vmaf_low5,
            "probes": [[int(c), float(s)] for c, s in self.probes],
            "status": self.status,
            "note": self.note,
            "encodes": self.encodes,
        }

    @classmethod
    def of(cls, data: object) -> Outcome:
        """An outcome back from `data()` (a worker's), checked field by field."""
        if not isinstance(data, dict):
            raise ValueError("not an outcome")
        crf, vmaf, low5 = data.get("crf"), data.get("vmaf"), data.get("vmaf_low5")
        probes, status, note = data.get("probes"), data.get("status"), data.get("note")
        encodes = data.get("encodes")
        if not (
            isinstance(crf, int)
            and isinstance(vmaf, float | None)
            and isinstance(low5, float | None)
            and isinstance(probes, list | tuple)  # Dask's msgpack gives tuples
            and all(isinstance(p, list | tuple) and len(p) == 2 for p in probes)
            and status in (MET, MISSED, BOUND, FALLBACK, SHORT)
            and isinstance(note, str | None)
            and isinstance(encodes, int)
        ):
            raise ValueError("not an outcome")
        return cls(
            crf, vmaf, low5, [[int(c), float(s)] for c, s in probes], str(status), note, encodes
        )


def target_of(plan: VideoPlan) -> Target | None:
    """The plan's target (None in CRF mode), with what the job's finished segments
    learned: the finals' offset from their probes and the CRF they were kept at."""
    if plan.target_vmaf is None:
        return None
    low, high = plan.crf_range
    return Target(plan.target_vmaf, low, high, offset=plan.vmaf_offset, hint=plan.vmaf_start)


def probe_preset(preset: int) -> int:
    return max(preset, min(PROBE_PRESET_MAX, preset + PROBE_PRESET_STEP))


async def reach_target(
    target: Target,
    *,
    preset: int,
    fallback_crf: int,
    frames: int,
    machine: Machine,
    output: Path,
    scratch: Path,
    known_probes: Sequence[Sequence[float]] = (),
    on_probe: Callable[[list[list[float]]], Awaitable[None]] | None = None,
) -> Outcome:
    """Encode one segment into `output` at the CRF that lands its VMAF on the target.

    Probes (at a faster preset) give the first estimate, shifted by what the job's
    earlier finals learned (`target.offset`); the segment is encoded at the real preset
    and measured; a miss of the band is corrected once from the measured
    point and whichever final is closer is kept. `known_probes` were measured by an
    earlier run (a resumed job) and are not probed again; `on_probe` gets the probes
    after each one. Measuring that fails ends in the fixed `fallback_crf`.
    """
    outcome = Outcome(crf=fallback_crf, probes=[[int(c), float(s)] for c, s in known_probes])
    if frames < MIN_FRAMES:
        return await _fallback(
            outcome, machine, preset, output, f"{frames} frames are too few to measure", SHORT
        )
    try:
        return await _search(target, preset, frames, machine, output, scratch, outcome, on_probe)
    except MeasureFailed as exc:
        log.warning("VMAF measurement failed: %s", exc)
        return await _fallback(
            outcome, machine, preset, output, f"VMAF measurement failed: {exc.problem}"
        )


async def _fallback(
    outcome: Outcome, machine: Machine, preset: int, output: Path, why: str, status: str = FALLBACK
) -> Outcome:
    outcome.status, outcome.vmaf, outcome.vmaf_low5 = status, None, None
    outcome.note = f"{why}; encoded at the fixed CRF {outcome.crf}"
    await machine.encode(outcome.crf, preset, output)
    outcome.encodes += 1
    return outcome


async def _search(
    target: Target,
    preset: int,
    frames: int,
    machine: Machine,
    output: Path,
    scratch: Path,
    outcome: Outcome,
    on_probe: Callable[[list[list[float]]], Awaitable[None]] | None,
) -> Outcome:
    points: list[Point] = [(int(c), s) for c, s in outcome.probes]
    fast = probe_preset(preset)
    sample = frames >= SAMPLE_MIN_FRAMES
    while len(points) < PROBES or (len(points) < MAX_PROBES and not brackets(points, target)):
        crf = estimate(points, target)
        if any(c == crf for c, _ in points):
            break  # pinned at a bound: another probe would say the same
        path = scratch / f"probe-{crf}.mp4"
        argv = await machine.encode(crf, fast, path, sample=sample)
        outcome.encodes += 1
        score = await machine.measure(argv, path, PROBE_SUBSAMPLE)
        path.unlink(missing_ok=True)
        points.append((crf, score.mean))
        outcome.probes.append([crf, score.mean])
        if on_probe is not None:
            await on_probe([list(p) for p in outcome.probes])
    finals: list[tuple[int, Score, Path]] = []
    crf = first_final(points, target)
    log.info("first final at CRF %d: the probes' line shifted by %+.3f", crf, target.offset)
    for attempt in range(2):
        path = scratch / f"final-{crf}.mp4"
        argv = await machine.encode(crf, preset, path)
        outcome.encodes += 1
        step = FINAL_SUBSAMPLE if frames >= SAMPLE_MIN_FRAMES else 1
        finals.append((crf, await machine.measure(argv, path, step), path))
        done_crf, score, _ = finals[-1]
        log.info("final at CRF %d: VMAF %.2f", done_crf, score.mean)
        if attempt == 1 or target.within(score.mean):
            break
        crf = _correction(target, points, done_crf, score.mean)
        if crf == done_crf:
            break  # at a bound: nothing left to try
        log.info("correction: CRF %d from probes %s and the final", crf, points)
    crf, score, path = min(
        finals, key=lambda f: (abs(f[1].mean - target.vmaf), f[1].mean < target.vmaf)
    )
    shutil.move(path, output)
    for _, _, other in finals:
        with contextlib.suppress(FileNotFoundError):
            other.unlink()
    outcome.crf, outcome.vmaf, outcome.vmaf_low5 = crf, score.mean, score.low5
    if target.within(score.mean):
        outcome.status = MET
    elif (crf == target.high and score.mean > target.vmaf) or (
        crf == target.low and score.mean < target.vmaf
    ):
        outcome.status = BOUND
        outcome.note = (
            f"target VMAF {target.vmaf:g} is out of reach in CRF {target.low}-{target.high}: "
            f"VMAF {score.mean:.2f} at CRF {crf}, the bound"
        )
    else:
        outcome.status = MISSED
        outcome.note = (
            f"VMAF {score.mean:.2f} at CRF {crf} is outside target "
            f"{target.vmaf:g} +/- {target.band:g} after one correction"
        )
    return outcome


def _correction(target: Target, probes: Sequence[Point], crf: int, score: float) -> int:
    """The CRF for a second final encode: the probes' curve shifted to pass through the
    measured final point (the faster preset scores differently, by about a constant),
    then searched again; at least one step from the first final, towards the target."""
    expected = score_at(probes, crf)
    shift = score - expected if expected is not None else 0.0
    shifted = [(c, s + shift) for c, s in probes if c != crf] + [(crf, score)]
    guess = estimate(shifted, target)
    if guess == crf:
        guess = target.clamp(crf + (1 if score > target.vmaf else -1))
    return guess
