"""Feature flags: named strategy switches, changed live, with a safe way back.

A flag is on, off, or (for flags that choose an analysis strategy) shadow: the
default strategy is used and the other one is run beside it, their differences
recorded. States come in layers, each over the one before: the registry's
default, the config file's [flags], the flags saved by live changes, the run's
--flag overrides, changes made live through the engine, and rollbacks.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict

from drapto_engine.core.errors import DraptoError
from drapto_engine.core.models import EncodeSettings
from drapto_engine.core.problems import shown


class Scope(StrEnum):
    NEXT_SEGMENT = "next_segment"
    NEXT_JOB = "next_job"


class FlagState(StrEnum):
    ON = "on"
    OFF = "off"
    SHADOW = "shadow"


class FlagSource(StrEnum):
    DEFAULT = "default"
    CONFIG = "config"
    SAVED = "saved"
    RUN = "run"
    LIVE = "live"
    ROLLBACK = "rollback"


class Flag(BaseModel):
    model_config = ConfigDict(defer_build=True, frozen=True)

    name: str
    description: str
    default: bool
    scope: Scope
    setting: str | None
    """The EncodeSettings field the flag drives; None for a flag read live by the engine."""
    shadow: bool = False
    """Takes the shadow state: both strategies' analyses run, the default one is used."""
    owns: frozenset[str] = frozenset()
    """Job stages whose failure, with the flag on, rolls the job back with it off."""
    cannot_fail: frozenset[str] = frozenset()
    """Validation checks (services/validation.py `Failure.check`) the flag's strategy
    cannot make fail: a validation that failed only those is not rolled back with it."""


DISTRIBUTED_ENCODING = "distributed_encoding"
TARGET_QUALITY = "target_quality"
"""The flag that lets segments go to cluster workers (the engine reads it)."""

FLAGS: tuple[Flag, ...] = (
    Flag(
        name="scene_segmentation",
        description="cut segments at scene changes (off: fixed-length segments)",
        default=True,
        scope=Scope.NEXT_JOB,
        setting="scene_detection",
        shadow=True,
        owns=frozenset({"segmenting"}),
    ),
    Flag(
        name="segmented_encoding",
        description="encode in parallel segments (off: one whole-file encode)",
        default=True,
        scope=Scope.NEXT_JOB,
        setting="segmented",
        owns=frozenset({"encoding", "muxing", "validating"}),
        cannot_fail=frozenset({"size", "format"}),  # the plan's, whoever encodes
    ),
    Flag(
        name="segmented_dolby_vision",
        description="encode Dolby Vision in parallel segments (off: one whole-file run)",
        default=True,
        scope=Scope.NEXT_JOB,
        setting="segmented_dolby_vision",
        owns=frozenset({"encoding", "muxing", "validating"}),
        cannot_fail=frozenset({"size", "format"}),  # the plan's, whoever encodes
    ),
    Flag(
        name="crop_detection",
        description="detect and crop black bars (off: never crop)",
        default=True,
        scope=Scope.NEXT_JOB,
        setting="crop",
        shadow=True,
        owns=frozenset({"validating"}),
    ),
    Flag(
        name="dolby_vision_crop",
        description="crop Dolby Vision sources too (their RPU keeps describing the full frame)",
        default=False,
        scope=Scope.NEXT_JOB,
        setting="dolby_vision_crop",
        owns=frozenset({"validating"}),
    ),
    Flag(
        name="tail_threads",
        description="give the last segments to start the cores that others free (off: equal shares)",
        default=True,
        scope=Scope.NEXT_SEGMENT,
        setting=None,
    ),
    Flag(
        name=TARGET_QUALITY,
        description="pick each segment's CRF by measured VMAF when a job sets target_vmaf "
        "(off: the fixed CRF)",
        default=True,
        scope=Scope.NEXT_JOB,
        setting="target_quality",
    ),
    Flag(
        name=DISTRIBUTED_ENCODING,
        description="send segments to cluster workers when no local slot is free (off: local only)",
        default=True,
        scope=Scope.NEXT_SEGMENT,
        setting=None,
    ),
)
BY_NAME = {flag.name: flag for flag in FLAGS}
ON, OFF = frozenset({"on", "true", "1", "yes"}), frozenset({"off", "false", "0", "no"})


def parse_state(name: str, value: object) -> FlagState:
    """A flag's state from on/off/shadow text (or a TOML boolean); anything else raises."""
    flag = BY_NAME.get(name)
    if flag is None:
        close = difflib.get_close_matches(name, BY_NAME, n=1)
        hint = (
            f"did you mean {close[0]!r}?"
            if close
            else f"flags are {', '.join(BY_NAME)}; see drapto flags"
        )
        raise DraptoError(f"unknown flag {name!r}", hint=hint)
    if isinstance(value, bool):
        return FlagState.ON if value else FlagState.OFF
    takes = "on, off or shadow" if flag.shadow else "on or off"
    if not isinstance(value, str):
        raise DraptoError(f"flag {name} takes {takes}, not {shown(value)}")
    text = value.strip().lower()
    if text in ON:
        return FlagState.ON
    if text in OFF:
        return FlagState.OFF
    if text == "shadow":
        if not flag.shadow:
            raise DraptoError(f"flag {name} has no shadow state (only on or off)")
        return FlagState.SHADOW
    raise DraptoError(f"flag {name} takes {takes}, not {shown(value)}")


def parse_override(text: str) -> tuple[str, FlagState]:
    """`NAME=on|off|shadow` as given to --flag."""
    name, sep, value = text.partition("=")
    if not sep:
        raise DraptoError(
            f"flag override {text!r} is not NAME=on|off", hint="e.g. --flag crop_detection=off"
        )
    return name.strip(), parse_state(name.strip(), value)


def parse_states(states: Mapping[str, object]) -> dict[str, FlagState]:
    return {name: parse_state(name, value) for name, value in states.items()}


def check_states(states: Mapping[str, object]) -> tuple[dict[str, FlagState], dict[str, str]]:
    """A `[flags]` table's good states, and the problem of each bad one by name."""
    good: dict[str, FlagState] = {}
    bad: dict[str, str] = {}
    for name, value in states.items():
        try:
            good[name] = parse_state(name, value)
        except DraptoError as exc:
            bad[name] = exc.one_line()
    return good, bad


def _validated_states(value: object) -> object:
    if not isinstance(value, Mapping):
        return value  # pydantic reports the wrong type
    good, bad = check_states(value)
    if bad:
        raise ValueError("; ".join(bad.values()))
    return good


FlagStates = Annotated[dict[str, FlagState], BeforeValidator(_validated_states)]
"""A `[flags]` table (config file, queue file): known names, on/off/shadow or booleans."""


def effective(flag: Flag, state: FlagState) -> bool:
    """Whether the flag's strategy is used: shadow uses the default one."""
    return flag.default if state is FlagState.SHADOW else state is FlagState.ON


def apply_flags(settings: EncodeSettings, states: Mapping[str, FlagState | bool]) -> EncodeSettings:
    """Settings with each flag's effective state written into the field it drives."""
    update: dict[str, bool] = {}
    for name, state in states.items():
        flag = BY_NAME[name]
        if flag.setting is None:
            continue
        on = state if isinstance(state, bool) else effective(flag, state)
        update[flag.setting] = on
    return settings.model_copy(update=update)


def shadowed(states: Mapping[str, FlagState]) -> frozenset[str]:
    return frozenset(name for name, state in states.items() if state is FlagState.SHADOW)


class FlagView(BaseModel):
    """A flag as `drapto flags`, the API and the TUI show it."""

    model_config = ConfigDict(defer_build=True, frozen=True, extra="forbid")

    name: str
    description: str
    scope: Scope
    default: FlagState
    state: FlagState
    source: FlagSource
    shadow_capable: bool
    rollbacks: int = 0
    """Jobs rolled back with this flag off in this session."""


OnChange = Callable[[FlagView, FlagState, str | None], None]
"""Called after a change with the new view, the previous state and the reason."""


class FlagSet:
    """The live flag states of one engine session."""

    def __init__(
        self,
        layers: Mapping[FlagSource, Mapping[str, FlagState]] | None = None,
        *,
        on_change: OnChange | None = None,
    ) -> None:
        self._states: dict[str, tuple[FlagState, FlagSource]] = {
            f.name: (FlagState.ON if f.default else FlagState.OFF, FlagSource.DEFAULT)
            for f in FLAGS
        }
        for source in FlagSource:  # enum order is layer order
            for name, state in (layers or {}).get(source, {}).items():
                self._states[name] = (state, source)
        self._rollbacks: dict[str, int] = {}
        self.on_change = on_change

    def state(self, name: str) -> FlagState:
        return self._states[name][0]

    def enabled(self, name: str) -> bool:
        return effective(BY_NAME[name], self.state(name))

    def states(self) -> dict[str, FlagState]:
        return {name: state for name, (state, _) in self._states.items()}

    def view(self, name: str) -> FlagView:
        flag = BY_NAME[name]
        state, source = self._states[name]
        return FlagView(
            name=name,
            description=flag.description,
            scope=flag.scope,
            default=FlagState.ON if flag.default else FlagState.OFF,
            state=state,
            source=source,
            shadow_capable=flag.shadow,
            rollbacks=self._rollbacks.get(name, 0),
        )

    def views(self) -> list[FlagView]:
        return [self.view(flag.name) for flag in FLAGS]

    def set(
        self,
        name: str,
        state: FlagState,
        source: FlagSource = FlagSource.LIVE,
        reason: str | None = None,
    ) -> FlagView:
        parse_state(name, state.value)  # unknown names and shadow-less flags raise
        previous = self.state(name)
        self._states[name] = (state, source)
        view = self.view(name)
        if self.on_change is not None:
            self.on_change(view, previous, reason)
        return view

    def for_job(
        self, settings: EncodeSettings, overrides: Mapping[str, FlagState] | None = None
    ) -> tuple[EncodeSettings, frozenset[str]]:
        """A new job's settings under the current states (and the job's own overrides),
        and the flags it runs in shadow."""
        states = {**self.states(), **(overrides or {})}
        return apply_flags(settings, states), shadowed(states)

    def count_rollback(self, name: str) -> int:
        """Count a job rolled back with `name` off; returns the session's count."""
        self._rollbacks[name] = self._rollbacks.get(name, 0) + 1
        return self._rollbacks[name]
