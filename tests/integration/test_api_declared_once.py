"""Every call declared in `core.api.EngineAPI` is there for real in each place a client
meets it: the in-process Engine, the service's client, the server's dispatch (over a
real socket, to a real engine) and the TUI tests' replay fake. A call added to the
declaration and missing from any of them fails here."""

from __future__ import annotations

import collections.abc
import inspect
import shutil
import tempfile
import typing
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from tui.replay import ReplayClient

from drapto_engine.config import Config
from drapto_engine.core.api import EngineAPI
from drapto_engine.core.errors import DraptoError
from drapto_engine.engine import Engine
from drapto_engine.server.client import EngineClient
from drapto_engine.server.server import EngineServer

NO_ENTRY = 424242


def declared() -> list[str]:
    return [name for name in vars(EngineAPI) if not name.startswith("_")]


def parameters(owner: object, name: str) -> list[tuple[str, object]]:
    signature = inspect.signature(getattr(owner, name))
    return [(p.name, p.default) for p in signature.parameters.values() if p.name != "self"]


def arguments(name: str) -> dict[str, Any]:
    """Arguments of the declared types for each required parameter, naming nothing that
    exists (no entry, no file, no flag), so every call is answered without changing
    anything a later call sees."""
    hints = typing.get_type_hints(getattr(EngineAPI, name))
    chosen: dict[str, Any] = {}
    for parameter in inspect.signature(getattr(EngineAPI, name)).parameters.values():
        if parameter.name == "self" or parameter.default is not inspect.Parameter.empty:
            continue
        hint = hints[parameter.name]
        if typing.get_origin(hint) is collections.abc.Sequence:
            item = typing.get_args(hint)[0]
            chosen[parameter.name] = [NO_ENTRY] if item is int else ["/nonexistent/a.mkv"]
        elif hint is int:
            chosen[parameter.name] = NO_ENTRY
        elif hint is bool:
            chosen[parameter.name] = False
        else:
            chosen[parameter.name] = f"/nonexistent/{parameter.name}.mkv"
    return chosen


async def outcome(call: Any, kwargs: dict[str, Any]) -> str:
    try:
        result = await call(**kwargs)
    except DraptoError as exc:
        return f"refused: {exc.one_line()}"
    return f"answered: {type(result).__name__}"


def test_the_declaration_lists_the_calls() -> None:
    assert {"add_paths", "add_file", "set_flag", "get_snapshot"} <= set(declared())


@pytest.mark.parametrize("name", declared())
def test_each_declared_call_is_in_the_engine_the_client_and_the_fake(name: str) -> None:
    expected = parameters(EngineAPI, name)
    for owner in (Engine, EngineClient, ReplayClient):
        assert hasattr(owner, name), f"{owner.__name__} has no {name}"
        assert parameters(owner, name) == expected, f"{owner.__name__}.{name}"
        assert inspect.iscoroutinefunction(getattr(owner, name)), f"{owner.__name__}.{name}"


async def test_the_fake_answers_or_refuses_each_declared_call() -> None:
    fake = ReplayClient()
    for name in declared():
        said = await outcome(getattr(fake, name), arguments(name))
        assert said.startswith(("answered", "refused: this is a recorded engine state")), said


@pytest.fixture
def short_dir() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="dra-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
async def engine(tmp_path: Path, ffmpeg: str) -> AsyncIterator[Engine]:
    engine = Engine(
        ffmpeg,
        config=Config(),
        state_dir=tmp_path / "state",
        config_path=tmp_path / "config" / "config.toml",
        workers=1,
    )
    await engine.start()
    try:
        yield engine
    finally:
        await engine.stop()
        engine.close()


async def test_the_server_answers_each_declared_call_as_the_engine_does(
    engine: Engine, short_dir: Path
) -> None:
    server = EngineServer(engine, short_dir / "engine.sock")
    await server.start()
    client = await EngineClient.connect(server.socket_path, client_name="declared")
    try:
        for name in declared():
            kwargs = arguments(name)
            remote = await outcome(getattr(client, name), kwargs)
            local = await outcome(getattr(engine, name), kwargs)
            assert "unknown method" not in remote and "a bug" not in remote, (name, remote)
            assert remote == local, name
    finally:
        await client.close()
        await server.close()
