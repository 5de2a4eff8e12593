"""Where a segment is encoded: one small seam between the segment broker and the machines.

The broker (services/broker.py) asks an executor for a slot (`async with
executor.slot(...) as slot`), then has the slot encode one segment into the job's
partial file (`await slot.encode(work)`): the file is whole and its frames counted when that returns, or an
EncodeError says why not. Naming the file, recording it in the state store and retries
stay in the broker, resume, validation and the join in their own modules, the same for
every executor.

`LocalExecutor` (local.py) runs ffmpeg on this machine under the engine's
ResourceManager, as drapto always has. `DaskExecutor` (cluster/executor.py, with the cluster extra)
sends a segment to a remote worker when no local slot is free.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from drapto_engine.core.errors import EncodeError
from drapto_engine.core.models import Segment
from drapto_engine.infrastructure.ffmpeg.progress import Progress
from drapto_engine.infrastructure.source_identity import SourceIdentity
from drapto_engine.services.encoding.plan import VideoPlan
from drapto_engine.services.quality.runner import Outcome


class SegmentRejected(EncodeError):
    """A remote segment failed through no fault of the segment: its job was just rolled
    back to this machine, or no worker is left that could run it. The attempt does not
    count against the segment's tries; the next one is placed afresh (here, if no worker
    is usable)."""

    retry_elsewhere = True


@dataclass(frozen=True)
class SegmentWork:
    """One segment to encode into `partial` (the orchestrator names it once checked)."""

    job: str
    plan: VideoPlan
    segment: Segment
    partial: Path
    threads: int
    """The local share of the cores; a remote worker uses its own share."""
    on_started: Callable[[str], None]
    """Called with the host each time an encoder starts on the segment (a remote
    segment whose worker died starts again elsewhere within one attempt)."""
    on_progress: Callable[[Progress], None]
    source: SourceIdentity | None = None
    """The source as the orchestrator identified it when the job started (its one read
    of the content fingerprint before the join): a worker reading the source through a
    path map compares its copy with it. None: no identity to compare, so a remote
    worker is sent the segment's packets."""
    known_probes: tuple[tuple[int, float], ...] = ()
    """Probes an earlier run of the job measured for this segment (target quality)."""
    on_probe: Callable[[list[list[float]]], Awaitable[None]] | None = None
    """Called with the segment's probes after each one (kept for a resumed job)."""


@dataclass(frozen=True)
class SegmentRun:
    """A finished, checked segment encode and where it ran."""

    frames: int
    host: str
    remote: bool = False
    peak_rss_bytes: int = 0
    cpu_percent: float = 0.0
    shipped_bytes: int = 0
    """Bytes sent to a remote worker and back (0 for local and shared-storage runs)."""
    runs: int = 1
    """Encoders started for it (more than 1: a worker was lost mid-segment)."""
    quality: Outcome | None = None
    """With a target VMAF: the CRF chosen, its score, the probes (None: fixed CRF)."""


class Slot(Protocol):
    """A place to encode one segment, held while the `slot()` context is open."""

    @property
    def host(self) -> str: ...

    @property
    def remote(self) -> bool: ...

    async def encode(self, work: SegmentWork) -> SegmentRun: ...


class SegmentExecutor(Protocol):
    def concurrency(self) -> int:
        """How many segments of one job may be in flight at once."""
        ...

    def slot(
        self, job: str, plan: VideoPlan, segment: Segment, priority: int
    ) -> AbstractAsyncContextManager[Slot]: ...

    def record(self, plan: VideoPlan, run: SegmentRun) -> None:
        """Note a finished run (the local executor learns encoder memory peaks)."""
        ...
