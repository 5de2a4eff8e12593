"""A real engine service per test (see tui_service.py)."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tui_service import Service, start_service

StartService = Callable[[str], Service]


@pytest.fixture
def start_engine(tmp_path: Path) -> Iterator[StartService]:
    """start_engine(config_text) runs a service with those config settings; it is
    stopped after the test."""
    started: list[Service] = []

    def start(config_text: str = "") -> Service:
        service = start_service(tmp_path / f"engine-{len(started)}", config_text)
        started.append(service)
        return service

    yield start
    for running in started:
        if running.alive():
            os.kill(running.process.pid, signal.SIGTERM)
            running.process.wait(timeout=10)


@pytest.fixture
def service(start_engine: StartService) -> Service:
    return start_engine("")
