"""A replace through the engine on real encodes: `drapto encode --replace`, a saving too
small to replace, the engine finishing a replace a killed process left and emptying the
trash as it starts, and `stats` / `restore` through a running engine service."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import av
import pytest
from forked import run_forked, warm_imports
from mediagen import make_video

from drapto_engine.config import Config
from drapto_engine.core.errors import DraptoError
from drapto_engine.core.jobs import EntryStatus, JobOptions
from drapto_engine.engine import Engine
from drapto_engine.infrastructure.savings import SavingsStore
from drapto_engine.infrastructure.store import StateStore
from drapto_engine.server.client import EngineClient
from drapto_engine.server.server import EngineServer
from drapto_engine.services.replace import Replacer

FAST = ["--preset", "12", "--progress", "json", "--no-daemon"]
OLD_MTIME_NS = 1_500_000_000_000_000_000


def lossless_source(ffmpeg: str, path: Path) -> Path:
    """A real H.264 file, lossless, so its AV1 encode is far smaller; mode 0640 and an
    old modification time, to be carried to the AV1 file."""
    make_video(ffmpeg, path, size=(160, 120), duration=1.0, output_args=["-qp", "0"])
    path.chmod(0o640)
    os.utime(path, ns=(OLD_MTIME_NS, OLD_MTIME_NS))
    return path


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def codec(path: Path) -> str:
    with av.open(str(path)) as container:
        return str(container.streams.video[0].codec_context.codec.canonical_name)


def drapto(*argv: str, cwd: Path, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    warm_imports()
    environment = env or {k: v for k, v in os.environ.items() if k != "DRAPTO_STATE_DIR"}
    done = run_forked(list(argv), cwd, environment, timeout=240)
    return done.returncode, done.stdout, done.stderr


def test_encode_replace_puts_the_av1_file_in_the_source_s_place(
    ffmpeg: str, tmp_path: Path
) -> None:
    source = lossless_source(ffmpeg, tmp_path / "lib" / "film.mp4")
    original = sha(source)
    state = tmp_path / "state"
    status, out, err = drapto(
        "encode", str(source), "--replace", *FAST, "--state-dir", str(state), cwd=tmp_path
    )
    assert status == 0, err
    final = source.with_suffix(".mkv")
    trash = source.parent / ".drapto-trash" / "film.mp4"
    assert not source.exists() and not source.with_suffix(".av1.mkv").exists()
    assert codec(final) == "av1"
    assert sha(trash) == original
    assert final.stat().st_mtime_ns == OLD_MTIME_NS and final.stat().st_mode & 0o777 == 0o640
    status, out, err = drapto("stats", "--json", "--state-dir", str(state), cwd=tmp_path)
    data = json.loads(out)
    assert data["files"] == 1
    assert data["bytes_before"] == trash.stat().st_size
    assert data["bytes_after"] == final.stat().st_size
    assert data["folders"] == {"other": {k: data[k] for k in ("files", "bytes_before",
                                         "bytes_after", "bytes_saved")}}  # fmt: skip


def test_a_saving_below_min_saving_keeps_the_original(ffmpeg: str, tmp_path: Path) -> None:
    source = lossless_source(ffmpeg, tmp_path / "film.mkv")
    original = sha(source)
    status, out, err = drapto(
        "encode", str(source), "--replace", "--min-saving", "0.999", *FAST,
        "--state-dir", str(tmp_path / "state"), cwd=tmp_path,
    )  # fmt: skip
    assert status == 0, err
    assert sha(source) == original
    assert not source.with_suffix(".av1.mkv").exists()
    assert not (tmp_path / ".drapto-trash").exists()
    assert "kept the original: saved only" in out


async def test_the_engine_finishes_a_killed_replace_and_empties_the_trash_as_it_starts(
    ffmpeg: str, tmp_path: Path
) -> None:
    state_dir = tmp_path / "state"
    films = tmp_path / "films"
    films.mkdir()
    half = films / "half.mp4"
    half.write_bytes(b"o" * 4000)
    (films / "half.av1.mkv").write_bytes(b"n" * 1000)
    old = films / "old.mkv"
    old.write_bytes(b"O" * 4000)
    (films / "old.av1.mkv").write_bytes(b"N" * 1000)

    class Killed(Exception):
        pass

    def die(step: str) -> None:
        if step == "link":
            raise Killed

    store = StateStore(state_dir / "drapto.db")
    try:
        savings = SavingsStore(store)
        with pytest.raises(Killed):
            Replacer(state_dir, savings, die).replace(
                half, films / "half.av1.mkv", JobOptions(replace=True)
            )
        Replacer(state_dir, savings).replace(
            old, films / "old.av1.mkv", JobOptions(replace=True, keep_days=0)
        )
    finally:
        store.close()
    assert (films / ".drapto-trash" / "old.mkv").exists()
    engine = Engine(ffmpeg, config=Config(), state_dir=state_dir, workers=1)
    try:
        async with engine.running():
            pass
    finally:
        engine.close()
    assert half.with_suffix(".mkv").read_bytes() == b"n" * 1000 and not half.exists()
    assert (films / ".drapto-trash" / "half.mp4").read_bytes() == b"o" * 4000
    assert not (films / ".drapto-trash" / "old.mkv").exists()
    assert old.read_bytes() == b"N" * 1000


@pytest.fixture
def short_dir() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="drr-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


async def test_stats_and_restore_through_the_engine_service(
    ffmpeg: str, tmp_path: Path, short_dir: Path
) -> None:
    """A replace queued through the service, then `drapto stats` and `drapto restore` as
    commands that find the running engine (no --state-dir) and the client's calls."""
    source = lossless_source(ffmpeg, tmp_path / "lib" / "film.mkv")
    original = sha(source)
    engine = Engine(ffmpeg, config=Config(), state_dir=tmp_path / "state", workers=2)
    (short_dir / "drapto").mkdir(mode=0o700)
    server = EngineServer(engine, short_dir / "drapto" / "engine.sock")
    await engine.start()
    await server.start()
    runner = asyncio.create_task(engine.run())
    client = await EngineClient.connect(server.socket_path, client_name="test")
    env = {k: v for k, v in os.environ.items() if k != "DRAPTO_STATE_DIR"}
    env |= {"XDG_RUNTIME_DIR": str(short_dir), "XDG_CONFIG_HOME": str(tmp_path / "config")}
    try:
        options = JobOptions(preset=12, replace=True, trash_dir=tmp_path / "lib" / ".trash")
        (entry,) = await client.add_paths([str(source)], options)
        for _ in range(2400):
            entry = next(e for e in engine.entries() if e.id == entry.id)
            if entry.status not in (EntryStatus.QUEUED, EntryStatus.RUNNING):
                break
            await asyncio.sleep(0.05)
        assert entry.status is EntryStatus.DONE, entry.error
        assert codec(source) == "av1"
        report = await client.get_savings()
        assert report.total.files == 1 and list(report.folders) == [str(tmp_path / "lib")]
        status, out, err = await asyncio.to_thread(drapto, "stats", "--json", cwd=tmp_path, env=env)
        assert (status, json.loads(out)["files"]) == (0, 1), err
        status, out, err = await asyncio.to_thread(
            drapto, "restore", str(source), cwd=tmp_path, env=env
        )
        assert status == 0, err
        assert sha(source) == original
        assert codec(source.with_suffix(".av1.mkv")) == "av1"
        assert (await client.get_savings()).total.files == 0
        with pytest.raises(Exception, match="restored already"):
            await client.restore(str(source))
    finally:
        await client.close()
        await engine.stop()
        await runner
        await server.close()
        engine.close()


async def test_the_engine_refuses_a_replace_that_would_take_another_file_s_name(
    ffmpeg: str, tmp_path: Path
) -> None:
    folder = tmp_path / "films"
    source = lossless_source(ffmpeg, folder / "film.mp4")
    shutil.copyfile(source, folder / "film.mkv")  # another film under the name it would take
    engine = Engine(ffmpeg, config=Config(), state_dir=tmp_path / "state", workers=1)
    try:
        options = JobOptions(replace=True)
        with pytest.raises(DraptoError, match="where another file is"):
            await engine.add_file(str(source), str(folder / "film.av1.mkv"), options)
        entries = await engine.add_paths([str(folder)], options)
        by_input = {Path(e.input).name: e for e in entries}
        assert by_input["film.mkv"].status is EntryStatus.QUEUED
        assert by_input["film.mp4"].status is EntryStatus.FAILED
        assert "where another file is" in (by_input["film.mp4"].error or "")
    finally:
        engine.close()


async def test_a_file_encoded_beside_before_is_replaced_without_encoding_again(
    ffmpeg: str, tmp_path: Path
) -> None:
    """Its job done (an encode beside it, or an engine killed between the validation and
    the replace): queued with replace, the replace is what is left to do."""
    source = lossless_source(ffmpeg, tmp_path / "films" / "film.mp4")
    original = sha(source)
    beside = source.with_suffix(".av1.mkv")
    engine = Engine(ffmpeg, config=Config(), state_dir=tmp_path / "state", workers=2)
    try:
        async with engine.running():
            (first,) = await engine.add([(source, beside)], options=JobOptions(preset=12))
            await engine.run(only={first.id}, ignore_pause=True)
            assert engine.entry(first.id).status is EntryStatus.DONE
            encoded = sha(beside)
            options = JobOptions(preset=12, replace=True)
            (second,) = await engine.add([(source, beside)], options=options)
            await engine.run(only={second.id}, ignore_pause=True)
            done = engine.entry(second.id)
        assert done.status is EntryStatus.DONE, done.error
        assert done.job is None  # no job ran: nothing was encoded again
        assert (done.note or "").startswith("replaced; the original is in ")
        assert sha(source.with_suffix(".mkv")) == encoded
        assert sha(source.parent / ".drapto-trash" / "film.mp4") == original
        assert not beside.exists() and not source.exists()
        report = await engine.get_savings()
        assert report.total.files == 1  # the replace took the place of the encode beside
    finally:
        engine.close()


def test_encode_replace_after_an_encode_beside_only_replaces(ffmpeg: str, tmp_path: Path) -> None:
    """`drapto encode` without, then with --replace (or a rerun after a kill between the
    validation and the replace): the second run encodes nothing, it replaces."""
    source = lossless_source(ffmpeg, tmp_path / "film.mkv")
    state = ["--state-dir", str(tmp_path / "state")]
    status, _, err = drapto("encode", str(source), *FAST, *state, cwd=tmp_path)
    assert status == 0, err
    encoded = sha(source.with_suffix(".av1.mkv"))
    status, out, err = drapto("encode", str(source), "--replace", *FAST, *state, cwd=tmp_path)
    assert status == 0, err
    assert '"segment_started"' not in out  # nothing encoded again
    assert "encoded before; replaced; the original is in" in out
    assert sha(source) == encoded and not source.with_suffix(".av1.mkv").exists()
    assert (tmp_path / ".drapto-trash" / "film.mkv").exists()
