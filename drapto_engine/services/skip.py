"""Whether a queue entry needs no encode, and why: the note its skipped entry keeps.

Blocking (probes files, reads the state database): async callers use
`asyncio.to_thread`. The caller passes what the decision needs (the job's request as
it would run, whether AV1 sources are forced, the job store, ffmpeg).
"""

from __future__ import annotations

from pathlib import Path

from drapto_engine.core.errors import DraptoError
from drapto_engine.core.interfaces import JobStore
from drapto_engine.core.state import JobStage
from drapto_engine.infrastructure.probe import probe
from drapto_engine.services.library import ALREADY_AV1, is_av1
from drapto_engine.services.orchestrator import EncodeRequest, job_record

ALREADY_ENCODED = "already encoded"
"""The note of an entry whose job the state database holds as done."""

OUTPUT_VALIDATES = "output exists and validates"
"""The note of an entry whose existing output is AV1 with the source's frame count."""


def skip_reason(request: EncodeRequest, *, force: bool, jobs: JobStore, ffmpeg: str) -> str | None:
    """Why `request` needs no encode: its source is AV1 already (unless `force`), or
    its output exists and is a finished encode of it (unless it is to be overwritten).
    None when it is to be encoded."""
    source, output = request.input, request.output
    if not force and is_av1(source):
        return ALREADY_AV1
    if request.overwrite or not output.exists() or not source.exists():
        return None
    stored = jobs.job(job_record(request).id)
    if stored is not None and stored.stage is JobStage.DONE:
        return ALREADY_ENCODED
    return OUTPUT_VALIDATES if output_matches(source, output, ffmpeg) else None


def output_matches(source: Path, output: Path, ffmpeg: str) -> bool:
    """Whether an existing output is AV1 with the source's frame count (otherwise it is
    something else, not ours to skip)."""
    try:
        existing, original = probe(output, ffmpeg), probe(source, ffmpeg)
    except DraptoError:
        return False
    return (
        existing.video.codec == "av1" and existing.video.frame_count == original.video.frame_count
    )
