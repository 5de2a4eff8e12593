"""The TUI's figures with a 10,000-entry queue and 2 encoders streaming progress.

Fills a fresh state store with 10,000 entries in final states (done, skipped, failed,
cancelled: a library that has been through drapto) behind one real 640x360 encode at
the head of the queue, starts `drapto serve --workers 2` on it, and runs the real
`drapto tui` in a pseudo-terminal (120x40, TERM=xterm-256color), reading what it
writes as a terminal would. Measures:

- start-up: launch to the queue's rows on screen;
- key presses: a key written to the terminal until the frame answering it arrives
  (cursor down: the row it lands on is redrawn; End: the last entry appears);
- CPU while watching the 2 encoders for --watch seconds without input (percent of
  one core, the TUI process only) and its resident memory;
- the encode's job screen: Enter until its segment grid is drawn, and CPU while
  watching the grid for half as long.

Usage:

    .venv/bin/python bench/tui_figures.py [--entries 10000] [--watch 10] [--profile out.prof]

With --profile the TUI runs under cProfile and writes its stats there on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import os
import pty
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path

import psutil

from drapto_engine.core.jobs import EntryStatus, JobOptions, QueueEntry
from drapto_engine.infrastructure import paths
from drapto_engine.infrastructure.ffmpeg.toolchain import find_toolchain
from drapto_engine.infrastructure.queue_store import QueueStore
from drapto_engine.infrastructure.store import StateStore
from drapto_engine.server.client import EngineClient

MIB = 1 << 20
SIZE = (120, 40)
FINAL = (EntryStatus.DONE,) * 7 + (EntryStatus.SKIPPED, EntryStatus.FAILED, EntryStatus.CANCELLED)


def episode(number: int) -> str:
    return f"episode-{number:05d}.mkv"


def fill(state: Path, source: Path, entries: int) -> None:
    store = StateStore(paths.state_db(state))
    QueueStore(store).add(
        QueueEntry(
            id=0,
            input=str(source),
            output=str(source.with_suffix(".av1.mkv")),
            position=0,
            options=JobOptions(preset=8, min_segment_s=2, max_segment_s=4),
        )
    )
    rows = []
    for number in range(entries):
        name = f"/library/show-{number // 100:03d}/{episode(number)}"
        status = FINAL[number % len(FINAL)]
        entry = QueueEntry(
            id=number + 2,
            input=name,
            output=name.replace(".mkv", ".av1.mkv"),
            position=number + 1,
            status=status,
            error="no such file" if status is EntryStatus.FAILED else None,
        )
        rows.append((entry.id, entry.position, entry.model_dump_json()))
    # One transaction (QueueStore.add commits each entry: minutes for 10,000).
    with store._lock:
        store._db.execute("BEGIN")
        store._db.executemany("INSERT INTO queue (id, position, entry) VALUES (?, ?, ?)", rows)
        store._db.execute("COMMIT")
    store.close()


class Terminal:
    """A pseudo-terminal running one command; everything it writes is kept with the
    time it arrived."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", SIZE[1], SIZE[0], 0, 0))
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True
        )
        os.close(slave)
        self.output = bytearray()
        self.arrivals: list[tuple[int, float]] = []
        """(end offset in output, perf_counter) of each read."""
        self.changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 1 << 16)
            except OSError:
                data = b""
            with self.changed:
                if data:
                    self.output += data
                    self.arrivals.append((len(self.output), time.perf_counter()))
                self.changed.notify_all()
            if not data:
                return

    def write(self, data: bytes) -> tuple[int, float]:
        """Send keys; returns the output offset and the time they were sent."""
        with self.changed:
            offset = len(self.output)
        sent = time.perf_counter()
        os.write(self.master, data)
        return offset, sent

    def wait_for(self, text: str, since: int = 0, timeout: float = 30) -> float:
        """The time the first output after `since` containing `text` arrived."""
        needle = text.encode()
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                found = self.output.find(needle, since)
                if found >= 0:
                    end = found + len(needle)
                    return next(t for offset, t in self.arrivals if offset >= end)
                left = deadline - time.monotonic()
                if left <= 0 or self.process.poll() is not None:
                    tail = self.output[-2000:].decode(errors="replace")
                    raise TimeoutError(f"{text!r} never appeared; last output:\n{tail}")
                self.changed.wait(left)


def cpu_share(process: psutil.Process, seconds: float) -> float:
    """Percent of one core the process used over the next `seconds`."""
    cpu0, t0 = process.cpu_times(), time.perf_counter()
    time.sleep(seconds)
    cpu1, t1 = process.cpu_times(), time.perf_counter()
    busy = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
    return 100 * busy / (t1 - t0)


async def running_encoders(socket: Path) -> int:
    client = await EngineClient.connect(socket, client_name="bench-probe")
    try:
        snapshot = await client.get_snapshot()
    finally:
        await client.close()
    return sum(s.state == "running" for j in snapshot.jobs.values() for s in j.segments.values())


def measure(root: Path, socket: Path, entries: int, watch: float, profile: Path | None) -> None:
    config = root / "config.toml"
    config.write_text(f'socket_path = "{socket}"\n')
    env = os.environ | {"TERM": "xterm-256color", "COLUMNS": str(SIZE[0]), "LINES": str(SIZE[1])}
    for var in ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_RUNTIME_DIR"):
        folder = root / var.lower()
        folder.mkdir(mode=0o700, exist_ok=True)
        env[var] = str(folder)
    python = [sys.executable, *(["-m", "cProfile", "-o", str(profile)] if profile else [])]
    term = Terminal([*python, "-m", "drapto_engine.cli", "--config", str(config), "tui"], env)
    try:
        run_figures(term, socket, entries, watch)
    finally:
        if term.process.poll() is None:  # a failed run must not leave the TUI behind
            term.process.kill()
            term.process.wait(timeout=10)


def run_figures(term: Terminal, socket: Path, entries: int, watch: float) -> None:
    tui = psutil.Process(term.process.pid)

    startup = term.wait_for(episode(20)) - term.started  # a screenful of rows
    deadline = time.monotonic() + 60
    while asyncio.run(running_encoders(socket)) < 2:
        assert time.monotonic() < deadline, "the encoders never started"
        time.sleep(0.2)

    down = []
    for row in range(1, 31):
        offset, sent = term.write(b"\x1b[B")  # cursor down: row `row` is redrawn selected
        down.append(term.wait_for(episode(row - 1), offset) - sent)
        time.sleep(0.05)  # a person's typing pace, so that presses do not pile up
    offset, sent = term.write(b"\x1b[F")  # End: the last entry comes into view
    end_key = term.wait_for(episode(entries - 1), offset) - sent
    time.sleep(0.2)
    offset, sent = term.write(b"\x1b[H")  # Home: back to the encode
    home_key = term.wait_for("film.mkv", offset) - sent

    time.sleep(1.0)
    busy = cpu_share(tui, watch)
    memory = tui.memory_info()
    still_running = asyncio.run(running_encoders(socket))

    offset, sent = term.write(b"\r")  # the encode's job screen: its live segment grid
    detail_key = term.wait_for("segments:", offset) - sent
    time.sleep(1.0)
    detail_busy = cpu_share(tui, watch / 2)
    offset, _ = term.write(b"\x1b")  # back to the queue
    term.wait_for("Progress", offset)

    offset, _ = term.write(b"q")
    term.wait_for("Leave running", offset)
    term.write(b"\r")
    term.process.wait(timeout=20)

    print(f"queue: {entries} entries in final states + 1 real encode, 2 encoders")
    print(f"start-up to the queue's rows on screen: {startup:.2f} s")
    print(
        f"cursor down, key to frame: median {statistics.median(down) * 1000:.1f} ms, "
        f"90th percentile {sorted(down)[int(len(down) * 0.9)] * 1000:.1f} ms, "
        f"max {max(down) * 1000:.1f} ms ({len(down)} presses)"
    )
    print(f"End (to entry {entries}): {end_key * 1000:.1f} ms; Home: {home_key * 1000:.1f} ms")
    print(
        f"CPU while watching {watch:.0f} s: {busy:.1f}% of one core "
        f"({still_running} encoders running at the end)"
    )
    print(
        f"job screen: opened in {detail_key * 1000:.1f} ms; watching its segment grid "
        f"{watch / 2:.0f} s: {detail_busy:.1f}% of one core"
    )
    print(f"resident memory: {memory.rss / MIB:.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--watch", type=float, default=10.0)
    parser.add_argument("--profile", type=Path, help="run the TUI under cProfile, stats here")
    args = parser.parse_args()
    ffmpeg = find_toolchain().ffmpeg
    with tempfile.TemporaryDirectory(prefix="drapto-tui-bench-") as folder:
        root = Path(folder)
        source = root / "film.mkv"
        subprocess.run(
            [ffmpeg, "-v", "error", "-f", "lavfi", "-i",
             "testsrc2=size=640x360:rate=25:duration=120", "-c:v", "libx264", "-g", "50",
             str(source)],
            check=True,
        )  # fmt: skip
        state, socket = root / "state", root / "engine.sock"
        fill(state, source, args.entries)
        server = subprocess.Popen(
            [sys.executable, "-m", "drapto_engine.cli", "serve", "--socket", str(socket),
             "--state-dir", str(state), "--workers", "2"],
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            while not socket.exists():
                time.sleep(0.05)
            profile = args.profile.absolute() if args.profile else None
            measure(root, socket, args.entries, args.watch, profile)
        finally:
            if server.poll() is None:
                os.kill(server.pid, signal.SIGTERM)
            server.wait(timeout=20)


if __name__ == "__main__":
    main()
