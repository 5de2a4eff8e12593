"""`drapto ARGV` in a child forked from the test process: a real process (its own exit
status seen by the OS through waitpid, its own fds 0-2, cwd, environment, signal handlers
and logging), without paying the ~0.5 CPU-s of a fresh interpreter's imports each time.

For commands run to their end (a refused option, a probe, an encode); what needs the real
start-up (`python -m drapto_engine.cli`: its imports, --debug tracebacks, the console
script's argv, processes signalled or watched while they run) keeps running it as a
subprocess, and test_cli_errors compares the two on one case of every command.

Not from a test that runs a Dask scheduler or client in its own process (test_cluster.py):
the child would inherit that state without the threads that drive it.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import gc
import io
import logging
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path

from drapto_engine.cli.main import main


def warm_imports() -> None:
    """Import once, in the test process, what the commands import lazily (the cluster
    extra's Dask above all), so that no forked child pays for it."""
    import drapto_engine.cli.admin
    import drapto_engine.cli.batch
    import drapto_engine.cli.encode
    import drapto_engine.cli.probe
    import drapto_engine.cli.service

    try:
        import drapto_engine.cluster.certs
        import drapto_engine.cluster.worker  # noqa: F401
    except ImportError:
        pass  # without the cluster extra each child finds it missing, as `drapto` would


def run_forked(
    argv: Sequence[str], cwd: Path, env: Mapping[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`drapto ARGV` run in a forked child in `cwd` with the environment `env` (all of it,
    as subprocess.run's env=); its exit status, stdout and stderr.

    From an async test it blocks the test's event loop while the child runs (as a blocking
    subprocess.run would); the child starts with no running loop of its own."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            # what the test process left for its collector is not the child's to collect:
            # a collection there ran an inherited finalizer (PyAV 18.1.1) that waited on a
            # lock of a thread the child does not have, and hung it
            gc.freeze()
            _child(list(argv), cwd, dict(env), out.fileno(), err.fileno())
        try:
            status = _wait(pid, timeout)
        except subprocess.TimeoutExpired as exc:  # what the child's threads were doing
            err.seek(0)
            dump = err.read().decode("utf-8", "replace")
            print(f"forked drapto {list(argv)} timed out; its stderr:\n{dump}", file=sys.stderr)
            exc.stderr = dump
            raise
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(
            ["drapto", *argv],
            status,
            out.read().decode("utf-8", "replace"),
            err.read().decode("utf-8", "replace"),
        )


def _wait(pid: int, timeout: float) -> int:
    """The child's exit status; on a timeout (or pytest-timeout's alarm) it is killed and
    reaped first. The pid is only signalled while it is still ours: not yet reaped."""
    reaped = False
    try:
        pidfd = os.pidfd_open(pid)
        try:
            ready, _, _ = select.select([pidfd], [], [], timeout)
        finally:
            os.close(pidfd)
        if not ready:
            raise subprocess.TimeoutExpired(["drapto", f"(forked, pid {pid})"], timeout)
        _, wait_status = os.waitpid(pid, 0)
        reaped = True
        return os.waitstatus_to_exitcode(wait_status)
    finally:
        if not reaped:  # a zombie at worst: the pid is still this child's
            os.kill(pid, signal.SIGUSR1)  # its faulthandler writes every thread's stack
            with contextlib.suppress(ChildProcessError):
                for _ in range(20):
                    if os.waitpid(pid, os.WNOHANG) != (0, 0):
                        reaped = True
                        break
                    time.sleep(0.05)
            if not reaped:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)


def _child(argv: list[str], cwd: Path, env: dict[str, str], out: int, err: int) -> None:
    status = 1
    try:
        # what a fresh `python -m drapto_engine.cli` starts with: no Python-level signal
        # handler of the test process's (pytest-timeout's SIGALRM, an event loop's) and no
        # wakeup fd into a loop of the parent's; Python's own SIGINT; stdio on its own fds
        signal.set_wakeup_fd(-1)
        for signum in signal.valid_signals():
            if callable(signal.getsignal(signum)):
                signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        faulthandler.register(signal.SIGUSR1, file=err, all_threads=True, chain=False)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out, 1)
        os.dup2(err, 2)
        sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False))
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), line_buffering=False)
        sys.stderr = io.TextIOWrapper(
            io.FileIO(2, "w", closefd=False), errors="backslashreplace", line_buffering=True
        )
        asyncio.events._set_running_loop(None)  # forked from inside a loop: not ours to run
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
        sys.argv = ["drapto", *argv]
        status = main(argv)
    except SystemExit as exc:  # --help, --version; as the interpreter ends sys.exit()
        if exc.code is None or isinstance(exc.code, int):
            status = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
    except BaseException:  # escaped main(): the interpreter prints it and exits 1
        traceback.print_exc()
    finally:
        try:
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(status)
