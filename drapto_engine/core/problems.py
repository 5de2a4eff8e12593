"""What a pydantic error means, said for people: `must be a whole number, not true`.

The settings models (JobOptions, Config, a queue file's tables) are the one definition of
types and ranges; this turns their errors into the problem part of a one-line message.
Values are shown as TOML writes them (true, "fast", 1.5) and long ones are cut short.
"""

from __future__ import annotations

import datetime
import difflib
import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

_KIND = {
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "float_type": "a number",
    "float_parsing": "a number",
    "finite_number": "a finite number",
    "string_type": "text (in quotes)",
    "path_type": "a path (text in quotes)",
    "model_type": "a table",
    "model_attributes_type": "a table",
    "dict_type": "a table",
    "list_type": "an array",
}


def shown(value: object, limit: int = 40) -> str:
    """A value as a settings file writes it, cut to about `limit` characters."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, int | float):
        text = str(value)
    elif isinstance(value, str):
        text = json.dumps(value[: limit + 1], ensure_ascii=False)
    elif isinstance(value, Mapping):
        return "a table"
    elif isinstance(value, list | tuple):
        return "an array"
    elif isinstance(value, datetime.date | datetime.time):
        text = value.isoformat()  # as TOML writes a date or time
    else:
        text = type(value).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe(error: Mapping[str, Any]) -> str:
    """The problem of one pydantic error (from `ValidationError.errors()`), no place."""
    kind = str(error["type"])
    ctx: Mapping[str, Any] = error.get("ctx") or {}
    value = error.get("input")
    if kind == "missing":
        return "missing"
    if kind == "extra_forbidden":
        return "unknown key"
    if kind in _KIND:
        return f"must be {_KIND[kind]}, not {shown(value)}"
    if kind == "greater_than_equal":
        return f"must be at least {_number(ctx['ge'])}, not {shown(value)}"
    if kind == "greater_than":
        return f"must be more than {_number(ctx['gt'])}, not {shown(value)}"
    if kind == "less_than_equal":
        return f"must be at most {_number(ctx['le'])}, not {shown(value)}"
    if kind == "less_than":
        return f"must be less than {_number(ctx['lt'])}, not {shown(value)}"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "too_short":
        return f"must have at least {ctx.get('min_length', 1)} item(s)"
    message = str(error["msg"]).removeprefix("Value error, ")
    if kind == "value_error":
        return message
    return f"{message[:1].lower()}{message[1:]}, not {shown(value)}"


def _number(value: object) -> str:
    """5.0 as 5: bounds read as a person wrote them."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def suggest(key: str, known: Iterable[str]) -> str:
    """` (did you mean 'preset'?)`, or the keys there are when none is close."""
    names = list(known)
    close = difflib.get_close_matches(key, names, n=1)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (keys are {', '.join(names)})"
