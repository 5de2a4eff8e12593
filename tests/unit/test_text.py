"""File names that are not UTF-8: escaped for people, lossless in JSON (core/text.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pydantic
import pydantic_core
import pytest

from drapto_engine.core.jobs import QueueEntry
from drapto_engine.core.text import ESCAPE, dumps, model_from_json, model_json, shown

BAD = Path(os.fsdecode(b"/films/bad\xff\xfe \xc3\xa9.mp4"))  # two bad bytes, then a real é


def test_people_see_the_bytes_escaped() -> None:
    assert shown(BAD) == "/films/bad\\xff\\xfe é.mp4"
    assert str(BAD).encode("utf-8", ESCAPE) == b"/films/bad\\xff\\xfe \xc3\xa9.mp4"
    assert shown("plain é") == "plain é"


def test_json_carries_the_name_losslessly() -> None:
    text = dumps({"input": str(BAD)})
    assert text == '{"input": "/films/bad\\udcff\\udcfe é.mp4"}'
    text.encode("utf-8")  # writable as it is
    assert os.fsencode(json.loads(text)["input"]) == b"/films/bad\xff\xfe \xc3\xa9.mp4"


def test_a_model_round_trips() -> None:
    entry = QueueEntry.model_validate(
        {"id": 1, "input": str(BAD), "output": str(BAD.with_suffix(".av1.mkv")), "position": 0}
    )
    with pytest.raises(pydantic_core.PydanticSerializationError):
        entry.model_dump_json()  # what pydantic alone does
    again = model_from_json(QueueEntry, model_json(entry).encode())
    assert again == entry and os.fsencode(again.input) == os.fsencode(BAD)


def test_other_invalid_json_is_still_refused() -> None:
    with pytest.raises(pydantic.ValidationError):
        model_from_json(QueueEntry, '{"id": 1, "input": "\\udcff", ')
