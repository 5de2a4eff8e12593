"""`drapto serve`: the engine and its server in the foreground until a signal or a
client's shutdown request.

Order matters at both ends. Starting: claim the socket and the state folder before
the Engine opens the store (opening it puts entries a running engine has in progress
back in the queue), then listen. Stopping: stop accepting, stop the engine (running
jobs go back to the queue and resume next start), flush each client, remove the
socket; all bounded so that a stop takes under 5 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from drapto_engine.config import Config
from drapto_engine.engine import Engine
from drapto_engine.infrastructure import paths
from drapto_engine.infrastructure.ffmpeg.toolchain import find_toolchain
from drapto_engine.server.location import Claim, claim_socket
from drapto_engine.server.server import EngineServer

if TYPE_CHECKING:
    from drapto_engine.cluster.host import ClusterOptions

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 3.5
"""The engine's share of the 5 s a stop may take; the rest is flushing and exit."""
SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


async def serve(
    config: Config,
    *,
    socket_path: Path,
    state_dir: Path | None,
    config_path: Path | None,
    workers: int | None = None,
    cluster: ClusterOptions | None = None,
) -> int:
    """Run until stopped; 0 after a clean stop, 1 if the engine failed."""
    state = state_dir or paths.state_dir()
    with contextlib.ExitStack() as claims:
        claims.callback(claim_socket(socket_path).release)
        state.mkdir(parents=True, exist_ok=True)
        claims.callback(Claim(paths.engine_lock(state), f"the state folder {state}").release)
        engine = Engine(
            find_toolchain(config.ffmpeg_path).ffmpeg,
            config=config,
            state_dir=state,
            config_path=config_path,
            workers=workers,
            cluster=cluster,
            owns_queue=True,
            library=True,
        )
        if engine.store.recovered is not None:  # the damaged state file was replaced
            print(
                f"drapto: warning: {engine.store.recovered.message(engine.store.path)}",
                file=sys.stderr,
            )
        try:
            return await _run(engine, EngineServer(engine, socket_path))
        finally:
            engine.close()


async def _run(engine: Engine, server: EngineServer) -> int:
    stop = server.shutdown_requested
    loop = asyncio.get_running_loop()
    for signum in SIGNALS:
        loop.add_signal_handler(signum, _on_signal, signum, stop)
    runner: asyncio.Task[None] | None = None
    try:
        await engine.start()
        await server.start()
        runner = asyncio.create_task(engine.run(), name="engine-run")
        print(
            f"drapto: engine serving on {server.socket_path} (pid {os.getpid()})", file=sys.stderr
        )
        if engine.cluster is not None:
            print(f"drapto: cluster scheduler on {engine.cluster.address}", file=sys.stderr)
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({runner, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
    finally:
        await _wind_down(engine, server, runner)
        for signum in SIGNALS:
            loop.remove_signal_handler(signum)
    print("drapto: engine stopped", file=sys.stderr)
    return _outcome(runner)


def _on_signal(signum: int, stop: asyncio.Event) -> None:
    log.info("stopping on %s", signal.Signals(signum).name)
    stop.set()


async def _wind_down(
    engine: Engine, server: EngineServer, runner: asyncio.Task[None] | None
) -> None:
    server.stop_listening()
    try:
        async with asyncio.timeout(STOP_TIMEOUT_S):
            await engine.stop()
            if runner is not None:
                await asyncio.wait({runner})
    except TimeoutError:
        log.warning("the engine did not stop within %g s; exiting anyway", STOP_TIMEOUT_S)
        if runner is not None:
            runner.cancel()
    await server.close()


def _outcome(runner: asyncio.Task[None] | None) -> int:
    if runner is None or not runner.done() or runner.cancelled():
        return 0
    error = runner.exception()
    if error is None:
        return 0
    log.error("the engine failed", exc_info=error)
    print(f"drapto: the engine failed: {error!r} (see the log)", file=sys.stderr)
    return 1
