"""The queue file of `drapto --batch`: reading, checking and expanding it into jobs.

    [defaults]                       # optional: any JobOptions field, and workers
    output_dir = "/srv/media/av1"
    [flags]                          # optional: flag = "on" | "off" | "shadow" | true | false
    crop_detection = true
    [[job]]                          # one or more
    input = "Some Film (2019).mkv"   # a video, or a folder of them (recursively)
    crf = 24                         # optional: any JobOptions field, over [defaults]

Relative paths (input, output_dir, work_dir) are taken from the queue file's folder and
`~` is expanded. Every problem is collected before anything is refused, so a user fixes
the file in one go; each names the file, the job and the line.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
)
from pydantic import ValidationError as PydanticValidationError

from drapto_engine.core.errors import DraptoError
from drapto_engine.core.flags import FlagStates, parse_state
from drapto_engine.core.jobs import JobOptions
from drapto_engine.services.library import is_video_file, output_path, scan_folder

_BASE = "base"  # validation context key: the folder relative paths are taken from


def _resolve(value: Path, base: Path | None) -> Path:
    """`~` expanded, and a relative path taken from `base` (the queue file's folder)."""
    value = value.expanduser()
    return base / value if base is not None and not value.is_absolute() else value


def _base(info: ValidationInfo) -> Path | None:
    base = info.context.get(_BASE) if isinstance(info.context, dict) else None
    return base if isinstance(base, Path) else None


class _QueueOptions(JobOptions):
    """JobOptions as written in a queue file: folders relative to the file."""

    @field_validator("output_dir", "work_dir")
    @classmethod
    def _relative_to_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return None if value is None else _resolve(value, _base(info))


class BatchDefaults(_QueueOptions):
    """The [defaults] table: options for every job, and the batch's encoder bound."""

    workers: int | None = Field(default=None, ge=1, strict=True)
    """Encoders running at once for this batch (the engine's bound when unset)."""


class BatchJob(_QueueOptions):
    """One [[job]]: a video or a folder of videos, with options over the defaults."""

    input: Path
    """The video to encode, or a folder whose every video (recursively) is encoded."""

    @field_validator("input", mode="before")
    @classmethod
    def _not_empty(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            raise ValueError("must name a file or folder")
        return value

    @field_validator("input")
    @classmethod
    def _input_relative_to_file(cls, value: Path, info: ValidationInfo) -> Path:
        return _resolve(value, _base(info))

    def options(self, defaults: JobOptions) -> JobOptions:
        """This job's options over the batch's defaults (workers is not a job option)."""
        mine = JobOptions.model_validate(self.model_dump(exclude={"input"}))
        return mine.over(_job_options(defaults))


class BatchFile(BaseModel):
    """A whole queue file. `load_batch` reads one; `expand_jobs` lists its files."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    defaults: BatchDefaults = BatchDefaults()
    flags: FlagStates = Field(default_factory=dict)
    """Flag states for this batch's jobs, over the engine's."""
    jobs: list[BatchJob] = Field(alias="job", min_length=1)

    _path: Path | None = PrivateAttr(default=None)
    _job_lines: list[int | None] = PrivateAttr(default_factory=list)

    @property
    def path(self) -> Path | None:
        """The queue file read, when it came from one."""
        return self._path

    def job_label(self, index: int) -> str:
        """`job 2 (line 7)`: how messages name the job at `index` (0-based)."""
        lines = self._job_lines
        line = lines[index] if index < len(lines) else None
        return f"job {index + 1}" + (f" (line {line})" if line else "")


class PlannedJob(BaseModel):
    """One file to encode: where its output goes and its options (defaults applied)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input: Path
    output: Path
    options: JobOptions


class BatchFileError(DraptoError):
    """A queue file that cannot run; `problems` has one line per problem, each naming
    the file (the CLI prints them one to a line)."""

    def __init__(self, path: Path, problems: list[str]):
        self.problems = [f"{path}: {problem}" for problem in problems]
        super().__init__("; ".join(problems), path)


# --- reading ----------------------------------------------------------------------------

_TOP_KEYS = ("defaults", "flags", "job")
_LINE = re.compile(r"\bline (\d+)")


def load_batch(path: Path, ffmpeg: str) -> BatchFile:
    """Read and check a queue file; every input is looked at (files are probed).

    Raises BatchFileError naming every problem found. Lines are found by reading the
    text for table headers and `key =` lines (see _Lines), which covers queue files as
    people write them; a key written another way (an inline table, a dotted key) is
    reported without its line.
    """
    path = path.expanduser().absolute()
    text = _read(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BatchFileError(path, [f"TOML syntax error: {exc}"]) from exc
    lines = _Lines(text)
    problems = _flag_problems(data, lines)
    context = {_BASE: path.parent}
    try:
        batch = BatchFile.model_validate(data, context=context)
    except PydanticValidationError as exc:
        problems += [_describe(error, lines) for error in exc.errors()]
        batch = None
    problems += _input_problems(data, lines, path.parent, ffmpeg)
    if problems or batch is None:
        raise BatchFileError(path, sorted(problems, key=_line_of))
    batch._path = path
    batch._job_lines = [lines.header("job", i) for i in range(len(batch.jobs))]
    return batch


def _line_of(problem: str) -> int:
    """A problem's line, for listing problems in file order (those without one last)."""
    found = _LINE.search(problem.split(": ", 1)[0])  # the label, not a path after it
    return int(found.group(1)) if found else 1 << 30


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise BatchFileError(path, ["no such queue file"]) from exc
    except UnicodeDecodeError as exc:
        raise BatchFileError(
            path, [f"is not UTF-8 text ({exc.reason} at byte {exc.start})"]
        ) from exc
    except OSError as exc:
        raise BatchFileError(path, [f"cannot be read: {exc.strerror or exc}"]) from exc


def _flag_problems(data: dict[str, Any], lines: _Lines) -> list[str]:
    """Check [flags] one by one (so each problem has its line) and leave only the good
    ones in `data`: the model then reports nothing twice."""
    flags = data.get("flags")
    if not isinstance(flags, dict):
        return []  # absent, or the model reports the wrong type
    problems: list[str] = []
    for name, value in list(flags.items()):
        where = lines.label("flags", None, name)
        if not isinstance(value, str | bool):
            problems.append(f"{where}: flag {name} takes on, off or shadow, not {value!r}")
            del flags[name]
            continue
        try:
            parse_state(name, value)
        except DraptoError as exc:
            problems.append(f"{where}: {exc.one_line()}")
            del flags[name]
    return problems


def _input_problems(data: dict[str, Any], lines: _Lines, base: Path, ffmpeg: str) -> list[str]:
    """Inputs that do not exist or are not videos, for every job whose input was given."""
    jobs = data.get("job")
    if not isinstance(jobs, list):
        return []
    problems: list[str] = []
    for index, job in enumerate(jobs):
        raw = job.get("input") if isinstance(job, dict) else None
        if not isinstance(raw, str) or not raw.strip():
            continue  # missing or mistyped: the model reports it
        source = _resolve(Path(raw), base)
        why = _input_problem(source, ffmpeg)
        if why is not None:
            problems.append(f"{lines.label('job', index, 'input')}: {why}")
    return problems


def _input_problem(source: Path, ffmpeg: str) -> str | None:
    if not source.exists():
        return f"input {source} does not exist"
    if source.is_dir():
        return None
    if not source.is_file():
        return f"input {source} is not a file or folder"
    why = is_video_file(source, ffmpeg)
    return None if why is None else f"input {source} {why}"


def _describe(error: Mapping[str, Any], lines: _Lines) -> str:
    """One pydantic error as a line for people: where, then what."""
    loc: tuple[str | int, ...] = tuple(error["loc"])
    kind = str(error["type"])
    if loc == ("job",) and kind in ("missing", "too_short"):
        return "no jobs: add a [[job]] table with an input"
    section, index, key = _split_loc(loc)
    where = lines.label(section, index, key)
    if kind == "missing":
        return f"{where}: missing {key}" + (
            " (the file or folder to encode)" if key == "input" else ""
        )
    if kind == "extra_forbidden":
        return f"{where}: unknown key {key!r}{_suggest(str(key), _keys(section, index))}"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return f"{where}: {f'{key} ' if section is None else ''}must be a table"
    what = str(error["msg"])
    what = what[:1].lower() + what[1:]
    subject = f"{key}: " if key is not None else ""
    return f"{where}: {subject}{what}, not {error.get('input')!r}"


def _split_loc(loc: tuple[str | int, ...]) -> tuple[str | None, int | None, str | None]:
    """(section, job index, key) of an error location."""
    if len(loc) == 1:
        return None, None, str(loc[0])
    section = str(loc[0])
    if section == "job" and isinstance(loc[1], int):
        return section, loc[1], str(loc[2]) if len(loc) > 2 else None
    return section, None, str(loc[1])


def _keys(section: str | None, index: int | None) -> list[str]:
    if section is None:
        return list(_TOP_KEYS)
    if section == "job" and index is not None:
        return ["input", *JobOptions.model_fields]
    return [*JobOptions.model_fields, "workers"]


def _suggest(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (keys are {', '.join(known)})"


_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")


class _Lines:
    """Where tables and keys are in a queue file's text (1-based line numbers).

    A job is found as the n-th `[[job]]` header and a key as the first `key =` line of
    its table: good enough for queue files as people write them, not a TOML parser.
    """

    def __init__(self, text: str) -> None:
        self._text = text.splitlines()
        # (table name, header line, last line); the top of the file is table "" at line 0
        self._tables: list[tuple[str, int, int]] = []
        name, first = "", 0
        for number, line in enumerate(self._text, 1):
            found = _HEADER.match(line)
            if found:
                self._tables.append((name, first, number - 1))
                name, first = found.group(1).strip("\"' "), number
        self._tables.append((name, first, len(self._text)))

    def _table(self, name: str, index: int) -> tuple[int, int] | None:
        spans = [(first, last) for table, first, last in self._tables if table == name]
        return spans[index] if index < len(spans) else None

    def header(self, name: str, index: int = 0) -> int | None:
        """The line of the index-th `[name]` or `[[name]]` header."""
        span = self._table(name, index) if name else None
        return span[0] if span else None

    def key(self, table: str, index: int, key: str) -> int | None:
        """The line of `key = ...` in the index-th table called `table` ("" the top)."""
        span = self._table(table, index)
        if span is None:
            return None
        pattern = re.compile(rf"^\s*([\"']?){re.escape(key)}\1\s*=")
        for number in range(max(span[0], 1), span[1] + 1):
            if pattern.match(self._text[number - 1]):
                return number
        return None

    def label(self, section: str | None, index: int | None, key: str | None) -> str:
        """How a message names a place: `job 2 (line 7)`, `[defaults] (line 3)`, `line 1`."""
        if section is None:
            line = (self.key("", 0, key) or self.header(key)) if key else None
            return f"line {line}" if line else "top level"
        table = index or 0
        line = (self.key(section, table, key) if key else None) or self.header(section, table)
        name = f"job {table + 1}" if section == "job" else f"[{section}]"
        return f"{name} (line {line})" if line else name


# --- expanding --------------------------------------------------------------------------

Rejected = Callable[[Path, str], None]
"""Called with each file of a folder job that has a video extension but is no video."""


def expand_jobs(
    batch: BatchFile, ffmpeg: str, *, on_rejected: Rejected | None = None
) -> list[PlannedJob]:
    """Every file the batch encodes, in order, with its output and options.

    Folders are scanned (see library.scan_folder; every output folder of the batch is
    left out of every scan). Raises BatchFileError when a file is given twice, two files
    would be encoded to one output, or an output would overwrite an input.
    """
    output_dirs = [job.options(batch.defaults).output_dir for job in batch.jobs]
    skip = [d for d in output_dirs if d is not None]
    planned: list[tuple[int, PlannedJob]] = []
    for index, job in enumerate(batch.jobs):
        options = job.options(batch.defaults)
        for source, output in _files(job, options, ffmpeg, skip, on_rejected):
            planned.append((index, PlannedJob(input=source, output=output, options=options)))
    problems = _conflicts(batch, planned)
    if problems:
        raise BatchFileError(batch.path or Path("queue file"), problems)
    return [job for _, job in planned]


def _files(
    job: BatchJob,
    options: JobOptions,
    ffmpeg: str,
    skip: Iterable[Path],
    on_rejected: Rejected | None,
) -> list[tuple[Path, Path]]:
    source = job.input.absolute()
    if not source.is_dir():
        return [(source, output_path(source, options.output_dir))]
    scan = scan_folder(source, ffmpeg, skip=skip)
    for path, why in scan.rejected:
        if on_rejected is not None:
            on_rejected(path, why)
    return [(video, output_path(video, options.output_dir, root=source)) for video in scan.videos]


def _conflicts(batch: BatchFile, planned: list[tuple[int, PlannedJob]]) -> list[str]:
    problems: list[str] = []
    inputs: dict[Path, tuple[int, Path]] = {}
    outputs: dict[Path, tuple[int, Path]] = {}
    for index, job in planned:
        real = job.input.resolve()
        if real in inputs:
            other, first = inputs[real]
            problems.append(
                f"{_who(batch, other, first)} and {_who(batch, index, job.input)} are the same file"
                " (each file may be queued once)"
            )
            continue
        inputs[real] = (index, job.input)
        target = job.output.resolve()
        if target in outputs:
            other, first = outputs[target]
            problems.append(
                f"{_who(batch, other, first)} and {_who(batch, index, job.input)} would both be"
                f" encoded to {job.output} (set a different output_dir for one)"
            )
        outputs[target] = (index, job.input)
    for target, (index, source) in outputs.items():
        if target in inputs:
            other, victim = inputs[target]
            problems.append(
                f"{_who(batch, index, source)} would be encoded to {target}, overwriting the"
                f" input {_who(batch, other, victim)} (set an output_dir)"
            )
    return problems


def _who(batch: BatchFile, index: int, source: Path) -> str:
    return f"{source} ({batch.job_label(index)})"


def _job_options(defaults: JobOptions) -> JobOptions:
    """Defaults as plain JobOptions: BatchDefaults' workers is the batch's, not a job's."""
    return JobOptions.model_validate(defaults.model_dump(include=set(JobOptions.model_fields)))
