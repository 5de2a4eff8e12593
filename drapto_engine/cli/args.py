"""Option values checked where argparse reads them, before any command does work.

Every mistake becomes a `UsageError` naming the option (exit status 2); the error
boundary in main.py prints it as one line. The per-job values are checked twice: by
the range drapto documents here and by the same pydantic model (JobOptions) that
checks a queue file or the config file, so the three cannot disagree silently.
"""

from __future__ import annotations

import argparse
import difflib
import math
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import pydantic

from drapto_engine.core.errors import DraptoError, UsageError
from drapto_engine.core.flags import BY_NAME, FlagState, parse_state
from drapto_engine.core.jobs import (
    CRF_MAX,
    CRF_MIN,
    PRESET_MAX,
    PRESET_MIN,
    TARGET_VMAF_MAX,
    TARGET_VMAF_MIN,
    JobOptions,
)
from drapto_engine.infrastructure.paths import MAX_SOCKET_PATH
from drapto_engine.infrastructure.workers import cpu_count
from drapto_engine.services import outputs

PRESETS = (PRESET_MIN, PRESET_MAX)
"""SVT-AV1 4.2 (the bundled ffmpeg's) takes -2 (slowest) to 13; ffmpeg refuses 14 and -3."""
CRFS = (CRF_MIN, CRF_MAX)
"""libsvtav1 ignores CRF 0 (it means "unset" and falls back to its default of 35)."""
WORKERS_PER_CORE = 4
"""--workers above 4 encoders a core only thrashes memory and caches."""


class Parser(argparse.ArgumentParser):
    """argparse, except that a mistake is a UsageError (one line), not usage text + exit."""

    command: str | None = None
    """The command parsed, once parse_known_args has run (for messages naming it)."""

    def parse_known_args(self, *args: Any, **kwargs: Any) -> Any:
        parsed, extras = super().parse_known_args(*args, **kwargs)
        self.command = getattr(parsed, "command", None)
        return parsed, extras

    def error(self, message: str) -> NoReturn:
        message += self._did_you_mean(message)
        match = re.match(r"argument (\S+): (.*)", message, re.DOTALL)
        if match:
            option, problem = match.groups()
            raise UsageError(problem, option, hint=f"see {self.prog} --help")
        command = self.prog.removeprefix("drapto").strip()
        problem = f"{command}: {message}" if command else message
        raise UsageError(problem, hint=f"see {self.prog} --help")

    def _did_you_mean(self, message: str) -> str:
        """`; did you mean 'encode'?` for a mistyped command, choice or option name."""
        choice = re.search(r"invalid choice: '?([^' ]*)'? \(choose from (.*)\)", message)
        if choice:
            given, listed = choice.groups()
            names = [name.strip(" '") for name in listed.split(",")]
            close = difflib.get_close_matches(given, names, n=3, cutoff=0.7)
            # two letters swapped (`stauts`) is the commonest slip: its own letters first
            close.sort(key=lambda name: sorted(name) != sorted(given))
            return f"; did you mean {close[0]!r}?" if close else ""
        unknown = re.match(r"unrecognized arguments: (.*)", message)
        if unknown:
            options = sorted(self._option_names())
            for given in unknown.group(1).split():
                name = given.split("=")[0]
                if given.startswith("--") and name in options:
                    return self._elsewhere(name)
                if given.startswith("--"):
                    close = difflib.get_close_matches(
                        given.split("=")[0], options, n=1, cutoff=0.75
                    )
                    if close:
                        return f"; did you mean {close[0]}?"
        return ""

    def _elsewhere(self, option: str) -> str:
        """`; drapto status has no --state-dir (drapto --batch and drapto serve have)`:
        a real option given to a command it does not belong to."""
        owners: list[str] = []
        before = False  # a global option, e.g. --config: it goes before the command
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                owners += [
                    f"{self.prog} {name}"
                    for name, sub in action.choices.items()
                    if isinstance(sub, Parser) and option in sub._option_names()
                ]
            elif option in action.option_strings:
                if any(option in a.option_strings for a in self._batch_actions()):
                    owners.insert(0, f"{self.prog} --batch")
                else:
                    before = True
        if before:
            command = f" {self.command}" if self.command else " COMMAND"
            return f"; {option} goes before the command ({self.prog} {option} ...{command})"
        here = f"{self.prog} {self.command}" if self.command else self.prog
        listed = ", ".join(owners[:-1]) + (" and " if len(owners) > 1 else "") + owners[-1]
        return f"; {here} has no {option} ({listed} {'has' if len(owners) == 1 else 'have'})"

    def _batch_actions(self) -> list[argparse.Action]:
        """The options of the `batch mode` group: they mean something only with --batch."""
        for group in self._action_groups:
            if group.title == "batch mode":
                return list(group._group_actions)
        return []

    def _option_names(self) -> set[str]:
        """Every option string of this parser and of its subcommands' parsers."""
        names: set[str] = set()
        for action in self._actions:
            names.update(s for s in action.option_strings if s.startswith("--"))
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    if isinstance(sub, Parser):
                        names |= sub._option_names()
        return names


def max_workers() -> int:
    return WORKERS_PER_CORE * cpu_count()


def _integer(text: str, low: int, high: int, note: str = "") -> int:
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise argparse.ArgumentTypeError(
            f"must be an integer from {low} to {high}{note}, not {text!r}"
        )
    return value


def _job_option(field: str, value: Any, text: str) -> Any:
    """The value as JobOptions (the queue file's and config's model) takes it."""
    try:
        return getattr(JobOptions.model_validate({field: value}), field)
    except pydantic.ValidationError as exc:
        problem = exc.errors()[0]["msg"]
        for prefix in ("Value error, ", "Input ", "Value "):
            problem = problem.removeprefix(prefix)
        if ", not " in problem:  # a validator of drapto's own says what it was given
            raise argparse.ArgumentTypeError(problem) from None
        raise argparse.ArgumentTypeError(f"{problem}, not {text!r}") from None


def preset(text: str) -> int:
    return int(_job_option("preset", _integer(text, *PRESETS), text))


def crf(text: str) -> int:
    return int(_job_option("crf", _integer(text, *CRFS), text))


def target_vmaf(text: str) -> float:
    """A target VMAF, 50 to 99, decimals allowed."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and TARGET_VMAF_MIN <= value <= TARGET_VMAF_MAX):
        raise argparse.ArgumentTypeError(
            f"must be a number from {TARGET_VMAF_MIN:g} to {TARGET_VMAF_MAX:g}, not {text!r}"
        )
    return float(_job_option("target_vmaf", value, text))


def crf_range(text: str) -> tuple[int, int]:
    """`MIN-MAX`: the CRFs a target search may choose from."""
    low, high = _job_option("crf_range", text, text)
    return int(low), int(high)


def workers(text: str) -> int:
    return _integer(text, 1, max_workers(), f" ({WORKERS_PER_CORE} per core)")


def positive_seconds(text: str) -> float:
    """A finite number of seconds above 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0, not {text!r}")
    return value


def name(text: str) -> str:
    """A non-empty name on one line."""
    if not text.strip() or "\n" in text:
        raise argparse.ArgumentTypeError(f"must be a name on one line, not {text!r}")
    return text


def saving(text: str) -> float:
    """--min-saving: a share from 0 to below 1 (0.10 = 10% smaller), or a percentage."""
    percent = text.endswith("%")
    try:
        value = float(text.removesuffix("%")) / (100 if percent else 1)
    except ValueError:
        value = math.nan
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(
            f"must be a share from 0 to below 1 (0.10 or 10% = 10% smaller), not {text!r}"
        )
    return float(_job_option("min_saving", value, text))


def days(text: str) -> int:
    """--keep-days: a whole number of days, 0 or more."""
    return int(_job_option("keep_days", _integer(text, 0, 100 * 365), text))


def seconds(field: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        return float(_job_option(field, positive_seconds(text), text))

    parse.__name__ = "seconds"
    return parse


def flag_state(name: str, value: str) -> FlagState:
    """A flag's state as a person typed it; a misspelt name gets a suggestion."""
    if name not in BY_NAME:
        close = difflib.get_close_matches(name, list(BY_NAME), n=1)
        hint = f"did you mean {close[0]}?" if close else f"flags are {', '.join(BY_NAME)}"
        raise UsageError(f"unknown flag {name!r}", hint=hint)
    try:
        return parse_state(name, value)
    except DraptoError as exc:
        raise UsageError(exc.problem, hint=exc.hint) from None


def flag_override(text: str) -> str:
    """`--flag NAME=on|off|shadow`, checked; the text itself is kept for flags_from."""
    name, sep, value = text.partition("=")
    try:
        if not sep:
            raise UsageError(f"{text!r} is not NAME=on|off|shadow (e.g. crop_detection=off)")
        flag_state(name.strip(), value)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(exc.one_line()) from None
    return text


def mkv_output(text: str) -> Path:
    path = Path(text)
    problem = outputs.matroska_problem(path)
    if problem is not None:
        raise argparse.ArgumentTypeError(f"{text}: {problem}")
    return path


def socket_path(text: str) -> Path:
    """A Unix socket path the kernel takes (107 bytes at most, once absolute)."""
    path = Path(text).absolute()
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise argparse.ArgumentTypeError(
            f"{text}: a socket path may be {MAX_SOCKET_PATH} bytes at most, not"
            f" {len(os.fsencode(path))}"
        )
    return path


def check_socket_folder(option: str, path: Path) -> None:
    """The socket's folder exists or can be made, and is this user's alone (for `drapto serve`)."""
    from drapto_engine.server.location import prepare_folder

    try:
        prepare_folder(path.parent, path.name)
    except DraptoError as exc:
        raise UsageError(exc.one_line(), option) from None


def check_output(option: str, output: Path, source: Path | None = None) -> None:
    """An output file name a command can write (services/outputs.py: the engine's rule)."""
    try:
        outputs.check_output_path(output, source)
    except DraptoError as exc:
        raise UsageError(exc.one_line(), option) from None


def check_folder(option: str, folder: Path, *, create: bool = False) -> None:
    """A folder given as an option exists (or can be made) and takes files."""
    if create:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise UsageError(f"{folder}: is not a folder", option) from None
        except OSError as exc:
            raise UsageError(f"{folder}: cannot be created: {exc.strerror}", option) from None
    try:
        outputs.check_folder(folder)
    except DraptoError as exc:
        raise UsageError(exc.one_line(), option) from None


def check_trash_dir(option: str, folder: Path) -> None:
    """A trash folder given as an option (services/outputs.py: the engine's rule)."""
    try:
        outputs.check_trash_dir(folder)
    except DraptoError as exc:
        raise UsageError(exc.one_line(), option) from None


def check_input(path: Path) -> None:
    """An input file that exists, is a regular file and can be read (exit 1 when not).
    What it is comes first: opening a FIFO would block until a writer came."""
    from drapto_engine.services.library import file_problem

    problem = file_problem(path)
    if problem is not None:
        raise DraptoError(problem, path)
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise DraptoError(f"cannot be read: {exc.strerror or exc}", path) from None
