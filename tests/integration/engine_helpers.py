"""Running an in-process Engine over real files, recording every event it emits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from drapto_engine.config import Config
from drapto_engine.core.events import Event
from drapto_engine.core.jobs import JobOptions, QueueEntry
from drapto_engine.engine import Engine

FAST = JobOptions(preset=12, min_segment_s=1.0, max_segment_s=2.0)
E = TypeVar("E")


@dataclass
class Session:
    engine: Engine
    events: list[Event] = field(default_factory=list)

    def of(self, kind: type[E], job: str | None = None) -> list[E]:
        return [e for e in self.events if isinstance(e, kind) and (job is None or e.job == job)]  # type: ignore[attr-defined]

    async def run(
        self, pairs: list[tuple[Path, Path]], options: JobOptions = FAST
    ) -> list[QueueEntry]:
        entries = await self.engine.add(pairs, options=options)
        await self.engine.run(only={e.id for e in entries}, ignore_pause=True)
        return [self.engine.entry(e.id) for e in entries]


def make_engine(
    tmp_path: Path,
    ffmpeg: str,
    *,
    config: Config | None = None,
    workers: int | None = 2,
    on_event: Callable[[Session, Event], Any] | None = None,
) -> Session:
    """An engine with its own state and config folders under tmp_path."""
    engine = Engine(
        ffmpeg,
        config=config or Config(),
        state_dir=tmp_path / "state",
        config_path=tmp_path / "config" / "config.toml",
        workers=workers,
    )
    session = Session(engine)

    def record(event: Event) -> None:
        session.events.append(event)
        if on_event is not None:
            on_event(session, event)

    engine.bus.subscribe(record)
    return session


def remote_only_engine(ffmpeg: str, certs: Path, folder: Path, worker_ttl: str = "60s") -> Engine:
    """An engine hosting a cluster scheduler on loopback with no local slots: every
    segment goes to a worker while one is usable (needs the cluster extra)."""
    from drapto_engine.cluster.host import ClusterOptions

    return Engine(
        ffmpeg,
        config=Config(),
        state_dir=folder / "state",
        config_path=folder / "config.toml",
        workers=2,
        cluster=ClusterOptions(
            "tls://127.0.0.1:0", folder=certs, local_slots=False, worker_ttl=worker_ttl
        ),
    )
