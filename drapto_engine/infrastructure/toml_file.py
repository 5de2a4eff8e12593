"""Settings files (config.toml, a queue file): read, parsed, and every key's line found.

Reading refuses, with one line naming the file, what no person meant as a settings file:
a file over the size limit, one that is not UTF-8, a binary file (NUL bytes), and
nesting too deep for the parser (tomllib recurses; its RecursionError becomes a problem
on the line of the first nesting deeper than MAX_DEPTH).

`KeyLines` finds the line of every table header and `key =` in one pass over the text,
so a problem found by the models (pydantic) is told as `file:line: key: problem`, and
looking a place up costs a dictionary lookup however long the file is.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from drapto_engine.core.errors import UsageError
from drapto_engine.core.flags import check_states
from drapto_engine.core.problems import describe, suggest

MAX_DEPTH = 32
"""Nesting of arrays and inline tables (and parts of a dotted key) past which KeyLines
reports a place as too deep, and stops splitting a dotted key."""
SHOWN = 20
"""Problems listed one to a line before the rest are counted on the last line."""
ONE_LINE = 5
"""Problems told in `one_line()` before the rest are counted."""

Loc = tuple[str | int, ...]
"""A place in the parsed data: keys, and 0-based indexes into arrays of tables."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a file: its line (when known), the key, and what is wrong."""

    line: int | None
    key: str | None
    text: str

    def render(self, path: Path) -> str:
        """`path:line: key: text`, leaving out what is not known."""
        where = f"{path}:{self.line}" if self.line else f"{path}"
        return f"{where}: {self.key}: {self.text}" if self.key else f"{where}: {self.text}"


class FileProblems(UsageError):
    """A settings file that cannot be used: a usage error (exit status 2).

    `problems` has one line per problem (at most SHOWN, then a line counting the rest),
    each starting with the file; `one_line()` is the first and the count of the rest.
    """

    def __init__(self, path: Path, problems: list[Problem] | list[str]):
        rendered = [p.render(path) if isinstance(p, Problem) else f"{path}: {p}" for p in problems]
        self.count = len(rendered)
        self.problems = rendered[:SHOWN]
        if self.count > SHOWN:
            self.problems.append(f"{path}: ... and {self.count - SHOWN} more problems")
        # One line: the first problem as `path:line: key: problem`, then the next few
        # as `; line N: key: problem`, then how many more there are.
        places = [_short(p) for p in problems] if problems else ["invalid"]
        places[1:] = [f"line {p}" if p.startswith(_LINE_FIRST) else p for p in places[1:]]
        text = "; ".join(places[:ONE_LINE])
        if len(places) > ONE_LINE:
            text += f" (and {len(places) - ONE_LINE} more problems)"
        self._line = f"{path}:{text}" if text.startswith(_LINE_FIRST) else f"{path}: {text}"
        super().__init__(text, path)

    def one_line(self) -> str:
        return self._line


_LINE_FIRST = tuple("0123456789")


def _short(problem: Problem | str) -> str:
    """A problem without its file, for the one line: `12: crf: ...`."""
    if isinstance(problem, str):
        return problem
    text = f"{problem.key}: {problem.text}" if problem.key else problem.text
    return f"{problem.line}: {text}" if problem.line else text


def read_text(path: Path, limit: int) -> str:
    """The file's text; FileProblems when missing, too big, not UTF-8 or binary."""
    try:
        with path.open("rb") as file:
            data = file.read(limit + 1)
    except FileNotFoundError as exc:
        raise FileProblems(path, ["no such file"]) from exc
    except IsADirectoryError as exc:
        raise FileProblems(path, ["is a folder, not a file"]) from exc
    except OSError as exc:
        raise FileProblems(path, [f"cannot be read: {exc.strerror or exc}"]) from exc
    if len(data) > limit:
        raise FileProblems(path, [f"is larger than {_size(limit)}: not a settings file"])
    nul = data.find(b"\0")
    if nul >= 0:
        raise FileProblems(path, [f"is a binary file (a NUL byte at byte {nul}), not TOML text"])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FileProblems(path, [f"is not UTF-8 text ({exc.reason} at byte {exc.start})"]) from exc


def _size(limit: int) -> str:
    return f"{limit >> 20} MiB" if limit >= 1 << 20 else f"{limit >> 10} KiB"


_AT_END = " (at end of document)"
_LONG_KEY = re.compile(rf"(?<![^\s.=\[\]])(?:[^\s.=\[\]]++\s*+\.\s*+){{{MAX_DEPTH}}}")
"""MAX_DEPTH dots in a row between words: perhaps a dotted key too long (KeyLines says)."""
_DECODE_AT = re.compile(r"\s*\(at line (\d+), column \d+\)$")


def parse(path: Path, text: str, lines: KeyLines) -> dict[str, Any]:
    """The TOML document; FileProblems naming the line of a syntax error, or of a nesting
    too deep for the parser (which recurses: some hundreds of levels), or of a dotted key
    of more than MAX_DEPTH parts (the parser takes time quadratic in their number)."""
    too_deep = "nested too deeply for the TOML parser"
    if _LONG_KEY.search(text) and lines.too_deep is not None:  # the pattern is a hint only
        raise FileProblems(path, [Problem(*lines.too_deep, too_deep)])
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        found = _DECODE_AT.search(message)
        at = int(found.group(1)) if found else None
        what = message[: found.start()] if found else message
        if what.endswith(_AT_END):  # the last line is where it ends
            at, what = len(text.splitlines()) or 1, f"{what.removesuffix(_AT_END)} at the end"
        what = what[:1].lower() + what[1:]
        raise FileProblems(path, [Problem(at, None, f"invalid TOML: {what}")]) from exc
    except RecursionError as exc:  # never a traceback: the line of the first deep nesting
        where = lines.too_deep
        problem = Problem(*where, too_deep) if where else Problem(None, None, too_deep)
        raise FileProblems(path, [problem]) from exc


def dotted(loc: Iterable[str | int]) -> str:
    """How a message names a key: `defaults.crf`, `job[3].crf` (the 3rd [[job]]),
    `flags.crop_detection`."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part + 1}]"
        else:
            name = part if _BARE_KEY.fullmatch(part) else json.dumps(part)
            text += f".{name}" if text else name
    return text


# --- finding lines ----------------------------------------------------------------------

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
# Possessive quantifiers throughout: a long line never makes a pattern backtrack.
_KEY_PART = r"""(?:[A-Za-z0-9_-]++|"(?:[^"\\\n]|\\.)*+"|'[^'\n]*+')"""
_KEY = rf"{_KEY_PART}(?:\s*+\.\s*+{_KEY_PART})*+"
_PARTS = re.compile(_KEY_PART)
_COMMENT = r"\s*+(?:#.*)?"
_ARRAY_HEADER = re.compile(rf"\s*+\[\[\s*+({_KEY})\s*+\]\]{_COMMENT}$")
_TABLE_HEADER = re.compile(rf"\s*+\[\s*+({_KEY})\s*+\]{_COMMENT}$")
_KEY_VALUE = re.compile(rf"\s*+({_KEY})\s*+=\s*+")
# A value that is whole on its line: a one-line string, or a bare number, date, boolean.
_SIMPLE_VALUE = re.compile(
    r"""(?:"(?:[^"\\]|\\.)*+"(?!")|'[^']*+'(?!')|[^"'\[\]{}#\s][^"'\[\]{}#]*+)"""
    rf"{_COMMENT}$"
)
_LEX = re.compile(r'"""|\'\'\'|"(?:[^"\\\n]|\\.)*+"|\'[^\'\n]*+\'|#.*|[\[\]{}]|[^"\'#\[\]{}]++')


def _key_parts(text: str) -> tuple[str, ...]:
    if _BARE_KEY.fullmatch(text):
        return (text,)  # most keys: one bare word
    parts: list[str] = []
    for part in _PARTS.findall(text):
        if part.startswith('"'):
            try:
                part = json.loads(part)
            except ValueError:
                part = part[1:-1]
        elif part.startswith("'"):
            part = part[1:-1]
        parts.append(part)
    return tuple(parts)


class KeyLines:
    """The 1-based line of each table header and `key =` of a TOML text, by place.

    One pass over the lines; a place is a tuple as the parsed data has it, with arrays of
    tables indexed: ("job", 2, "crf") is the `crf =` of the third [[job]]. Keys inside
    inline tables and multi-line arrays take the line of the key they belong to.
    `too_deep` is (line, key) of the first nesting deeper than MAX_DEPTH, if any.

    The text is read at the first question: a file without problems never pays for it.
    """

    def __init__(self, text: str) -> None:
        self._text: str | None = text
        self._lines: dict[Loc, int] = {}
        self._too_deep: tuple[int, str] | None = None

    @property
    def too_deep(self) -> tuple[int, str] | None:
        self._index()
        return self._too_deep

    def _index(self) -> None:
        text, self._text = self._text, None
        if text is None:
            return  # read already
        counts: dict[Loc, int] = {}  # the last index of each array of tables
        table: Loc = ()
        depth = 0  # open arrays and inline tables of a value spanning lines
        string: str | None = None  # the quotes of an open multi-line string
        key: Loc = ()
        for number, line in enumerate(text.splitlines(), 1):
            if depth or string:
                depth, string = self._scan(line, depth, string, number, key)
                continue
            first = line.lstrip()[:1]
            if not first or first == "#":
                continue
            found = (
                (_ARRAY_HEADER.match(line) or _TABLE_HEADER.match(line)) if first == "[" else None
            )
            if found:
                parts = self._parts(found.group(1), (), number)
                if found.re is _ARRAY_HEADER:
                    array = (*self._resolve(parts[:-1], counts), parts[-1])
                    counts[array] = counts.get(array, -1) + 1
                    table = (*array, counts[array])
                else:
                    table = self._resolve(parts, counts)
                self._note(table, number)
                continue
            found = _KEY_VALUE.match(line)
            if not found:
                continue  # not TOML: the parser says where
            key = (*table, *self._parts(found.group(1), table, number))
            self._note(key, number)
            rest = line[found.end() :]
            if not _SIMPLE_VALUE.match(rest):
                depth, string = self._scan(rest, 0, None, number, key)

    def _parts(self, text: str, table: Loc, number: int) -> tuple[str, ...]:
        """The parts of a dotted key; past MAX_DEPTH of them, only the first (too deep)."""
        parts = _key_parts(text)
        if len(table) + len(parts) > MAX_DEPTH:
            deep = (number, dotted((*table, *parts)[:MAX_DEPTH]) + "...")
            self._too_deep = self._too_deep or deep
            return parts[:1]
        return parts

    def _note(self, loc: Loc, number: int) -> None:
        """Remember the line of `loc` and of each table above it not yet seen."""
        lines = self._lines
        if lines.setdefault(loc, number) != number or loc[:-1] in lines:
            return  # seen before, or its table is (the usual key line)
        for end in range(len(loc) - 1, 0, -1):
            if lines.setdefault(loc[:end], number) != number:
                break

    @staticmethod
    def _resolve(parts: tuple[str, ...], counts: dict[Loc, int]) -> Loc:
        """A header's key with the current index after each array of tables in it."""
        loc: Loc = ()
        for part in parts:
            loc = (*loc, part)
            if loc in counts:
                loc = (*loc, counts[loc])
        return loc

    def _scan(
        self, text: str, depth: int, string: str | None, number: int, key: Loc
    ) -> tuple[int, str | None]:
        """Follow brackets and multi-line strings through `text`; the state after it."""
        position = 0
        while position < len(text):
            if string is not None:
                end = text.find(string, position)
                if end < 0:
                    return depth, string
                while text.startswith(string[0], end + 3):  # up to two quotes end it
                    end += 1
                position, string = end + 3, None
                continue
            token = _LEX.match(text, position)
            if token is None:  # a lone quote: the parser reports it
                return depth, None
            position = token.end()
            piece = token.group()
            if piece in ('"""', "'''"):
                string = piece
            elif piece in ("[", "{"):
                depth += 1
                if depth + len(key) > MAX_DEPTH and self._too_deep is None:
                    self._too_deep = (number, dotted(key))
            elif piece in ("]", "}"):
                depth = max(depth - 1, 0)
            elif piece.startswith("#"):
                break
        return depth, string

    def line(self, loc: Iterable[str | int]) -> int | None:
        """The line of `loc`, or of the nearest table or key above it that has one."""
        self._index()
        place = tuple(loc)
        for end in range(len(place), 0, -1):
            found = self._lines.get(place[:end])
            if found is not None:
                return found
        return None


# --- problems of the models ---------------------------------------------------------------

KeysAt = Callable[[Loc], list[str]]
"""The keys a table at a place may have (for "did you mean")."""


def model_problems(exc: ValidationError, lines: KeyLines, keys_at: KeysAt) -> list[Problem]:
    """Each error of a model's validation as a Problem with its line and dotted key."""
    problems: list[Problem] = []
    for error in exc.errors():
        loc: Loc = tuple(error["loc"])
        text = describe(error)
        if error["type"] == "extra_forbidden" and loc:
            text += suggest(str(loc[-1]), keys_at(loc[:-1]))
        problems.append(Problem(lines.line(loc), dotted(loc) or None, text))
    return problems


def flag_problems(data: dict[str, Any], lines: KeyLines, table: str = "flags") -> list[Problem]:
    """Check a `[flags]` table key by key (each problem on its line) and leave only the
    good states in `data`, so the model reports nothing twice."""
    states = data.get(table)
    if not isinstance(states, dict):
        return []  # absent, or the model reports the wrong type
    good, bad = check_states(states)
    data[table] = good
    return [
        Problem(lines.line((table, name)), dotted((table, name)), problem)
        for name, problem in bad.items()
    ]


def in_file_order(problems: list[Problem]) -> list[Problem]:
    """Problems by line, those without one last (a stable sort keeps their order)."""
    return sorted(problems, key=lambda p: p.line if p.line is not None else 1 << 62)
