"""The bridge: engine events and client outcomes as Textual messages (plain dataclasses;
a frozen Message fails at runtime)."""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from drapto_engine.core.events import Event


@dataclass
class EngineNotice(Message):
    """An event a person should see: a warning, an alert, a rollback, a failure."""

    event: Event


@dataclass
class EngineGone(Message):
    """The connection to the engine ended."""

    reason: str
