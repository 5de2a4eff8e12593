"""`drapto encode` gives the same answer through a running engine as with `--no-daemon`.

Each case is set up twice, in two folders, beside one real `drapto serve` (the same
state folder for both ways): once the plain command (which the engine runs) and once
with `--no-daemon` (which runs in the client's own process). Both must end with the
same exit status, the same stderr lines, the same stdout lines and the same files on
disk. What necessarily differs is normalised, explicitly: the case's folder, and on
stdout the numbers (sizes, speeds, times and job ids depend on the run).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mediagen import make_video
from test_client_truth import User, until, user_in

from drapto_engine.server.client import EngineClient

pytestmark = pytest.mark.slow

FAST = ("--preset", "12", "--min-segment", "1", "--max-segment", "2", "--progress", "plain")
NOT_MKV = "drapto: -o/--output: notes.txt: drapto writes Matroska: the name must end in .mkv"


@pytest.fixture(scope="module")
def engine_user(tmp_path_factory: pytest.TempPathFactory) -> Iterator[User]:
    """One engine for the module (its own XDG folders; a short runtime folder)."""
    with user_in(tmp_path_factory.mktemp("same-answer"), prefix="drs-") as user:
        user.serve("--workers", "1")
        yield user


@dataclass
class Answer:
    code: int
    stdout: list[str]
    stderr: list[str]
    files: dict[str, str]


def _answer(done: subprocess.CompletedProcess[str], folder: Path, ffmpeg: str) -> Answer:
    def norm(text: str, numbers: bool) -> list[str]:
        text = text.replace(str(folder), "DIR")
        if numbers:
            text = re.sub(r"\b[0-9a-f]{12}\b", "JOB", text)
            text = re.sub(r"\d+(\.\d+)?", "N", text)
        return [line for line in text.splitlines() if line.strip()]

    assert "Traceback" not in done.stderr, done.stderr
    files = {}
    for path in sorted(folder.iterdir()):
        if path.name.endswith(".mkv") and path.name != "a.mkv":
            files[path.name] = _kind(path, ffmpeg)
        elif path.name != "a.mkv":
            files[path.name] = path.read_text() if path.is_file() else "folder"
    return Answer(done.returncode, norm(done.stdout, True), norm(done.stderr, False), files)


def _kind(path: Path, ffmpeg: str) -> str:
    """What an output file is: drapto's AV1, or the bytes that were there."""
    data = path.read_bytes()
    if data.startswith(b"\x1a\x45\xdf\xa3"):
        from drapto_engine.infrastructure.probe import probe

        return f"matroska {probe(path, ffmpeg).video.codec}"
    return data.decode(errors="replace")


def _prepare(case: str, folder: Path, ffmpeg: str, done_output: Path) -> list[str]:
    """The case's files in `folder`; the command's arguments."""
    source = folder / "a.mkv"
    shutil.copy2(done_output.with_name("a.mkv"), source)
    os.utime(source, ns=(time.time_ns(), time.time_ns()))
    output = folder / "a.av1.mkv"
    if case == "fresh":
        return ["encode", str(source), *FAST]
    if case == "output exists and validates":
        shutil.copy2(done_output, output)
        return ["encode", str(source), *FAST]
    if case == "output exists, other bytes":
        output.write_text("not a video\n")
        return ["encode", str(source), *FAST]
    if case == "overwrite":
        output.write_text("not a video\n")
        return ["encode", str(source), "--overwrite", *FAST]
    if case == "output of another source":
        shutil.copy2(done_output, folder / "b.av1.mkv")
        return ["encode", str(source), "-o", str(folder / "b.av1.mkv"), *FAST]
    if case == "not matroska":
        (folder / "notes.txt").write_text("my notes\n")
        return ["encode", str(source), "-o", "notes.txt", "--overwrite", *FAST]
    if case == "missing input":
        source.unlink()
        return ["encode", str(source), *FAST]
    raise AssertionError(case)


@pytest.fixture(scope="module")
def made(ffmpeg: str, tmp_path_factory: pytest.TempPathFactory, engine_user: User) -> Path:
    """A source and a finished drapto encode of it (`a.av1.mkv`)."""
    folder = tmp_path_factory.mktemp("made")
    make_video(ffmpeg, folder / "a.mkv", size=(64, 64), duration=1.0, gop=25)
    done = engine_user.run("encode", str(folder / "a.mkv"), "--no-daemon", *FAST)
    assert done.returncode == 0, done.stderr
    return folder / "a.av1.mkv"


CASES = [
    "fresh",
    "output exists and validates",
    "output exists, other bytes",
    "overwrite",
    "output of another source",
    "not matroska",
    "missing input",
]


@pytest.mark.parametrize("case", CASES)
def test_the_engine_and_no_daemon_give_the_same_answer(
    case: str, engine_user: User, made: Path, ffmpeg: str, tmp_path: Path
) -> None:
    answers = []
    for way in ("engine", "no-daemon"):
        folder = tmp_path / way
        folder.mkdir()
        argv = _prepare(case, folder, ffmpeg, made)
        argv += ["--no-daemon"] if way == "no-daemon" else []
        engine_user.home = folder  # the command's working folder
        answers.append(_answer(engine_user.run(*argv, timeout=120), folder, ffmpeg))
    through_engine, in_process = answers
    assert through_engine == in_process
    if case == "not matroska":
        assert in_process.code == 2 and in_process.stderr[0].startswith(NOT_MKV)
        assert in_process.files["notes.txt"] == "my notes\n"
    if case in ("output exists and validates", "output exists, other bytes"):
        assert in_process.code == 1
        assert in_process.stderr == [
            "drapto: DIR/a.av1.mkv: output exists (use --overwrite to replace it)"
        ]


async def _submit(socket: Path, source: Path, preset: int) -> int:
    from drapto_engine.core.jobs import JobOptions

    client = await EngineClient.connect(socket, client_name="test")
    try:
        output = source.with_name(f"{source.stem}.av1.mkv")
        options = JobOptions(preset=preset, min_segment_s=1.0, max_segment_s=2.0)
        return (await client.add_file(str(source), str(output), options)).id
    finally:
        await client.close()


async def _call(socket: Path, method: str, *args: object) -> object:
    client = await EngineClient.connect(socket, client_name="test")
    try:
        return await getattr(client, method)(*args)
    finally:
        await client.close()


def _stored_status(state: Path, entry: int) -> str:
    """An entry's status as the queue table on disk has it."""
    with contextlib.closing(sqlite3.connect(state / "drapto.db")) as db:
        rows = db.execute("SELECT entry FROM queue").fetchall()
    return next(e["status"] for (text,) in rows if (e := json.loads(text))["id"] == entry)


def _running(user: User, entry: int) -> bool:
    snapshot = asyncio.run(_call(user.socket, "get_snapshot"))
    return any(
        e.id == entry and e.status.value == "running" and e.stage is not None
        for e in snapshot.entries  # type: ignore[attr-defined]
    )


BUSY = {
    "same settings": ("busy.mkv", "12", "is being encoded by another drapto (process {pid})"),
    "other settings": ("busy.mkv", "11", "is being encoded by another drapto (process {pid})"),
    "another source to its output": (
        "other.mkv",
        "12",
        "its output DIR/busy.av1.mkv is being written by another drapto"
        " (process {pid}, from DIR/busy.mkv)",
    ),
}


@pytest.mark.parametrize("case", list(BUSY))
def test_a_file_the_engine_is_encoding_is_refused_both_ways(
    case: str, engine_user: User, made: Path, ffmpeg: str, tmp_path: Path
) -> None:
    """While the engine encodes a file, `drapto encode` of the same file or to the same
    output is refused in one line naming the process that encodes it, as the job lock
    refuses it in another process; the engine's job goes on."""
    name, preset, problem = BUSY[case]
    source = make_video(ffmpeg, tmp_path / "busy.mkv", size=(320, 240), duration=20.0, gop=25)
    shutil.copy2(made.with_name("a.mkv"), tmp_path / "other.mkv")
    entry = asyncio.run(_submit(engine_user.socket, source, 12))
    try:
        until(lambda: _running(engine_user, entry), "the engine to encode busy.mkv", 60)
        # the engine's own job makes its work folder as it goes: both answers see it
        until(lambda: any(tmp_path.glob(".drapto-work-*")), "the engine's work folder", 60)
        engine = engine_user.started[0].pid
        engine_user.home = tmp_path
        argv = ["encode", name, "-o", "busy.av1.mkv", *FAST, "--preset", preset]
        answers = [
            _answer(engine_user.run(*argv, *way, timeout=120), tmp_path, ffmpeg)
            for way in ([], ["--no-daemon"])
        ]
        assert _running(engine_user, entry)
        # The --no-daemon run opened the engine's state database: the engine's running
        # entry must still be running there (only the engine takes its entries back).
        assert _stored_status(engine_user.state, entry) == "running"
    finally:
        asyncio.run(_call(engine_user.socket, "cancel", entry))
    expected = f"drapto: DIR/{name}: {problem.format(pid=engine)} (wait for it or stop it)"
    assert answers[0] == answers[1]
    assert answers[1].code == 1 and answers[1].stderr == [expected]


def test_numbers_are_normalised_only_on_stdout(tmp_path: Path, ffmpeg: str) -> None:
    done = subprocess.CompletedProcess([], 1, f"{tmp_path}/x 12.5 fps\n", f"{tmp_path}: 3\n")
    answer = _answer(done, tmp_path, ffmpeg)
    assert answer.stdout == ["DIR/x N fps"] and answer.stderr == ["DIR: 3"]


@pytest.mark.parametrize(
    "name, options, problem",
    [
        ("notes.txt", {"overwrite": True}, "drapto writes Matroska: the name must end in .mkv"),
        ("folder.mkv", {}, "is a directory, not a file name"),
        ("a.av1.mkv", {"work_dir": "scratch"}, "no such folder"),
    ],
)
def test_the_engine_refuses_the_outputs_the_command_line_refuses(
    name: str,
    options: dict[str, object],
    problem: str,
    engine_user: User,
    made: Path,
    tmp_path: Path,
) -> None:
    """A client of the engine (the TUI, a script) gets the command line's answer: one
    line naming the path, and nothing written or created."""
    from drapto_engine.core.errors import DraptoError
    from drapto_engine.core.jobs import JobOptions

    source = shutil.copy2(made.with_name("a.mkv"), tmp_path / "a.mkv")
    (tmp_path / "notes.txt").write_text("my notes\n")
    (tmp_path / "folder.mkv").mkdir()
    if "work_dir" in options:
        options = {**options, "work_dir": str(tmp_path / "scratch")}
    output = tmp_path / name
    with pytest.raises(DraptoError) as refused:
        asyncio.run(
            _call(
                engine_user.socket,
                "add_file",
                str(source),
                str(output),
                JobOptions.model_validate(options),
            )
        )
    where = tmp_path / "scratch" if "work_dir" in options else output
    assert refused.value.one_line().startswith(f"{where}: {problem}")
    engine_user.home = tmp_path
    argv = ["encode", str(source), "-o", str(output), *FAST, "--no-daemon"]
    argv += ["--overwrite"] if "overwrite" in options else []
    argv += ["--work-dir", str(tmp_path / "scratch")] if "work_dir" in options else []
    by_hand = engine_user.run(*argv)
    assert by_hand.returncode == 2 and f"{where}: {problem}" in by_hand.stderr
    time.sleep(0.5)  # an engine that took the entry would have started on it by now
    assert (tmp_path / "notes.txt").read_text() == "my notes\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mkv", "folder.mkv", "notes.txt"]


def test_the_engine_refuses_a_missing_work_dir_for_a_folder_too(
    engine_user: User, made: Path, tmp_path: Path
) -> None:
    from drapto_engine.core.errors import DraptoError
    from drapto_engine.core.jobs import JobOptions

    shutil.copy2(made.with_name("a.mkv"), tmp_path / "a.mkv")
    scratch = tmp_path / "scratch"
    before = asyncio.run(_call(engine_user.socket, "get_snapshot")).entries  # type: ignore[attr-defined]
    with pytest.raises(DraptoError) as refused:
        options = JobOptions(work_dir=scratch)
        asyncio.run(_call(engine_user.socket, "add_paths", [str(tmp_path)], options))
    assert refused.value.one_line() == f"{scratch}: no such folder"
    after = asyncio.run(_call(engine_user.socket, "get_snapshot")).entries  # type: ignore[attr-defined]
    assert len(after) == len(before) and not scratch.exists()


@pytest.mark.parametrize("way", [[], ["--no-daemon"]], ids=["engine", "no-daemon"])
def test_a_file_waiting_in_the_engine_is_refused_naming_its_entry(
    engine_user: User, made: Path, tmp_path: Path, way: list[str]
) -> None:
    """A file queued in the engine (to the same output) is refused in one line naming the
    entry, both ways: not queued twice nor followed through the engine, and not encoded
    beside it by --no-daemon (which reads the engine's queue in their state folder)."""
    source = Path(shutil.copy2(made.with_name("a.mkv"), tmp_path / "a.mkv"))
    asyncio.run(_call(engine_user.socket, "pause"))
    try:
        entry = asyncio.run(_submit(engine_user.socket, source, 12))
        engine_user.home = tmp_path
        done = engine_user.run("encode", "a.mkv", *FAST, *way, timeout=60)
        asyncio.run(_call(engine_user.socket, "remove", entry))
    finally:
        asyncio.run(_call(engine_user.socket, "resume"))
    pid = engine_user.started[0].pid
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"drapto: {source}: is queued in another drapto (process {pid}) as entry {entry},"
        f" to {tmp_path / 'a.av1.mkv'} (wait for it or remove it)"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mkv"]
