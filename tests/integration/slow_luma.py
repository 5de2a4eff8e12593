"""The scene scan's child (luma.py) at a long film's pace: each batch's findings are
held back a moment before they are written, so the scan is still running when the first
segment is out (a short test file otherwise decodes in a tenth of a second)."""

from __future__ import annotations

import sys
import time
from typing import Any

from drapto_engine.services.segmentation import luma

HOLD_S = 0.25


class _Slow:
    def __init__(self, raw: Any) -> None:
        self.raw = raw

    def write(self, data: bytes) -> int:
        time.sleep(HOLD_S)
        return int(self.raw.write(data))

    def flush(self) -> None:
        self.raw.flush()


class _Stdout:
    buffer = _Slow(sys.stdout.buffer)

    def flush(self) -> None:  # at exit, as the interpreter flushes sys.stdout
        self.buffer.flush()


if __name__ == "__main__":
    sys.stdout = _Stdout()  # type: ignore[assignment]
    sys.exit(luma.main(sys.argv[1:]))
