"""Watched folders and the schedule through `drapto serve`, `drapto watch`, `drapto
schedule` and `drapto status` as real processes: a file copied into a watched folder is
queued once it settles, waits for the window, is encoded on the override, and the
folder is still watched after a restart."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import av
import pytest

from drapto_engine.server.location import answers

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

DRAPTO = [sys.executable, "-m", "drapto_engine.cli"]


@dataclass
class User:
    env: dict[str, str]
    socket: Path
    started: list[asyncio.subprocess.Process] = field(default_factory=list)

    async def serve(self) -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(
            *DRAPTO, "serve", env=self.env, stderr=asyncio.subprocess.DEVNULL
        )
        self.started.append(process)
        deadline = time.monotonic() + 30
        while not answers(self.socket):
            assert process.returncode is None and time.monotonic() < deadline, "no engine"
            await asyncio.sleep(0.05)
        return process

    async def run(self, *args: str) -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            *DRAPTO, *args, env=self.env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode is not None
        return process.returncode, out.decode(), err.decode()

    async def until(self, check: Callable[[str], bool], *args: str, seconds: float = 60) -> str:
        """Run a command until its output passes `check`; that output."""
        deadline = time.monotonic() + seconds
        while True:
            code, out, err = await self.run(*args)
            assert code == 0, err
            if check(out):
                return out
            assert time.monotonic() < deadline, f"drapto {' '.join(args)} never said it:\n{out}"
            await asyncio.sleep(0.3)


@pytest.fixture
async def user(tmp_path: Path) -> AsyncIterator[User]:
    short = Path(tempfile.mkdtemp(prefix="drw-", dir="/tmp"))
    env = {
        **os.environ,
        "XDG_RUNTIME_DIR": str(short),
        "XDG_STATE_HOME": str(tmp_path / "xdg-state"),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg-config"),
    }
    env.pop("DRAPTO_STATE_DIR", None)
    made = User(env, short / "drapto" / "engine.sock")
    try:
        yield made
    finally:
        for process in made.started:
            if process.returncode is None:
                process.kill()
                await process.wait()
        shutil.rmtree(short, ignore_errors=True)


def closed_window() -> tuple[str, str]:
    """A window that opens two hours from now (local time), and its opening as shown."""
    now = datetime.now()
    opens = now + timedelta(hours=2)
    closes = opens + timedelta(hours=1)
    # after 22:00 it opens tomorrow, which drapto says with the day (`Tue 00:07`)
    shown = f"{opens:%H:%M}" if opens.date() == now.date() else f"{opens:%a %H:%M}"
    return f"{opens:%H:%M}-{closes:%H:%M}", shown


async def test_a_watched_folder_through_the_service(
    user: User, tmp_path: Path, tiny_video: Path
) -> None:
    window, opens = closed_window()
    config = tmp_path / "xdg-config" / "drapto" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(
        f"watch_rescan_s = 2\n[defaults]\npreset = 12\n[schedule]\nwindows = ['{window}']\n"
    )
    library = tmp_path / "library"
    (library / "films").mkdir(parents=True)
    first = await user.serve()

    code, out, err = await user.run("watch", "add", str(library), "--settle-s", "0.5")
    assert (code, err) == (0, "") and out == f"watching {library} (outputs beside the sources)\n"
    # Mistakes: one line each, with the right exit status.
    code, _, err = await user.run("watch", "add", str(tmp_path / "nowhere"))
    assert code == 1 and err == f"drapto: {tmp_path / 'nowhere'}: no such folder\n"
    code, _, err = await user.run("watch", "add", str(library), "--output", "besides")
    assert code == 2 and "--output" in err and err.count("\n") == 1
    code, _, err = await user.run("watch", "remove", str(tmp_path))
    assert code == 2 and err == (
        f"drapto: {tmp_path}: is not a watched folder (drapto watch list)\n"
    )

    film = library / "films" / "film.mkv"
    shutil.copy(tiny_video, film)
    waiting = f"schedule   1 waiting: outside the encode windows until {opens}"
    await user.until(lambda out: waiting in out, "status")
    output = film.with_name("film.av1.mkv")
    assert not output.exists()
    out = await user.until(lambda out: "closed" in out, "schedule")
    assert out.splitlines()[:2] == [f"windows    {window}", f"now        closed, opens {opens}"]
    assert "paused     outside the encode windows" in out

    code, out, _ = await user.run("schedule", "--override-until-empty")
    assert code == 0 and "override   encoding now until the queue is empty" in out
    deadline = time.monotonic() + 120
    while not output.exists():
        assert time.monotonic() < deadline, "never encoded"
        await asyncio.sleep(0.3)
    with av.open(str(output)) as container:
        assert container.streams.video[0].codec_context.codec.canonical_name == "av1"
        assert sum(1 for _ in container.decode(video=0)) == 25  # the whole second
    # The queue is empty: the override ends, and the windows rule again.
    await user.until(lambda out: '"override":false' in out, "schedule", "--json")
    listed = await user.until(lambda out: "1 queued" in out, "watch", "list")
    assert listed.splitlines()[0] == str(library)
    assert "watching; beside, settle 0.5 s; 0 pending, 1 queued" in listed

    # A restart keeps the folder (and does not queue the encoded file or its output).
    first.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(first.wait(), 30) == 0
    await user.serve()
    listed = await user.until(lambda out: "watching;" in out, "watch", "list")
    assert listed.splitlines()[0] == str(library)
    code, out, _ = await user.run("watch", "remove", str(library))
    assert (code, out) == (0, f"no longer watching {library}\n")
    code, out, _ = await user.run("watch", "list")
    assert out.startswith("no watched folders")
    code, out, _ = await user.run("status")
    assert "1 done" in out and "failed" not in out


async def test_config_folders_and_remembered_refusals_outlive_the_engine(
    tmp_path: Path, ffmpeg: str
) -> None:
    from drapto_engine.config import Config, WatchSettings
    from drapto_engine.core.errors import DraptoError
    from drapto_engine.core.events import WarningEvent
    from drapto_engine.core.watching import FolderState
    from drapto_engine.engine import Engine

    library = tmp_path / "library"
    library.mkdir()
    junk = library / "junk.mkv"
    junk.write_bytes(b"not a video" * 100)
    config = Config(watch=[WatchSettings(path=library, settle_s=0)], watch_rescan_s=3600)

    def engine() -> Engine:
        return Engine(
            ffmpeg, config=config, state_dir=tmp_path / "state",
            config_path=tmp_path / "config.toml", workers=1, library=True,
        )  # fmt: skip

    first = engine()
    async with first.running():
        deadline = time.monotonic() + 20
        while not (await first.watch_list())[0].last_scan or (await first.watch_list())[0].pending:
            assert time.monotonic() < deadline, "the first scan never ended"
            await asyncio.sleep(0.1)
        [view] = await first.watch_list()
        assert view.folder.from_config and view.state == FolderState.WATCHING
        with pytest.raises(DraptoError, match=r"remove it from config\.toml"):
            await first.watch_remove(str(library))
        with pytest.raises(DraptoError, match="inside or around a watched folder"):
            (library / "sub").mkdir()
            await first.watch_add(str(library / "sub"))
        assert first.entries() == []  # the junk was refused, not queued
        # The disk goes away: a warning and the state, nothing forgotten; then back.
        said: list[str] = []
        first.bus.subscribe(
            lambda e: said.append(e.message) if isinstance(e, WarningEvent) else None
        )
        library.rename(tmp_path / "unmounted")
        while not said:
            assert time.monotonic() < deadline + 10, "no warning of the missing folder"
            await asyncio.sleep(0.1)
        assert said == [f"{library}: watched folder is missing (missing: not there or not mounted)"]
        assert (await first.watch_list())[0].state == FolderState.MISSING
        (tmp_path / "unmounted").rename(library)
        while len(said) < 2:
            assert time.monotonic() < deadline + 20, "no word of the folder coming back"
            await asyncio.sleep(0.1)
        assert said[1] == f"{library}: watched folder is back; watching it again"
    first.close()
    second = engine()
    try:  # before any scan, the refusal is known again: no probe will look at it
        assert second.household is not None
        decided = second.household.folders.service.folders[str(library)].decided
        assert decided[junk].why.startswith("is not a readable media file")
    finally:
        second.close()


async def test_a_folder_policy_queues_the_same_tree_under_its_root(
    tmp_path: Path, ffmpeg: str, tiny_video: Path
) -> None:
    from drapto_engine.config import Config
    from drapto_engine.engine import Engine

    library, out = tmp_path / "library", tmp_path / "av1"
    (library / "show" / "s01").mkdir(parents=True)
    engine = Engine(
        ffmpeg, config=Config(watch_rescan_s=3600), state_dir=tmp_path / "state",
        config_path=tmp_path / "config.toml", workers=1, library=True,
    )  # fmt: skip
    try:
        async with engine.running():  # started, not run: what is queued stays queued
            view = await engine.watch_add(str(library), f"folder:{out}", 0.2)
            assert view.folder.output == f"folder:{out}"
            shutil.copy(tiny_video, library / "show" / "s01" / "e01.mkv")
            await engine.watch_rescan(str(library))
            deadline = time.monotonic() + 20
            while not engine.entries():
                assert time.monotonic() < deadline, "never queued"
                await asyncio.sleep(0.1)
            [entry] = engine.entries()
            assert entry.input == str(library / "show" / "s01" / "e01.mkv")
            assert entry.output == str(out / "show" / "s01" / "e01.mkv")
            assert entry.options.output_dir == out and not entry.options.replace
            replaced = await engine.watch_add(str(library), "replace", 0.2)  # policy changed
            assert replaced.folder.output == "replace"
    finally:
        engine.close()


async def test_watch_add_starts_the_engine_that_watches(user: User, tmp_path: Path) -> None:
    """With no engine running, `drapto watch add` starts one (the engine is what watches),
    as `drapto encode` does; `watch list` and `remove` only ask a running one."""
    library = tmp_path / "library"
    library.mkdir()
    code, _, err = await user.run("watch", "list")
    assert code == 1 and "no engine is running" in err and err.count("\n") == 1
    code, out, err = await user.run("watch", "add", str(library), "--output", "replace")
    assert (code, err) == (0, "") and out == f"watching {library} (replaces the originals)\n"
    assert answers(user.socket)
    listed = await user.until(lambda out: "watching;" in out, "watch", "list")
    assert listed.splitlines()[0] == str(library)
    code, out, _ = await user.run("status")
    pid = int(out.split(", pid ")[1].split(",")[0])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while answers(user.socket):
        assert time.monotonic() < deadline, "the engine did not stop"
        await asyncio.sleep(0.1)
