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
from functools import partial
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
from drapto_engine.services.outputs import check_folder, check_trash_dir, replaceable

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

    @field_validator("output_dir", "work_dir", "trash_dir")
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
        return _job_label(self._lines, index)


def _job_label(lines: KeyLines | None, index: int) -> str:
    line = lines.line(("job", index)) if lines is not None else None
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
    """Read and check a queue file; every input is looked at (that it exists).

    Raises BatchFileError naming every problem found, each with its line and key (see
    KeyLines). `base` (the config file's defaults) is only used to check that each
    job's segment lengths, all layers put together, go together.
    The work is linear in the file's size: every lookup is a dictionary's.
    """
    path = path.expanduser().absolute()
    text = read_text(path, QUEUE_LIMIT)
    lines = KeyLines(text)
    return check_batch(path, parse(path, text, lines), lines, ffmpeg, base)


def read_batch(
    path: Path,
    ffmpeg: str,
    base: JobOptions | None = None,
    *,
    on_rejected: Rejected | None = None,
) -> tuple[BatchFile, list[PlannedJob]]:
    """load_batch and expand_jobs in one, with every problem of both in one
    BatchFileError: the jobs whose inputs exist are expanded even when others do not,
    so a file queued twice is reported beside a missing one."""
    path = path.expanduser().absolute()
    text = read_text(path, QUEUE_LIMIT)
    lines = KeyLines(text)
    data = parse(path, text, lines)
    batch, problems, missing = _checked(path, data, lines, ffmpeg, base)
    planned: list[PlannedJob] = []
    if batch is not None:
        jobs = [(i, job) for i, job in enumerate(batch.jobs) if i not in missing]
        planned, conflicts = _expand(batch.defaults, jobs, ffmpeg, on_rejected, batch.job_label)
    else:  # the jobs the model takes, for the conflicts among them
        defaults, jobs = _valid_parts(data, {_BASE: path.parent})
        jobs = [(i, job) for i, job in jobs if i not in missing]
        label = partial(_job_label, lines)
        conflicts = _expand(defaults, jobs, ffmpeg, None, label)[1] if defaults else []
    problems += [Problem(None, None, text) for text in conflicts]
    if problems or batch is None:
        raise BatchFileError(path, in_file_order(problems))
    return batch, planned


def _valid_parts(
    data: dict[str, Any], context: dict[str, Any]
) -> tuple[BatchDefaults | None, list[tuple[int, BatchJob]]]:
    """The [defaults] table and the [[job]] tables (by index) that are valid alone, in a
    file the model refuses as a whole."""
    try:
        defaults = BatchDefaults.model_validate(data.get("defaults", {}), context=context)
    except PydanticValidationError:
        defaults = None
    raw = data.get("job")
    jobs: list[tuple[int, BatchJob]] = []
    for index, table in enumerate(raw if isinstance(raw, list) else []):
        try:
            jobs.append((index, BatchJob.model_validate(table, context=context)))
        except PydanticValidationError:
            continue
    return defaults, jobs


def check_batch(
    path: Path,
    data: dict[str, Any],
    lines: KeyLines,
    ffmpeg: str,
    base: JobOptions | None = None,
) -> BatchFile:
    """The parsed queue file `data` as a BatchFile, or BatchFileError (see load_batch)."""
    batch, problems, _ = _checked(path, data, lines, ffmpeg, base)
    if problems or batch is None:
        raise BatchFileError(path, in_file_order(problems))
    return batch


def _checked(
    path: Path,
    data: dict[str, Any],
    lines: KeyLines,
    ffmpeg: str,
    base: JobOptions | None,
) -> tuple[BatchFile | None, list[Problem], set[int]]:
    """The BatchFile (None when the model refuses it), every problem found, and the
    jobs (0-based) whose input is missing."""
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
    inputs = _input_problems(data, lines, path.parent)
    problems += [problem for _, problem in inputs]
    if batch is not None:
        batch._path = path
        batch._lines = lines  # read only if a message needs a job's line
    return batch, problems, {index for index, _ in inputs}


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
    """Work and trash folders that --work-dir and --trash-dir would refuse
    (services/outputs.py: one rule)."""
    tables: list[tuple[Loc, str, JobOptions]] = [(("defaults",), "defaults", batch.defaults)]
    tables += [(("job", i), f"job[{i + 1}]", job) for i, job in enumerate(batch.jobs)]
    problems: list[Problem] = []
    checked: dict[tuple[str, Path], str | None] = {}
    for loc, name, table in tables:
        for key, check in (("work_dir", check_folder), ("trash_dir", check_trash_dir)):
            folder = getattr(table, key)
            if folder is None:
                continue
            if (key, folder) not in checked:
                try:
                    check(folder)
                    checked[key, folder] = None
                except DraptoError as exc:
                    checked[key, folder] = exc.one_line()
            why = checked[key, folder]
            if why is not None:
                problems.append(Problem(lines.line((*loc, key)), f"{name}.{key}", why))
    return problems


def _input_problems(data: dict[str, Any], lines: KeyLines, base: Path) -> list[tuple[int, Problem]]:
    """Inputs that do not exist or are neither file nor folder, by job, for every job
    whose input was given (each distinct input is looked at once). A file that is not
    a video is no problem of the queue file: the batch lists it as failed, as it does
    such a file found in a queued folder."""
    jobs = data.get("job")
    if not isinstance(jobs, list):
        return []
    problems: list[tuple[int, Problem]] = []
    seen: dict[str, str | None] = {}
    for index, job in enumerate(jobs):
        raw = job.get("input") if isinstance(job, dict) else None
        if not isinstance(raw, str) or not raw.strip() or "\0" in raw:
            continue  # missing or mistyped: the model reports it
        if raw not in seen:
            seen[raw] = _input_problem(_resolve(Path(raw), base))
        why = seen[raw]
        if why is not None:
            place = ("job", index, "input")
            problem = Problem(lines.line(place), f"job[{index + 1}].input", why)
            problems.append((index, problem))
    return problems


def _input_problem(source: Path) -> str | None:
    """A missing input, or one that is neither a folder nor a regular file (a broken link
    or a loop, a FIFO: named, never opened). A file that is not media is no problem of
    the queue file's: it becomes one failed entry, as in a queued folder."""
    if source.is_dir():
        return None
    problem = file_problem(source)
    if problem == "no such file":
        return f"{source} does not exist"
    if problem is not None:
        return f"{source} {problem}"
    return None


# --- expanding --------------------------------------------------------------------------

Rejected = Callable[[Path, str], None]
"""Called with each file of a job that is no video: named by the job, or found in its
folder with a video extension."""


def expand_jobs(
    batch: BatchFile, ffmpeg: str, *, on_rejected: Rejected | None = None
) -> list[PlannedJob]:
    """Every file the batch encodes, in order, with its output and options.

    Folders are scanned (see library.scan_folder; every output folder of the batch is
    left out of every scan). Raises BatchFileError when a file is given twice, two files
    would be encoded to one output, or an output would overwrite an input.
    """
    jobs = list(enumerate(batch.jobs))
    planned, problems = _expand(batch.defaults, jobs, ffmpeg, on_rejected, batch.job_label)
    if problems:
        raise BatchFileError(batch.path or Path("queue file"), problems)
    return planned


def _expand(
    defaults: BatchDefaults,
    jobs: list[tuple[int, BatchJob]],
    ffmpeg: str,
    on_rejected: Rejected | None,
    label: Callable[[int], str],
) -> tuple[list[PlannedJob], list[str]]:
    """The files of `jobs` (index in the file, job) and the conflicts among them."""
    output_dirs = [job.options(defaults).output_dir for _, job in jobs]
    skip = [d for d in output_dirs if d is not None]
    planned: list[tuple[int, PlannedJob]] = []
    for index, job in jobs:
        options = job.options(defaults)
        for source, output in _files(job, options, ffmpeg, skip, on_rejected):
            planned.append((index, PlannedJob(input=source, output=output, options=options)))
    return [job for _, job in planned], _conflicts(label, planned)


def _files(
    job: BatchJob,
    options: JobOptions,
    ffmpeg: str,
    skip: Iterable[Path],
    on_rejected: Rejected | None,
) -> list[tuple[Path, Path]]:
    source = job.input.absolute()
    output_dir = None if options.replace else options.output_dir  # a replace's is beside
    if not source.is_dir():
        why = is_video_file(source, ffmpeg)
        if why is None:
            return _replaceable([(source, output_path(source, output_dir))], options, on_rejected)
        if on_rejected is not None:
            on_rejected(source, why)
        return []
    scan = scan_folder(source, ffmpeg, skip=skip)
    for path, why in scan.rejected:
        if on_rejected is not None:
            on_rejected(path, why)
    files = [(video, output_path(video, output_dir, root=source)) for video in scan.videos]
    return _replaceable(files, options, on_rejected)


def _replaceable(
    files: list[tuple[Path, Path]], options: JobOptions, on_rejected: Rejected | None
) -> list[tuple[Path, Path]]:
    """With replace: the files a replace may take the place of (services/outputs.py); the
    others are rejected, each one failed entry saying why."""
    if not options.replace:
        return files
    good, refused = replaceable(files, options.trash_dir)
    for path, _, why in refused:
        if on_rejected is not None:
            on_rejected(path, why.removeprefix(f"{path}: "))
    return good


def _conflicts(label: Callable[[int], str], planned: list[tuple[int, PlannedJob]]) -> list[str]:
    problems: list[str] = []
    inputs: dict[Path, tuple[int, Path]] = {}
    outputs: dict[Path, tuple[int, Path]] = {}
    for index, job in planned:
        real = job.input.resolve()
        if real in inputs:
            other, first = inputs[real]
            problems.append(
                f"{_who(label, other, first)} and {_who(label, index, job.input)} are the same file"
                " (each file may be queued once)"
            )
            continue
        inputs[real] = (index, job.input)
        target = job.output.resolve()
        if target in outputs:
            other, first = outputs[target]
            problems.append(
                f"{_who(label, other, first)} and {_who(label, index, job.input)} would both be"
                f" encoded to {job.output} (set a different output_dir for one)"
            )
        outputs[target] = (index, job.input)
    for target, (index, source) in outputs.items():
        if target in inputs:
            other, victim = inputs[target]
            problems.append(
                f"{_who(label, index, source)} would be encoded to {target}, overwriting the"
                f" input {_who(label, other, victim)} (set an output_dir)"
            )
    return problems


def _who(label: Callable[[int], str], index: int, source: Path) -> str:
    return f"{source} ({label(index)})"


def _job_options(defaults: JobOptions) -> JobOptions:
    """Defaults as plain JobOptions: BatchDefaults' workers is the batch's, not a job's."""
    return JobOptions.model_validate(defaults.model_dump(include=set(JobOptions.model_fields)))
