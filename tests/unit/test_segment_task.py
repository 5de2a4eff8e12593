"""What a segment task sends back is plain data that survives msgpack (the only form the
engine's client reads from a worker): the segment's bytes, or its drapto error's kind and
text, which the engine raises again as that error."""

from __future__ import annotations

from pathlib import Path

import pytest

from drapto_engine.cluster.tasks import MappedSourceMismatch, segment_result, segment_task
from drapto_engine.core.errors import DraptoError, EncodeError, MediaError, ToolchainError

msgpack = pytest.importorskip("msgpack", reason="the cluster extra (msgpack) is not installed")


def over_the_wire(record: object) -> object:
    """As Dask's msgpack family carries it (lists become tuples)."""
    return msgpack.loads(msgpack.dumps(record, use_bin_type=True), use_list=False)


def test_the_segment_comes_back_as_its_bytes() -> None:
    data = bytes(range(256)) * 1000
    assert segment_result(over_the_wire(segment_task(lambda n: data[:n], len(data)))) == data


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (
            MappedSourceMismatch("mapped to /mnt/a on worker w", Path("/srv/a.mkv")),
            MappedSourceMismatch,
        ),
        (MediaError("not under any --path-map of worker w", "/srv/a.mkv", hint="h"), MediaError),
        (EncodeError("segment 3 has 2 frames on w, planned 40", "/srv/a.mkv"), EncodeError),
        (ToolchainError("no ffmpeg"), DraptoError),
    ],
)
def test_a_drapto_error_comes_back_as_its_kind(error: DraptoError, kind: type[DraptoError]) -> None:
    def fail() -> bytes:
        raise error

    with pytest.raises(kind) as raised:
        segment_result(over_the_wire(segment_task(fail)))
    assert type(raised.value) is kind
    assert (raised.value.problem, raised.value.path, raised.value.hint) == (
        error.problem,
        error.path,
        error.hint,
    )


def test_other_exceptions_are_not_caught() -> None:
    def fail() -> bytes:
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError):
        segment_task(fail)


@pytest.mark.parametrize(
    "record",
    [
        None,
        3,
        b"bytes alone",
        {"segment": "text"},
        {"error": "encode"},
        {"error": 1, "problem": "p"},
        {"error": "encode", "problem": "p", "path": 7, "hint": None},
    ],
)
def test_anything_else_is_an_encode_error(record: object) -> None:
    with pytest.raises(EncodeError, match="not a segment task's"):
        segment_result(record)
