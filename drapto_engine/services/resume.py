"""Resume: the plan a finished analysis and segmentation leave (in the state database
and in the work folder), and the reuse of segments an earlier run finished."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from drapto_engine import __version__
from drapto_engine.core.models import MediaInfo, Segment, SegmentState, VideoAnalysis
from drapto_engine.core.state import JobRecord, SegmentRecord
from drapto_engine.infrastructure.extents import Extent
from drapto_engine.infrastructure.source_identity import SourceIdentity
from drapto_engine.infrastructure.state_manager import StateManager
from drapto_engine.services.workdir import WORK_PLAN, made_for, partial_file, video_packets

log = logging.getLogger(__name__)


class StoredPlan(BaseModel):
    """What a resumed run needs that would otherwise cost scans of the source."""

    analysis: VideoAnalysis
    segments: list[Segment]
    starts_s: list[float]
    """The source time of each segment's first frame."""
    end_s: float
    """Where the video ends, on the same clock."""
    extents: dict[int, tuple[int, float, float]]
    """Per stream: packets, start and end (seconds), as measured by demuxing."""
    source: SourceIdentity | None = None
    """The source file the plan and segments were made from (None: stored before
    identities were kept)."""
    drapto: str = ""
    """The drapto version that made them ("": one before versions were kept); a plan of
    another version is made again, with its segments."""

    @classmethod
    def of(cls, record: JobRecord | None) -> StoredPlan | None:
        if record is None or not record.plan or not record.analysis:
            return None
        data = json.loads(record.plan)
        data["analysis"] = json.loads(record.analysis)
        try:
            return cls.model_validate(data)
        except PydanticValidationError:
            log.warning("job %s: stored plan unreadable; planning again", record.id)
            return None

    @classmethod
    def from_work(cls, work: Path, job: str) -> StoredPlan | None:
        """The plan a run of this job left in its work folder (see write_to)."""
        try:
            data = json.loads((work / WORK_PLAN).read_text(encoding="utf-8"))
            if data.pop("job", None) != job:
                return None
            return cls.model_validate(data)
        except (OSError, ValueError, PydanticValidationError):
            return None

    def write_to(self, work: Path, job: str) -> None:
        """Keep the plan beside the segments it made (written whole, then renamed)."""
        data = {"job": job, **self.model_dump(mode="json")}
        partial = partial_file(work / WORK_PLAN)
        partial.write_text(json.dumps(data), encoding="utf-8")
        os.replace(partial, work / WORK_PLAN)

    @classmethod
    def measure(
        cls,
        analysis: VideoAnalysis,
        planned: list[Segment],
        media: MediaInfo,
        times: list[float],
        extents: dict[int, Extent],
        source: SourceIdentity | None = None,
    ) -> StoredPlan:
        video = extents.get(media.video.index)
        end = video.end_s - media.start_time_s if video else times[-1]
        return cls(
            analysis=analysis,
            segments=planned,
            starts_s=[times[s.start_frame] for s in planned],
            end_s=end,
            extents={i: (e.packets, e.start_s, e.end_s) for i, e in extents.items()},
            source=source,
            drapto=__version__,
        )

    def extent_map(self) -> dict[int, Extent]:
        return {i: Extent(*figures) for i, figures in self.extents.items()}

    def durations(self) -> list[float]:
        return [b - a for a, b in zip(self.starts_s, [*self.starts_s[1:], self.end_s], strict=True)]


@dataclass(frozen=True)
class Prior:
    """What an unfinished run of a job left to resume with."""

    plan: StoredPlan | None
    """The stored plan to resume with; None: analyse and plan afresh."""
    replaced: list[str]
    """How the source differs from the file the unfinished run encoded (its work is of
    another film)."""
    stale: bool
    """Another drapto version made the plan (its work is not this version's to join)."""

    @classmethod
    def of(cls, stored: JobRecord | None, work: Path, job: str, source: SourceIdentity) -> Prior:
        """The plan in the state database, else the one in the work folder, if it was
        made from this source by this drapto."""
        plan = StoredPlan.of(stored)
        if plan is None:  # the state database lost it: the work folder has it too
            plan = StoredPlan.from_work(work, job)
        replaced: list[str] = []
        if plan is not None and plan.source is not None:
            # Same name, size and time but other content: what the earlier run made is
            # of another film, and the file as it is now is what is asked for. The same
            # bytes under another inode (restored, rsync -a) are the same film.
            replaced = plan.source.differences(source, place=False)
            if replaced:
                return cls(None, replaced, stale=False)
        if plan is not None and plan.drapto != __version__:
            # Another drapto analysed and planned it (other detection rules, other
            # encoder arguments): its plan and segments are not this version's to join.
            log.info("job %s: planned by drapto %s; planning again", job, plan.drapto)
            return cls(None, replaced, stale=True)
        return cls(plan, replaced, stale=False)


async def reuse(
    state: StateManager, job: str, segment: Segment, path: Path
) -> SegmentRecord | None:
    """A segment finished by an earlier run counts if its file has all its frames: its
    record then, else None.

    A segment file is only ever given its name once it is whole, so one that the
    state database has never seen started (it was lost or replaced) counts too."""
    record = (await state.segments(job)).get(segment.index)
    if record is None:
        return None
    unknown = record.state is SegmentState.PENDING and record.encodes == 0
    if record.state is not SegmentState.DONE and not (
        unknown and await asyncio.to_thread(made_for, path, segment)
    ):
        return None
    frames = await asyncio.to_thread(video_packets, path) if path.exists() else -1
    if frames != segment.frame_count:
        if record.state is SegmentState.DONE:
            await state.set_segment(job, segment.index, SegmentState.PENDING)
        return None
    if unknown:  # recorded as done again, as if this run had encoded it
        await state.set_segment(job, segment.index, SegmentState.RUNNING)
        await state.set_segment(
            job,
            segment.index,
            SegmentState.DONE,
            size_bytes=path.stat().st_size,
            attempts=record.attempts,
            encodes=record.encodes,
        )
    return record
