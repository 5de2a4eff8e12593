"""File names that are not valid UTF-8, in text for people and in JSON.

Python holds such a name (`bad\\xff\\xfe.mp4`, as old Samba shares leave them) with each
undecodable byte as a lone surrogate, U+DC80 to U+DCFF (os.fsdecode). Such a string
cannot be written as UTF-8 as it is:

- text for people (logs, printed lines) shows each such byte as `\\xff`, through the
  codec error handler ESCAPE, which the log files and the standard streams use;
- JSON (events, the engine protocol, the state store, reports) carries it as a `\\udcff`
  escape, which Python's json.loads turns back into the same name: lossless.
  Pydantic's own JSON cannot hold a lone surrogate, so `model_json` and
  `model_from_json` take that path for such values only.
"""

from __future__ import annotations

import codecs
import json
import re
from typing import Any, TypeVar

import pydantic
import pydantic_core

ESCAPE = "drapto-escape"
"""A codec error handler: an undecodable byte of a name as `\\xff`, any other character
the codec cannot write as `\\uXXXX` (as "backslashreplace" would)."""

_SURROGATE = re.compile("[\ud800-\udfff]")


def _escape(error: UnicodeError) -> tuple[str, int]:
    if not isinstance(error, UnicodeEncodeError):
        raise error
    text = error.object[error.start : error.end]
    return "".join(_escaped(char) for char in text), error.end


def _escaped(char: str) -> str:
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:
        return f"\\x{code - 0xDC00:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


codecs.register_error(ESCAPE, _escape)


def shown(value: object) -> str:
    """`value` as text that any UTF-8 output takes: undecodable bytes as `\\xff`."""
    text = str(value)
    return text.encode("utf-8", ESCAPE).decode("utf-8") if _SURROGATE.search(text) else text


def dumps(value: Any, **options: Any) -> str:
    """json.dumps with non-ASCII text as it is, except lone surrogates, as `\\udcff`
    escapes (valid JSON; json.loads gives the same string back)."""
    text = json.dumps(value, ensure_ascii=False, **options)
    return _SURROGATE.sub(lambda found: f"\\u{ord(found[0]):04x}", text)


def model_json(model: pydantic.BaseModel, **options: Any) -> str:
    """The model's JSON (`model_dump_json`), also when a string holds a lone surrogate."""
    try:
        return model.model_dump_json(**options)
    except pydantic_core.PydanticSerializationError:
        indent = options.pop("indent", None)
        return dumps(model.model_dump(mode="json", **options), indent=indent)


M = TypeVar("M", bound=pydantic.BaseModel)
T = TypeVar("T")


def model_from_json(model: type[M], text: str | bytes) -> M:
    """`model.model_validate_json`, also for JSON that `model_json` wrote with `\\udcXX`
    escapes (which pydantic's parser refuses)."""
    try:
        return model.model_validate_json(text)
    except pydantic.ValidationError as exc:
        return model.model_validate(_escaped_json(text, exc))


def from_json(adapter: pydantic.TypeAdapter[T], text: str | bytes) -> T:
    """`adapter.validate_json`, also for JSON holding `\\udcXX` escapes (see model_from_json)."""
    try:
        return adapter.validate_json(text)
    except pydantic.ValidationError as exc:
        return adapter.validate_python(_escaped_json(text, exc))


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _escaped_json(text: str | bytes, exc: pydantic.ValidationError) -> Any:
    """JSON that pydantic's parser refused for a `\\udcXX` escape, parsed by Python's
    (NaN and Infinity still refused); `exc` again for any other JSON pydantic refuses."""
    decoded = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    if not (
        any(error["type"] == "json_invalid" for error in exc.errors())
        and _SURROGATE_ESCAPE.search(decoded)
    ):
        raise exc
    try:
        return json.loads(decoded, parse_constant=_no_constant)
    except ValueError:
        raise exc from None
