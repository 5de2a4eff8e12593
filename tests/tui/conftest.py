"""A real engine service per test (see tui_service.py)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from tui_service import Service, start_service


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    running = start_service(tmp_path)
    yield running
    if running.alive():
        os.kill(running.process.pid, signal.SIGTERM)
        running.process.wait(timeout=10)
