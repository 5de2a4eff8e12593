"""Event subscribers that print: a live TTY display, plain lines for logs, JSON lines for scripts."""

from __future__ import annotations

import time
from typing import Protocol, TextIO

from drapto_engine.core.events import (
    AnalysisReady,
    AudioDone,
    Event,
    JobFailed,
    JobFinished,
    SegmentDone,
    SegmentFailed,
    SegmentPlanned,
    SegmentProgress,
    SegmentsPlanned,
    StageChanged,
    Warning,
)

LIVE_INTERVAL_S = 0.25


class Printer(Protocol):
    def handle(self, event: Event) -> None: ...

    def close(self) -> None: ...


class JsonPrinter:
    """One JSON object per event per line."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def handle(self, event: Event) -> None:
        self.out.write(event.model_dump_json() + "\n")
        self.out.flush()

    def close(self) -> None:
        self.out.flush()


def summary_lines(event: JobFinished) -> list[str]:
    s = event.summary
    return [
        f"done: {s.output}",
        f"  {s.input_bytes / 1e6:.1f} MB -> {s.output_bytes / 1e6:.1f} MB "
        f"({_change(s.reduction_percent)}), {s.wall_s:.1f} s, "
        f"{s.encode_fps:.1f} fps over {s.frames} frames in {s.segments} segments",
    ]


class PlainPrinter:
    """A readable line for each event worth a line; no cursor codes (cron, systemd, pipes)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.segments = 0
        self.done = 0

    def line(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def handle(self, event: Event) -> None:
        text = self.describe(event)
        if text:
            self.line(text)

    def describe(self, event: Event) -> str | None:
        match event:
            case StageChanged(stage=stage):
                return f"[{event.job}] {stage}"
            case AnalysisReady():
                crop = event.crop or "no crop"
                dv = f" profile {event.dolby_vision_profile}" if event.dolby_vision_profile else ""
                return (
                    f"[{event.job}] {event.dynamic_range}{dv}, {event.width}x{event.height}, "
                    f"{event.frames} frames, {crop}, crf {event.crf}, {event.encoder}"
                )
            case SegmentPlanned():
                self.segments += 1
                return None
            case SegmentsPlanned(count=count):
                self.segments = count
                return f"[{event.job}] {count} segments planned"
            case SegmentDone():
                self.done += 1
                return (
                    f"[{event.job}] segment {event.index} done ({self.done}/{self.segments}): "
                    f"{event.frames} frames, {event.fps:.1f} fps, {event.size_bytes / 1e3:.0f} kB"
                )
            case SegmentFailed():
                retry = ", retrying" if event.will_retry else ""
                return f"[{event.job}] segment {event.index} failed (attempt {event.attempt}{retry}): {event.error}"
            case AudioDone():
                return f"[{event.job}] audio #{event.stream}: opus {event.channels} ch {event.bitrate_kbps}k"
            case Warning(message=message):
                return f"[{event.job}] warning: {message}"
            case JobFinished():
                return "\n".join(summary_lines(event))
            case JobFailed():
                return f"[{event.job}] failed while {event.stage}: {event.error}"
        return None

    def close(self) -> None:
        self.out.flush()


class LivePrinter(PlainPrinter):
    """Plain lines for milestones plus one status line rewritten in place."""

    def __init__(self, out: TextIO) -> None:
        super().__init__(out)
        self.running: dict[int, SegmentProgress] = {}
        self.last_draw = 0.0
        self.status = ""

    def line(self, text: str) -> None:
        self._clear()
        super().line(text)
        self._draw(force=True)

    def handle(self, event: Event) -> None:
        if isinstance(event, SegmentProgress):
            self.running[event.index] = event
            self._draw()
            return
        if isinstance(event, SegmentDone | SegmentFailed):
            self.running.pop(event.index, None)
        super().handle(event)

    def _clear(self) -> None:
        if self.status:
            self.out.write("\r\x1b[2K")
            self.status = ""

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last_draw < LIVE_INTERVAL_S:
            return
        self.last_draw = now
        if not self.running:
            return
        parts = [
            f"#{p.index} {p.percent:3.0f}% {p.fps:4.1f}fps"
            for p in sorted(self.running.values(), key=lambda p: p.index)
        ]
        self.status = f"{self.done}/{self.segments} done | " + " | ".join(parts)
        self.out.write("\r\x1b[2K" + self.status)
        self.out.flush()

    def close(self) -> None:
        self._clear()
        super().close()


def make_printer(kind: str | None, out: TextIO) -> Printer:
    if kind == "json":
        return JsonPrinter(out)
    if kind is None and out.isatty():
        return LivePrinter(out)
    return PlainPrinter(out)


def _change(reduction_percent: float) -> str:
    if reduction_percent >= 0:
        return f"{reduction_percent:.1f}% smaller"
    return f"{-reduction_percent:.1f}% larger"
