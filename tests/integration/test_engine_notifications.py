"""The engine's push notifications, sent to a real HTTP inbox: one for each entry that
ends (done, failed, skipped, cancelled while running, or failed before it could start),
none for an entry stopped to resume later or cancelled before it started, and none
again when a finished entry only moves."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest
from engine_helpers import FAST, make_engine
from inbox import Inbox, inbox_fixture  # noqa: F401 (the `inbox` fixture)

from drapto_engine.config import Config
from drapto_engine.core.api import INTERRUPTED_NOTE
from drapto_engine.core.jobs import EntryStatus

pytestmark = pytest.mark.slow


async def test_each_ended_entry_is_notified_once_and_a_stopped_one_not_at_all(
    tmp_path: Path, make_media: object, ffmpeg: str, inbox: Inbox
) -> None:
    good = make_media("good.mkv", size=(64, 64), duration=1)  # type: ignore[operator]
    long = make_media("long.mkv", size=(64, 64), duration=6)  # type: ignore[operator]
    waiting = make_media("waiting.mkv", size=(64, 64), duration=1)  # type: ignore[operator]
    held = make_media("held.mkv", size=(64, 64), duration=1)  # type: ignore[operator]
    bad = tmp_path / "bad.mkv"
    bad.write_text("not a video")
    session = make_engine(tmp_path, ffmpeg, config=Config(notify_url=inbox.url))
    engine = session.engine
    async with engine.running():
        [done, failed] = await session.run(
            [(good, tmp_path / "good.av1.mkv"), (bad, tmp_path / "bad.av1.mkv")]
        )
        assert done.status is EntryStatus.DONE and failed.status is EntryStatus.FAILED
        [skipped] = await session.run([(good, tmp_path / "good.av1.mkv")])
        assert skipped.status is EntryStatus.SKIPPED
        await engine.add_failed([(tmp_path / "junk.mkv", tmp_path / "junk.av1.mkv", "junk")])
        # stopped before they started: a cancel and an interrupt say nothing
        [cancelled, interrupted] = await engine.add(
            [(waiting, tmp_path / "waiting.av1.mkv"), (held, tmp_path / "held.av1.mkv")],
            options=FAST,
        )
        await engine.cancel(cancelled.id)
        await engine.interrupt([interrupted.id])
        # stopped while running, to resume later: nothing either
        [running] = await engine.add([(long, tmp_path / "long.av1.mkv")], options=FAST)
        runner = asyncio.create_task(engine.run(only={running.id}, ignore_pause=True))
        while engine.entry(running.id).status is not EntryStatus.RUNNING:
            await asyncio.sleep(0.02)
        await engine.interrupt([running.id])
        await runner
        assert engine.entry(running.id).note == INTERRUPTED_NOTE
        # cancelled while running: that is an ending
        runner = asyncio.create_task(engine.run(only={running.id}, ignore_pause=True))
        await engine.retry(running.id)
        while engine.entry(running.id).status is not EntryStatus.RUNNING:
            await asyncio.sleep(0.02)
        await engine.cancel(running.id)
        await runner
        assert engine.entry(running.id).status is EntryStatus.CANCELLED
        # a finished entry that moves is news to clients, not an ending
        await engine.move(done.id, 5)
        # a retried entry that fails again ends again
        await engine.retry(failed.id)
        await engine.run(only={failed.id}, ignore_pause=True)
    engine.close()
    assert Counter(title for title, _ in inbox.received) == {
        "drapto: job done": 1,
        "drapto: job failed": 3,
        "drapto: job skipped": 1,
        "drapto: job cancelled": 1,
    }, inbox.received
    bodies = sorted(body for _, body in inbox.received)
    assert bodies[0].startswith("bad.mkv: failed: ") and bodies[1] == bodies[0]
    assert bodies[2].startswith("good.mkv: done, ") and bodies[2].endswith(" s")
    assert bodies[3] == "good.mkv: skipped (already encoded)"
    assert bodies[4] == "junk.mkv: failed: junk"
    assert bodies[5] == "long.mkv: cancelled"
