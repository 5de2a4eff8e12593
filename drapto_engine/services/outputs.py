"""The one set of rules for where a job may write: its output file and its work folder.

The command line (`-o/--output`, `--work-dir`), the queue file and the config file
(`work_dir`) and the engine's `add_file` / `add_paths` (whatever client sent them) all
check with these functions, so a path one entry point refuses none accepts. Each
raises `DraptoError` naming the path and the problem; the command line turns it into
a usage error naming its option, a settings file into a problem on its line.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from drapto_engine.core.errors import DraptoError

OUTPUT_EXTENSION = ".mkv"
"""drapto writes Matroska, and only under a name that says so."""


def matroska_problem(output: Path) -> str | None:
    """Why `output` is not a name drapto writes to, by its extension alone."""
    if output.suffix.lower() == OUTPUT_EXTENSION:
        return None
    got = f", not {output.suffix!r}" if output.suffix else ""
    return f"drapto writes Matroska: the name must end in {OUTPUT_EXTENSION}{got}"


PID_DIGITS = 7
"""The widest process id (Linux's pid_max is 2**22 at most) in a partial file's name."""


def partial_name(output: Path, pid: int | None = None) -> Path:
    """The temporary name an output is written under until it validates. It names the
    writing process: one that wakes after its job was taken over never writes into the
    new holder's file."""
    return output.with_name(f".{output.stem}.drapto-partial-{pid or os.getpid()}{output.suffix}")


def check_name_length(output: Path) -> None:
    """The longest name drapto creates for `output` (its partial file's) fits the
    folder's file system, so a finished encode never fails at the join."""
    longest = partial_name(output, 10**PID_DIGITS - 1).name
    try:
        limit = os.pathconf(output.parent, "PC_NAME_MAX")
    except (OSError, ValueError):  # a folder still to be made: the common limit
        limit = 255
    size = len(os.fsencode(longest))
    if size > limit:
        raise DraptoError(
            f"the name is too long: drapto writes the file first under a name of {size} "
            f"bytes, over the {limit} a name may have here (the stem may have "
            f"{len(os.fsencode(output.stem)) - (size - limit)} bytes at most)",
            output,
        )


def check_output_path(
    output: Path, source: Path | None = None, *, made_folder: bool = False
) -> None:
    """An output file name drapto may write: ending in .mkv, not a folder, not the
    input, in an existing writable folder (unless `made_folder`: an output_dir's
    subfolders are drapto's to make when the job runs)."""
    problem = matroska_problem(output)
    if problem is not None:
        raise DraptoError(problem, output)
    if output.is_dir():
        raise DraptoError("is a directory, not a file name", output)
    if source is not None and _same_file(output, source):
        raise DraptoError("would overwrite the input", output)
    check_name_length(output)
    if made_folder:
        return
    folder = output.parent
    if folder.exists() and not folder.is_dir():
        raise DraptoError("output folder is not a folder", folder)
    if not folder.is_dir():
        raise DraptoError("output folder does not exist", folder)
    check_writable(folder)


def check_free(output: Path, overwrite: bool) -> None:
    """An existing output is replaced only when the job says overwrite."""
    if not overwrite and output.exists():
        raise DraptoError("output exists", output, hint="use --overwrite to replace it")


def check_folder(folder: Path) -> None:
    """A folder drapto writes in (`work_dir`): it exists, is a folder and takes files.
    drapto never creates a work folder: a typo must not scatter work over the disk."""
    if not folder.exists():
        raise DraptoError("no such folder", folder)
    if not folder.is_dir():
        raise DraptoError("is not a folder", folder)
    check_writable(folder)


def check_writable(folder: Path) -> None:
    """Create and remove a file: permission bits alone miss read-only mounts and root."""
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".drapto-write-test-"):
            pass
    except OSError as exc:
        raise DraptoError(f"is not writable ({exc.strerror})", folder) from None


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and a.samefile(b)
    except OSError:
        return False


def named_outputs(
    pairs: list[tuple[Path, Path]],
) -> tuple[list[tuple[Path, Path]], list[tuple[Path, Path, str]]]:
    """The (input, output) pairs whose output names pass `check_output_path`, and the
    others as failures (a folder named like an output). Their folders are checked when
    each job starts: an output_dir's subfolders are made then."""
    good: list[tuple[Path, Path]] = []
    refused: list[tuple[Path, Path, str]] = []
    for source, output in pairs:
        try:
            check_output_path(output, source, made_folder=True)
        except DraptoError as exc:
            refused.append((source, output, exc.one_line()))
        else:
            good.append((source, output))
    return good, refused
