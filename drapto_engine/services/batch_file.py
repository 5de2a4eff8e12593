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

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictInt,
    ValidationInfo,
    field_validator,
)
from pydantic import ValidationError as PydanticValidationError

from drapto_engine.core.errors import DraptoError
from drapto_engine.core.flags import FlagStates
from drapto_engine.core.jobs import JobOptions, SettingPath
from drapto_engine.infrastructure.toml_file import (
    FileProblems,
    KeyLines,
    Loc,
    Problem,
    flag_problems,
    in_file_order,
    model_problems,
    parse,
    read_text,
)
from drapto_engine.services.library import file_problem, is_video_file, output_path, scan_folder
from drapto_engine.services.outputs import check_folder

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

    workers: StrictInt | None = Field(default=None, ge=1)
    """Encoders running at once for this batch (the engine's bound when unset)."""


class BatchJob(_QueueOptions):
    """One [[job]]: a video or a folder of videos, with options over the defaults."""

    input: SettingPath
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

    model_config = ConfigDict(defer_build=True, frozen=True, extra="forbid")

    defaults: BatchDefaults = BatchDefaults()
    flags: FlagStates = Field(default_factory=dict)
    """Flag states for this batch's jobs, over the engine's."""
    jobs: list[BatchJob] = Field(alias="job", min_length=1)

    _path: Path | None = PrivateAttr(default=None)
    _lines: KeyLines | None = PrivateAttr(default=None)

    @property
    def path(self) -> Path | None:
        """The queue file read, when it came from one."""
        return self._path

    def job_label(self, index: int) -> str:
        """`job 2 (line 7)`: how messages name the job at `index` (0-based)."""
        line = self._lines.line(("job", index)) if self._lines is not None else None
        return f"job {index + 1}" + (f" (line {line})" if line else "")


class PlannedJob(BaseModel):
    """One file to encode: where its output goes and its options (defaults applied)."""

    model_config = ConfigDict(defer_build=True, frozen=True, extra="forbid")

    input: Path
    output: Path
    options: JobOptions


BatchFileError = FileProblems
"""A queue file that cannot run (exit status 2); `problems` has one line per problem,
each `file:line: key: problem` (the CLI prints them one to a line)."""


# --- reading ----------------------------------------------------------------------------

QUEUE_LIMIT = 64 << 20
"""The largest queue file read (64 MiB, some 500,000 jobs): anything bigger is refused."""
_TOP_KEYS = ("defaults", "flags", "job")


def load_batch(path: Path, ffmpeg: str, base: JobOptions | None = None) -> BatchFile:
    """Read and check a queue file; every input is looked at (files are probed).

    Raises BatchFileError naming every problem found, each with its line and key (see
    KeyLines). `base` (the config file's defaults) is only used to check that each
    job's segment lengths, all layers put together, go together.
    The work is linear in the file's size: every lookup is a dictionary's.
    """
    path = path.expanduser().absolute()
    text = read_text(path, QUEUE_LIMIT)
    lines = KeyLines(text)
    return check_batch(path, parse(path, text, lines), lines, ffmpeg, base)


def check_batch(
    path: Path,
    data: dict[str, Any],
    lines: KeyLines,
    ffmpeg: str,
    base: JobOptions | None = None,
) -> BatchFile:
    """The parsed queue file `data` as a BatchFile, or BatchFileError (see load_batch)."""
    problems = flag_problems(data, lines)
    context = {_BASE: path.parent}
    batch: BatchFile | None = None
    try:
        batch = BatchFile.model_validate(data, context=context)
    except PydanticValidationError as exc:
        problems += [_worded(p) for p in model_problems(exc, lines, _keys_at)]
    else:
        problems += _segment_problems(batch, lines, base)
        problems += _folder_problems(batch, lines)
    problems += _input_problems(data, lines, path.parent, ffmpeg)
    if problems or batch is None:
        raise BatchFileError(path, in_file_order(problems))
    batch._path = path
    batch._lines = lines  # read only if a message needs a job's line
    return batch


def _worded(problem: Problem) -> Problem:
    """The model's problems that a queue file says better."""
    if problem.key == "job" and problem.text in ("missing", "must have at least 1 item(s)"):
        return Problem(None, None, "no jobs: add a [[job]] table with an input")
    if problem.key == "job" and problem.text.startswith("must be an array"):
        return Problem(problem.line, "job", "jobs are [[job]] tables (two brackets, one per job)")
    if problem.text == "missing" and (problem.key or "").endswith(".input"):
        return Problem(problem.line, problem.key, "missing (the file or folder to encode)")
    return problem


def _keys_at(loc: Loc) -> list[str]:
    if not loc:
        return list(_TOP_KEYS)
    if loc[0] == "job":
        return ["input", *JobOptions.model_fields]
    return [*JobOptions.model_fields, "workers"]


def _segment_problems(batch: BatchFile, lines: KeyLines, base: JobOptions | None) -> list[Problem]:
    """Jobs whose segment lengths clash once put over [defaults] (and `base`): each table
    alone was checked by JobOptions."""
    defaults = _job_options(batch.defaults)
    if base is not None:
        defaults = defaults.over(base)
    problems: list[Problem] = []
    for index, job in enumerate(batch.jobs):  # numbers only: no model per job
        low = job.min_segment_s if job.min_segment_s is not None else defaults.min_segment_s
        high = job.max_segment_s if job.max_segment_s is not None else defaults.max_segment_s
        if low is None or high is None or low <= high:
            continue
        key = "max_segment_s" if job.max_segment_s is not None else "min_segment_s"
        problems.append(
            Problem(
                lines.line(("job", index, key)),
                f"job[{index + 1}].{key}",
                f"min_segment_s ({low:g}) is more than max_segment_s ({high:g})"
                " once the defaults are applied",
            )
        )
    return problems


def _folder_problems(batch: BatchFile, lines: KeyLines) -> list[Problem]:
    """Work folders that --work-dir would refuse (services/outputs.py: one rule)."""
    places: list[tuple[Loc, str, Path | None]] = [
        (("defaults", "work_dir"), "defaults.work_dir", batch.defaults.work_dir)
    ]
    places += [
        (("job", index, "work_dir"), f"job[{index + 1}].work_dir", job.work_dir)
        for index, job in enumerate(batch.jobs)
    ]
    problems: list[Problem] = []
    checked: dict[Path, str | None] = {}
    for loc, key, folder in places:
        if folder is None:
            continue
        if folder not in checked:
            try:
                check_folder(folder)
                checked[folder] = None
            except DraptoError as exc:
                checked[folder] = exc.one_line()
        why = checked[folder]
        if why is not None:
            problems.append(Problem(lines.line(loc), key, why))
    return problems


def _input_problems(
    data: dict[str, Any], lines: KeyLines, base: Path, ffmpeg: str
) -> list[Problem]:
    """Inputs that do not exist or are not videos, for every job whose input was given
    (each distinct input is looked at once)."""
    jobs = data.get("job")
    if not isinstance(jobs, list):
        return []
    problems: list[Problem] = []
    seen: dict[str, str | None] = {}
    for index, job in enumerate(jobs):
        raw = job.get("input") if isinstance(job, dict) else None
        if not isinstance(raw, str) or not raw.strip() or "\0" in raw:
            continue  # missing or mistyped: the model reports it
        if raw not in seen:
            seen[raw] = _input_problem(_resolve(Path(raw), base), ffmpeg)
        why = seen[raw]
        if why is not None:
            place = ("job", index, "input")
            problems.append(Problem(lines.line(place), f"job[{index + 1}].input", why))
    return problems


def _input_problem(source: Path, ffmpeg: str) -> str | None:
    if source.is_dir():
        return None
    problem = file_problem(source)
    if problem == "no such file":
        return f"{source} does not exist"
    if problem is not None:  # a broken link or a loop, a FIFO: named, never opened
        return f"{source} {problem}"
    why = is_video_file(source, ffmpeg)
    return None if why is None else f"{source} {why}"


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
