"""The service's pieces without a running engine: the protocol models, line reading,
the socket's location and claim, and the `drapto status` summary."""

from __future__ import annotations

import asyncio
import inspect
import os
import socket
import stat
import typing
from pathlib import Path

import pytest

from drapto_engine.cli.service import status_lines
from drapto_engine.core.api import EngineAPI, EngineSnapshot, JobView, SegmentView
from drapto_engine.core.errors import DraptoError
from drapto_engine.core.flags import FlagSet, FlagSource, FlagState
from drapto_engine.core.jobs import EntryStatus, JobOptions, QueueEntry
from drapto_engine.core.metrics import ResourceSnapshot
from drapto_engine.engine import Engine
from drapto_engine.server import location
from drapto_engine.server.client import EngineClient
from drapto_engine.server.protocol import (
    ENGINE_METHODS,
    REQUEST_ADAPTER,
    SERVER_ADAPTER,
    AddPaths,
    Hello,
    Reply,
    Request,
    compatible,
    encode,
    parse_result,
    request_params,
)
from drapto_engine.server.server import LineTooLong, problem, read_line, skip_line


def api_methods() -> set[str]:
    return {name for name in vars(EngineAPI) if not name.startswith("_")}


def test_every_engine_api_method_has_a_request_and_a_client_method() -> None:
    request_methods = {typing.get_args(m)[0] for m in _method_literals()}
    assert api_methods() == ENGINE_METHODS
    assert request_methods == ENGINE_METHODS | {"subscribe", "shutdown"}
    for name in ENGINE_METHODS:
        theirs = inspect.signature(getattr(Engine, name))
        ours = inspect.signature(getattr(EngineClient, name))
        assert list(ours.parameters) == list(theirs.parameters), name
        assert [p.default for p in ours.parameters.values()] == [
            p.default for p in theirs.parameters.values()
        ], name


def _method_literals() -> list[object]:
    union = typing.get_args(typing.get_args(Request)[0])  # Annotated[A | B | ..., Field]
    return [model.model_fields["method"].annotation for model in union]


def test_a_request_carries_the_engines_models_through_json() -> None:
    options = JobOptions(preset=12, output_dir=Path("/out"))
    request = AddPaths.model_validate(
        {"id": 3, "method": "add_paths", "params": {"paths": ["/a.mkv"], "options": options}}
    )
    parsed = REQUEST_ADAPTER.validate_json(encode(request))
    assert parsed == request
    kwargs = request_params(parsed)
    assert kwargs["options"] == options and isinstance(kwargs["options"], JobOptions)
    assert kwargs["paths"] == ["/a.mkv"] and kwargs["flags"] is None


def test_a_reply_becomes_the_methods_return_type() -> None:
    entry = QueueEntry(id=1, input="/a.mkv", output="/a.av1.mkv", position=0)
    reply = SERVER_ADAPTER.validate_json(encode(Reply(id=1, result=[entry])))
    assert isinstance(reply, Reply)
    assert parse_result(AddPaths, reply.result) == [entry]


def test_versions_of_the_same_major_are_compatible() -> None:
    assert compatible("1.0") and compatible("1.9")
    assert not compatible("2.0") and not compatible("0.9")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"nonsense", "malformed JSON"),
        (b"[1, 2]", "a request is a JSON object"),
        (b'{"id": 1}', "a request needs a method"),
        (b'{"id": 1, "method": "rm_rf"}', "unknown method 'rm_rf'"),
        (b'{"id": 1, "method": "move", "params": {"entry_id": 1}}', "move.params.index"),
    ],
)
def test_a_bad_request_is_described(line: bytes, expected: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as caught:
        REQUEST_ADAPTER.validate_json(line)
    assert expected in problem(caught.value)


async def test_an_overlong_line_is_skipped_and_the_next_one_read() -> None:
    reader = asyncio.StreamReader(limit=16)
    reader.feed_data(b"short\n" + b"y" * 100 + b"\nnext\n" + b"z" * 40)
    reader.feed_eof()
    assert await read_line(reader) == b"short\n"
    with pytest.raises(LineTooLong) as caught:
        await read_line(reader)
    assert await skip_line(reader, caught.value.consumed)
    assert await read_line(reader) == b"next\n"
    with pytest.raises(LineTooLong) as caught:
        await read_line(reader)
    assert not await skip_line(reader, caught.value.consumed)  # the stream ended first


def test_the_socket_lives_in_the_runtime_dir_or_a_tmpdir_folder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    assert location.default_socket() == Path("/run/user/1000/drapto/engine.sock")
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    monkeypatch.delenv("TMPDIR", raising=False)
    assert location.default_socket() == Path(f"/tmp/drapto-{os.getuid()}/engine.sock")
    monkeypatch.setenv("TMPDIR", "/var/tmp")
    assert location.default_socket() == Path(f"/var/tmp/drapto-{os.getuid()}/engine.sock")


def test_a_claim_is_exclusive_and_replaces_a_stale_socket(tmp_path: Path) -> None:
    path = tmp_path / "run" / "engine.sock"
    path.parent.mkdir(mode=0o755)
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(path))
    dead.close()  # a socket file nobody listens on, as SIGKILL leaves it
    claim = location.claim_socket(path)
    try:
        assert not path.exists()
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o755  # a folder the user named
        with pytest.raises(DraptoError, match=rf"already running on {path} \(pid {os.getpid()}\)"):
            location.claim_socket(path)
    finally:
        claim.release()
    location.claim_socket(path).release()


def test_a_file_in_the_sockets_place_is_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "engine.sock"
    path.write_text("precious")
    with pytest.raises(DraptoError, match="exists and is not a socket"):
        location.claim_socket(path)
    assert path.read_text() == "precious"


def test_a_socket_folder_that_is_a_link_is_refused(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(DraptoError, match="not a folder"):
        location.prepare_folder(tmp_path / "link")


def test_a_bound_socket_is_private(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    with location.bind(path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_status_shows_counts_running_jobs_resources_and_changed_flags() -> None:
    flags = FlagSet({FlagSource.LIVE: {"crop_detection": FlagState.OFF}})
    running = QueueEntry(
        id=4, input="/m/film.mkv", output="/o/film.mkv", position=1,
        status=EntryStatus.RUNNING, job="j1", stage="encoding",
    )  # fmt: skip
    job = JobView(
        id="j1",
        stage="encoding",
        segments={
            0: SegmentView(index=0, start_frame=0, frames=100, state="done", percent=100),
            1: SegmentView(index=1, start_frame=100, frames=100, state="running", percent=50),
            2: SegmentView(index=2, start_frame=200, frames=200),
        },
    )
    sample = ResourceSnapshot(
        time=0, cpu_percent=87.4, memory_total=16 << 30, memory_available=10 << 30,
        reserve_bytes=1 << 30, workers=2, running=2, suspended=1, encoders=(),
    )  # fmt: skip
    snapshot = EngineSnapshot(
        paused=True,
        workers=2,
        entries=[
            QueueEntry(
                id=3, input="/m/a.mkv", output="/o/a.mkv", position=0, status=EntryStatus.DONE
            ),
            running,
            QueueEntry(id=5, input="/m/b.mkv", output="/o/b.mkv", position=2),
        ],
        jobs={"j1": job},
        resources=[sample],
        flags=flags.views(),
    )
    lines = status_lines(snapshot, Hello(name="drapto 0.2.0", pid=77), Path("/run/e.sock"))
    assert lines == [
        "engine     drapto 0.2.0, pid 77, on /run/e.sock",
        "queue      1 queued, 1 running, 1 done, paused",
        "workers    2",
        "resources  CPU 87%, RAM 6.0 of 16.0 GiB used, 2 encoders (1 suspended)",
        "flags      crop_detection off (live)",
        "running",
        "  #4 film.mkv: encoding, segments 1/3 done, 1 encoding, 38%",
    ]
