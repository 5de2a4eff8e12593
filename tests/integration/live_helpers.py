"""A `drapto encode` running in the background, its JSON events read as they come."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from encode_helpers import DRAPTO, FAST

SEGMENTING = ["--min-segment", "0.5", "--max-segment", "1", "--workers", "1", "--preset", "10"]


class Live:
    """One `drapto encode` process; `wait_for` reads its events with a deadline."""

    def __init__(
        self,
        source: Path,
        output: Path,
        state: Path,
        *extra: str,
        env: dict[str, str] | None = None,
    ) -> None:
        self.events: list[dict[str, Any]] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.proc = subprocess.Popen(
            [*DRAPTO, "encode", str(source), "-o", str(output), *FAST, *SEGMENTING,
             "--state-dir", str(state), *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )  # fmt: skip
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def wait_for(
        self, test: Callable[[dict[str, Any]], bool], timeout: float = 120
    ) -> dict[str, Any]:
        """The first event (seen before or arriving within `timeout`) that passes `test`."""
        for event in self.events:
            if test(event):
                return event
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                raise AssertionError(f"drapto ended first: {self.finish(10)[1]}")
            if line.startswith("{"):
                event = json.loads(line)
                self.events.append(event)
                if test(event):
                    return event
        raise AssertionError(f"no such event within {timeout} s")

    def finish(self, timeout: float = 300) -> tuple[int, str]:
        """Wait for the process to end; its exit status and its stderr."""
        assert self.proc.stderr is not None
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=timeout)
        while True:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                break
            if line is not None and line.startswith("{"):
                self.events.append(json.loads(line))
        return code, self.proc.stderr.read()

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
        self.finish(30)


def done_segments(live: Live, count: int) -> list[int]:
    """Wait until `count` segments are done; their indices."""
    live.wait_for(lambda e: e["type"] == "segment_done" and len(live.of("segment_done")) >= count)
    return [e["index"] for e in live.of("segment_done")]


def wait_until(test: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not test():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def heartbeat_age(state: Path) -> float:
    """Seconds since the newest heartbeat of any held job in the state database."""
    with sqlite3.connect(state / "drapto.db") as db:
        beat = db.execute("SELECT MAX(lock_heartbeat) FROM jobs").fetchone()[0]
    return time.time() - beat if beat is not None else float("inf")


def stop_between_writes(live: Live, state: Path, tries: int = 50) -> None:
    """SIGSTOP the process at a moment it holds no transaction on the state database
    (stopped inside one, it would keep every other writer waiting)."""
    for _ in range(tries):
        live.proc.send_signal(signal.SIGSTOP)
        try:
            with contextlib.closing(sqlite3.connect(state / "drapto.db", timeout=0.2)) as db:
                db.execute("BEGIN IMMEDIATE")
                db.execute("ROLLBACK")
                busy = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            if not busy:
                return
        except sqlite3.OperationalError:
            pass
        live.proc.send_signal(signal.SIGCONT)
        time.sleep(0.05)
    raise AssertionError("the process never left the state database alone")
