"""The config file (`~/.config/drapto/config.toml`, XDG): one pydantic model validates it.

Layers, each over the one before: built-in defaults, this file, the flags saved by
live changes (`flags.toml` beside it), then what a run says (--flag, a queue file).
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any

import tomli_w
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
)

from drapto_engine.core.errors import DraptoError
from drapto_engine.core.flags import FlagState, FlagStates, parse_state
from drapto_engine.core.jobs import JobOptions, SettingPath
from drapto_engine.core.schedule import Schedule, parse_window
from drapto_engine.core.watching import DEFAULT_SETTLE_S, check_policy
from drapto_engine.infrastructure.paths import MAX_SOCKET_PATH, config_file
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
from drapto_engine.services.outputs import check_folder, check_trash_dir

CONFIG_LIMIT = 1 << 20
"""The largest config file read (1 MiB): anything bigger is not one."""


Number = Annotated[float, Strict(), Field(allow_inf_nan=False)]
"""A finite number (a whole number is one too; true is not); fields add their range."""


class ClusterSettings(BaseModel):
    """[cluster]: the Dask scheduler `drapto serve` hosts (as --cluster, --dashboard,
    --insecure); the command line wins."""

    model_config = ConfigDict(defer_build=True, frozen=True, extra="forbid")

    listen: StrictStr = Field(min_length=1)
    """tls://HOST:PORT, e.g. tls://0.0.0.0:8786."""
    dashboard: StrictStr | None = Field(default=None, min_length=1)
    insecure: bool = Field(default=False, strict=True)


class WatchSettings(BaseModel):
    """A [[watch]] table: a folder whose new videos are queued once they settle."""

    model_config = ConfigDict(defer_build=True, frozen=True, extra="forbid")

    path: SettingPath
    """The folder; its subfolders are watched too."""
    output: StrictStr = "beside"
    """"beside" (the default), "replace" or "folder:/path"."""
    settle_s: Number = Field(default=DEFAULT_SETTLE_S, ge=0)
    """A file's size and modification time unchanged this long before it is queued."""
    min_saving: Number | None = Field(default=None, ge=0, lt=1)
    """With output = "replace": the least saving for which the original is replaced."""
    keep_days: StrictInt | None = Field(default=None, ge=0)
    """With output = "replace": days an original stays in the trash."""

    @field_validator("output")
    @classmethod
    def _policy(cls, value: str) -> str:
        return check_policy(value)


class ScheduleSettings(BaseModel):
    """[schedule]: when new encodes may start, and yielding the CPU to other programs."""

    model_config = ConfigDict(defer_build=True, frozen=True, extra="forbid")

    windows: list[StrictStr] | None = None
    """"01:00-07:00", "Mon-Fri 22:00-06:00", "Sat,Sun 00:00-24:00"; absent: always."""
    yield_cpu: Number | None = Field(default=None, gt=0, le=1)
    """Pause drapto's encoders while other programs keep more than this share of the
    CPU busy for yield_hold_s; absent: never."""
    yield_hold_s: Number = Field(default=30.0, gt=0)
    """How long other programs' use must stay above (or below) yield_cpu."""

    @field_validator("windows")
    @classmethod
    def _windows(cls, value: list[str] | None) -> list[str] | None:
        for text in value or ():
            parse_window(text)
        return value

    def schedule(self) -> Schedule:
        return Schedule.parse(self.windows)


class Config(BaseModel):
    """config.toml. Types are strict (`workers = true` is refused, not read as 1) and
    numbers finite; an unknown key is refused with the nearest known one."""

    model_config = ConfigDict(defer_build=True, frozen=True, extra="forbid")

    ffmpeg_path: StrictStr | None = Field(default=None, min_length=1)
    """An ffmpeg binary to use instead of the bundled one (DRAPTO_FFMPEG still wins)."""
    defaults: JobOptions = JobOptions()
    """Defaults for every job (preset, crf, output_dir, overwrite ...)."""
    flags: FlagStates = Field(default_factory=dict)
    """Feature flag defaults: name = "on" | "off" | "shadow" (or true/false)."""
    workers: StrictInt | None = Field(default=None, ge=1)
    """Most encoders at once over all jobs; unset: from cores and memory."""
    memory_reserve_percent: Number = Field(default=15.0, ge=0, le=90)
    """Memory kept free: below it no encoder is admitted and the newest is suspended."""
    notify_url: StrictStr | None = None
    """ntfy-style URL that gets a POST at batch start, each job's end and batch end."""
    notify_daily: StrictStr | None = None
    """With notify_url: a summary of the space saved, sent once a day at this local time
    ("HH:MM"); unset: none."""
    rollback_limit: StrictInt = Field(default=3, ge=1)
    """Rollbacks of one flag in a session after which it is off for the rest of it."""
    stall_timeout_s: Number = Field(default=60.0, gt=0)
    """An encoder with no progress for this long raises a stalled alert."""
    slow_encoder_ratio: Number = Field(default=3.0, gt=1)
    """An encoder this many times slower than the job's median raises an alert."""
    socket_path: SettingPath | None = None
    """The engine service's Unix socket; unset: $XDG_RUNTIME_DIR/drapto/engine.sock."""
    cluster: ClusterSettings | None = None
    """A Dask scheduler for `drapto worker`s, hosted by `drapto serve` (cluster extra)."""
    watch: list[WatchSettings] = Field(default_factory=list)
    """[[watch]] tables: folders whose new videos the engine service queues."""
    watch_rescan_s: Number = Field(default=600.0, gt=0)
    """Seconds between full rescans of the watched folders (inotify misses network mounts)."""
    schedule: ScheduleSettings = ScheduleSettings()
    """[schedule]: encode windows and yielding the CPU."""

    @field_validator("socket_path")
    @classmethod
    def _socket_fits(cls, value: Path | None) -> Path | None:
        """The kernel's limit on a Unix socket's path, as --socket checks it."""
        size = len(os.fsencode(value.absolute())) if value is not None else 0
        if size > MAX_SOCKET_PATH:
            raise ValueError(f"a socket path may be {MAX_SOCKET_PATH} bytes at most, not {size}")
        return value

    @field_validator("notify_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("notify_daily")
    @classmethod
    def _time_of_day(cls, value: str | None) -> str | None:
        if value is not None and daily_at(value) is None:
            raise ValueError(f"must be a time of day as HH:MM (e.g. 08:00), not {value!r}")
        return value

    def to_toml(self) -> str:
        data = self.model_dump(mode="json", exclude_none=True)
        data["defaults"] = self.defaults.model_dump(mode="json", exclude_none=True)
        return tomli_w.dumps(data)


def daily_at(text: str) -> tuple[int, int] | None:
    """`08:30` as (8, 30); None for anything else."""
    match = re.fullmatch(r"([01]?[0-9]|2[0-3]):([0-5][0-9])", text)
    return (int(match[1]), int(match[2])) if match else None


def load_config(path: Path | None = None) -> Config:
    """The config file's settings; a missing file means the defaults (unless named).

    Raises FileProblems (exit status 2) naming the file, line and key of each problem."""
    named = path is not None
    path = path or config_file()
    if not path.exists():
        if named:
            raise FileProblems(path, ["config file not found"])
        return Config()
    text = read_text(path, CONFIG_LIMIT)
    lines = KeyLines(text)
    return validated(parse(path, text, lines), lines, path)


def validated(data: dict[str, Any], lines: KeyLines, path: Path) -> Config:
    """`data` (the parsed file) as a Config, or FileProblems with every problem."""
    problems = flag_problems(data, lines)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        problems += model_problems(exc, lines, _keys_at)
    else:
        problems += _folder_problems(config, lines)
        if not problems:
            return config
    raise FileProblems(path, in_file_order(problems))


def _folder_problems(config: Config, lines: KeyLines) -> list[Problem]:
    """A work folder that --work-dir would refuse, a trash folder that --trash-dir would
    (services/outputs.py: one rule)."""
    problems: list[Problem] = []
    for key, folder, check in (
        ("work_dir", config.defaults.work_dir, check_folder),
        ("trash_dir", config.defaults.trash_dir, check_trash_dir),
    ):
        if folder is None:
            continue
        try:
            check(folder)
        except DraptoError as exc:
            place = ("defaults", key)
            problems.append(Problem(lines.line(place), f"defaults.{key}", exc.one_line()))
    return problems


def _keys_at(loc: Loc) -> list[str]:
    if loc == ("defaults",):
        return list(JobOptions.model_fields)
    if loc == ("cluster",):
        return list(ClusterSettings.model_fields)
    if loc == ("schedule",):
        return list(ScheduleSettings.model_fields)
    if len(loc) == 2 and loc[0] == "watch":
        return list(WatchSettings.model_fields)
    return list(Config.model_fields)


def read_toml(path: Path, what: str) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise DraptoError(f"invalid TOML: {exc}", path) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise DraptoError(f"cannot read {what} file: {exc}", path) from exc


def saved_flags_file(config: Path | None = None) -> Path:
    """Where live flag changes are persisted: flags.toml beside the config file."""
    return (config or config_file()).with_name("flags.toml")


def load_saved_flags(path: Path) -> dict[str, FlagState]:
    """Flags saved by live changes; a damaged file is ignored rather than fatal."""
    if not path.is_file():
        return {}
    data = read_toml(path, "flags")
    try:
        return {name: parse_state(name, value) for name, value in data.items()}
    except DraptoError as exc:
        raise DraptoError(f"invalid saved flags: {exc.problem}", path) from exc


def save_flags(path: Path, states: dict[str, FlagState]) -> None:
    """Write the saved flags (tomli-w) atomically: a crash leaves the old file or the new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(tomli_w.dumps({k: v.value for k, v in sorted(states.items())}))
    temporary.replace(path)
