"""The real `drapto tui` in tmux: keys typed with send-keys, the screen read with
capture-pane, the TUI closed by its quit dialog and by a hang-up (kill-session sends
SIGHUP), the engine running on after both."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tui_service import Service

from drapto_engine.server.client import EngineClient

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]


_TITLE = r"film\.mkv: \d+ segments?: "
"""The job's line above its segment strip."""


class Tmux:
    def __init__(self, name: str) -> None:
        self.name = name

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["tmux", "-L", self.name, *args], capture_output=True, text=True, check=False
        )

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", self.name).stdout

    def wait_for(self, *texts: str, timeout: float = 30) -> str:
        """The screen once it shows every text (a frame may arrive in parts)."""
        return self.wait_until(lambda screen: all(text in screen for text in texts), timeout)

    def wait_until(self, ready: Callable[[str], bool], timeout: float = 30) -> str:
        """The screen once `ready` says it is complete."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if ready(screen):
                return screen
            assert time.monotonic() < deadline, f"never complete; screen:\n{screen}"
            time.sleep(0.1)

    def alive(self) -> bool:
        return self.run("has-session", "-t", self.name).returncode == 0

    def keys(self, *keys: str) -> None:
        self.run("send-keys", "-t", self.name, *keys)


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    session = Tmux(f"drapto-test-{os.getpid()}-{tmp_path.name[-12:]}")
    yield session
    session.run("kill-server")


def start_tui(
    tmux: Tmux,
    config: Path,
    term: str,
    env: dict[str, str],
    *paths: Path,
    size: tuple[int, int] = (100, 30),
) -> None:
    """tmux runs the command through a shell: every part of it is quoted. COLUMNS and
    LINES (which Textual prefers to the terminal's size, and a test runner may set) are
    the window's."""
    width, height = size
    env = env | {"COLUMNS": str(width), "LINES": str(height)}
    settings = [f"{k}={v}" for k, v in env.items()]
    argv = ["env", f"TERM={term}", *settings, sys.executable, "-m", "drapto_engine.cli"]
    argv += ["--config", str(config), "tui", *map(str, paths)]
    command = " ".join(shlex.quote(part) for part in argv)
    tmux.run("new-session", "-d", "-s", tmux.name, "-x", str(width), "-y", str(height), command)


def user_env(tmp_path: Path) -> dict[str, str]:
    names = ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_RUNTIME_DIR")
    return {name: os.environ[name] for name in names} | {"PYTHONPATH": os.getcwd()}


@pytest.mark.parametrize("term", ["xterm-256color", "screen"])
def test_keys_in_tmux_drive_the_tui_and_quitting_leaves_the_engine(
    tmp_path: Path, service: Service, tmux: Tmux, term: str
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'socket_path = "{service.socket}"\n')
    start_tui(tmux, config, term, user_env(tmp_path))
    tmux.wait_for("Progress", "Queue", "Resources", "q Quit", "workers", "CPU ", "RAM ")
    tmux.keys("3")
    tmux.wait_for("scene_segmentation")
    tmux.keys("2")
    tmux.wait_for("memory reserve")
    tmux.keys("q")
    tmux.wait_for("Leave running")
    tmux.keys("Enter")
    deadline = time.monotonic() + 15
    while tmux.alive():  # the session ends with the TUI
        assert time.monotonic() < deadline, tmux.screen()
        time.sleep(0.1)
    assert service.alive()


@pytest.mark.xdist_group("timing")  # timed (10 s): one at a time with the other timed tests
def test_the_first_screen_at_80x24_shows_cpu_ram_and_the_segments_within_10_s(
    tmp_path: Path, service: Service, tmux: Tmux, make_media: object
) -> None:
    film = make_media("film.mkv", size=(160, 90), duration=6, gop=25)  # type: ignore[operator]
    config = tmp_path / "config.toml"
    config.write_text(f'socket_path = "{service.socket}"\n')
    start = time.monotonic()
    start_tui(tmux, config, "xterm-256color", user_env(tmp_path), film, size=(80, 24))

    def first_screen(screen: str) -> bool:
        """The resource strip, and the job's title with its segment strip (or grid)
        under it; a frame may arrive in parts, the title before the strip."""
        lines = screen.splitlines()
        title = next((i for i, line in enumerate(lines) if re.search(_TITLE, line)), None)
        return (
            title is not None
            and title + 1 < len(lines)
            and any(mark in lines[title + 1] for mark in "█▶·✓#")
            and any(line.lstrip().startswith("CPU ") for line in lines)
        )

    screen = tmux.wait_until(first_screen, timeout=10)
    assert time.monotonic() - start < 10
    lines = screen.splitlines()
    assert len(lines) <= 24 and all(len(line) <= 80 for line in lines)
    strip = next(line for line in lines if line.lstrip().startswith("CPU "))
    assert "RAM " in strip and "encoders" in strip
    tmux.keys("q")
    tmux.wait_for("Leave running")
    tmux.keys("Enter")
    deadline = time.monotonic() + 15
    while tmux.alive():
        assert time.monotonic() < deadline, tmux.screen()
        time.sleep(0.1)


def test_a_hang_up_closes_the_tui_and_the_engine_it_started_runs_on(
    tmp_path: Path, tmux: Tmux
) -> None:
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    socket = runtime / "engine.sock"
    config = tmp_path / "config.toml"
    config.write_text(f'socket_path = "{socket}"\n')
    start_tui(tmux, config, "screen", user_env(tmp_path))
    tmux.wait_for("Progress")  # the TUI started an engine in the background and attached
    assert socket.exists()
    tmux.run("kill-session", "-t", tmux.name)  # SIGHUP to the pane's process group

    async def engine_answers() -> int:
        client = await EngineClient.connect(socket, client_name="after-hangup")
        pid = int(client.server.pid)
        await client.shutdown()
        await client.close()
        return pid

    pid = asyncio.run(engine_answers())
    assert pid != os.getpid()
    deadline = time.monotonic() + 10
    while socket.exists():  # shut down by us, not by the hang-up
        assert time.monotonic() < deadline
        time.sleep(0.05)
