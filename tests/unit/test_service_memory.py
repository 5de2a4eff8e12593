"""What the long-running service keeps per job is bounded: a finished entry's job leaves
the Monitor (its figures were saved with the job before the entry finished), and a
removed entry's jobs leave the engine's view (and every client's mirror of it)."""

from __future__ import annotations

from drapto_engine.core.api import EngineView
from drapto_engine.core.events import (
    EntryChanged,
    EntryRemoved,
    EventBus,
    JobFailed,
    SegmentDone,
    SegmentPlanned,
    SegmentStarted,
    StageChanged,
)
from drapto_engine.core.jobs import EntryStatus, QueueEntry
from drapto_engine.monitoring import Monitor


def entry(status: EntryStatus, job: str | None, entry_id: int = 7) -> QueueEntry:
    return QueueEntry(
        id=entry_id, input="/m/a.mkv", output="/m/a.av1.mkv", position=0, status=status, job=job
    )


def encode_one_segment(bus: EventBus, job: str) -> None:
    bus.emit(StageChanged(job=job, stage="encoding"))
    bus.emit(SegmentPlanned(job=job, index=0, start_frame=0, frames=50))
    bus.emit(SegmentStarted(job=job, index=0, threads=1))
    bus.emit(SegmentDone(job=job, index=0, frames=50, size_bytes=900, fps=40.0, wall_s=1.25))


def test_a_finished_entry_leaves_no_job_figures_in_the_monitor() -> None:
    bus = EventBus()
    monitor = Monitor(bus)
    bus.emit(EntryChanged(entry=entry(EntryStatus.RUNNING, None)))
    # a first try that a flag's rollback replaced, then the try that finished
    bus.emit(EntryChanged(entry=entry(EntryStatus.RUNNING, "try1")))
    encode_one_segment(bus, "try1")
    bus.emit(JobFailed(job="try1", stage="encoding", error="x"))
    bus.emit(EntryChanged(entry=entry(EntryStatus.RUNNING, "try2")))
    encode_one_segment(bus, "try2")
    # the orchestrator saves the figures before the entry ends: they are there then
    assert monitor.metrics("try2").encoded_segments == 1
    bus.emit(EntryChanged(entry=entry(EntryStatus.DONE, "try2")))
    assert monitor.metrics("try2").encoded_segments == 0
    assert monitor.metrics("try1").encoded_segments == 0
    assert monitor.jobs == set()


def test_a_running_or_requeued_entry_keeps_its_figures() -> None:
    bus = EventBus()
    monitor = Monitor(bus)
    bus.emit(EntryChanged(entry=entry(EntryStatus.RUNNING, "j")))
    encode_one_segment(bus, "j")
    bus.emit(EntryChanged(entry=entry(EntryStatus.QUEUED, "j")))  # an engine stopping
    assert monitor.metrics("j").encoded_segments == 1


def test_a_removed_entry_leaves_no_job_view() -> None:
    bus = EventBus()
    view = EngineView()
    bus.subscribe(view.apply)
    for job in ("try1", "try2"):
        bus.emit(EntryChanged(entry=entry(EntryStatus.RUNNING, job)))
        encode_one_segment(bus, job)
    bus.emit(EntryChanged(entry=entry(EntryStatus.DONE, "try2")))
    # a finished entry still in the queue shows its job
    segment = view.state.jobs["try2"].segments[0]
    assert (segment.state, segment.size_bytes) == ("done", 900)
    bus.emit(EntryRemoved(entry_id=7))
    assert view.state.entries == []
    assert view.state.jobs == {}


def test_a_job_two_entries_ran_stays_while_one_of_them_is_queued() -> None:
    bus = EventBus()
    view = EngineView()
    bus.subscribe(view.apply)
    bus.emit(EntryChanged(entry=entry(EntryStatus.RUNNING, "j")))
    encode_one_segment(bus, "j")
    bus.emit(EntryChanged(entry=entry(EntryStatus.DONE, "j")))
    bus.emit(EntryChanged(entry=entry(EntryStatus.SKIPPED, "j", entry_id=8)))
    bus.emit(EntryRemoved(entry_id=7))
    assert set(view.state.jobs) == {"j"}
    # a client's mirror starts from a snapshot and drops the same views
    mirror = EngineView(view.snapshot())
    for other in (view, mirror):
        other.apply(EntryRemoved(entry_id=8))
        assert other.state.jobs == {}
