"""Event subscribers that print: a live TTY display, plain lines for logs, JSON lines for scripts."""

from __future__ import annotations

import time
from typing import Protocol, TextIO

from drapto_engine.core.events import (
    Alert,
    AnalysisReady,
    AudioDone,
    Discrepancy,
    EntryChanged,
    Event,
    FlagChanged,
    JobFailed,
    JobFinished,
    RolledBack,
    SegmentDone,
    SegmentFailed,
    SegmentPlanned,
    SegmentProgress,
    SegmentsPlanned,
    StageChanged,
    WarningEvent,
)
from drapto_engine.core.metrics import JobMetrics, QualitySummary, counted, size_change
from drapto_engine.core.text import model_json

LIVE_INTERVAL_S = 0.25


class Printer(Protocol):
    def handle(self, event: Event) -> None: ...

    def close(self) -> None: ...


class JsonPrinter:
    """One JSON object per event per line."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def handle(self, event: Event) -> None:
        self.out.write(model_json(event) + "\n")
        self.out.flush()

    def close(self) -> None:
        self.out.flush()


def summary_lines(event: JobFinished) -> list[str]:
    s = event.summary
    m = s.metrics
    kept = m.resumed_segments if m is not None else 0
    encoded = sum(seg.frames for seg in m.segments) if m is not None else 0
    if kept and not encoded:
        rate = f"nothing left to encode: all {counted(s.segments, 'segment')} kept from the interrupted run"
    elif kept:
        rate = (
            f"{s.encode_fps:.1f} fps over the {encoded} of {s.frames} frames encoded in this run; "
            f"{counted(s.segments, 'segment')}, {kept} kept from the interrupted run"
        )
    else:
        rate = (
            f"{s.encode_fps:.1f} fps over {counted(s.frames, 'frame')} "
            f"in {counted(s.segments, 'segment')}"
        )
    lines = [
        f"done: {s.output}",
        f"  {s.input_bytes / 1e6:.1f} MB -> {s.output_bytes / 1e6:.1f} MB "
        f"({size_change(s.reduction_percent)}), {s.wall_s:.1f} s, {rate}",
    ]
    if s.not_kept:
        lines.append(f"  not kept: {', '.join(s.not_kept)} (drapto encodes one video stream)")
    if s.grew:
        lines.append(
            "  the output is larger than the source: nothing was saved (the source is "
            "compressed harder than this CRF; a higher --crf makes a smaller file)"
        )
    if s.quality is not None:
        lines += quality_lines(s.quality)
    if m is not None and m.encoded_segments:
        alerts = ", ".join(f"{n} {kind}" for kind, n in sorted(m.alerts.items())) or "no alerts"
        lines.append(
            f"  segments: median {m.median_fps:.1f} fps ({m.median_speed:.2f}x real time), "
            f"{_encoder_figures(m)}, mean queue wait {m.mean_queue_wait_s:.1f} s, {alerts}"
        )
    return lines


QUALITY_PER_LINE = 6
"""Segments a line of the summary's CRF and score list holds."""


def quality_lines(q: QualitySummary) -> list[str]:
    """A target-quality job's spread, then each segment's CRF and VMAF (`#3 crf31 93.2`;
    a segment off its target is marked: `missed`, `bound`, `fallback`, `short`)."""
    spread = (
        f"VMAF {q.vmaf_min:.2f} / {q.vmaf_mean:.2f} / {q.vmaf_max:.2f} (min / mean / max)"
        if q.vmaf_min is not None and q.vmaf_mean is not None and q.vmaf_max is not None
        else "VMAF not measured"
    )
    crfs = f"CRF {q.crf_min}-{q.crf_max}" if q.crf_min is not None else "CRF -"
    lines = [
        f"  target VMAF {q.target_vmaf:g}: {q.in_band} of {counted(len(q.segments), 'segment')}"
        f" in the band, {spread}, {crfs}"
    ]
    cells = []
    for seg in q.segments:
        score = f"{seg.vmaf:.1f}" if seg.vmaf is not None else "-"
        mark = f" {seg.target}" if seg.target not in (None, "met") else ""
        cells.append(f"#{seg.index} crf{seg.crf if seg.crf is not None else '-'} {score}{mark}")
    for start in range(0, len(cells), QUALITY_PER_LINE):
        lines.append("    " + ", ".join(cells[start : start + QUALITY_PER_LINE]))
    return lines


def _encoder_figures(m: JobMetrics) -> str:
    """Memory and CPU of the encoders sampled here; a cluster worker's are not sampled."""
    here = m.encoded_segments - m.remote_segments
    if here <= 0:
        return "encoder memory and CPU not measured on cluster workers"
    figures = f"peak encoder {m.peak_rss_bytes / 2**20:.0f} MiB, mean CPU {m.mean_cpu_percent:.0f}%"
    if not m.remote_segments:
        return figures
    return (
        f"{figures} over the {counted(here, 'segment')} encoded here "
        f"({m.remote_segments} on cluster workers, not measured there)"
    )


class PlainPrinter:
    """A readable line for each event worth a line; no cursor codes (cron, systemd, pipes).

    With `every_percent`, segment completions are reported only when a job's share of
    finished segments crosses the next step (a batch of films would otherwise print
    hundreds of lines each)."""

    def __init__(self, out: TextIO, every_percent: float | None = None) -> None:
        self.out = out
        self.every_percent = every_percent
        self.planned: dict[str, int] = {}
        self.finished: dict[str, int] = {}
        self.reported: dict[str, float] = {}
        self.kept: dict[str, int] = {}
        """Segments of each job that an interrupted run finished and this one kept."""
        self.whole: set[str] = set()
        """Jobs whose plan is whole (SegmentsPlanned): before it, a count of segments done
        has no total yet (segments are encoded while the scan plans the rest)."""

    @property
    def segments(self) -> int:
        return sum(self.planned.values())

    @property
    def done(self) -> int:
        return sum(self.finished.values())

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
                kept = self.kept.pop(event.job, 0) if stage == "muxing" else 0
                if kept:
                    return (
                        f"[{event.job}] {counted(kept, 'segment')} kept from the interrupted run\n"
                        f"[{event.job}] {stage}"
                    )
                return f"[{event.job}] {stage}"
            case AnalysisReady():
                crop = event.crop or "no crop"
                dv = f" profile {event.dolby_vision_profile}" if event.dolby_vision_profile else ""
                deinterlace = f", {event.deinterlace}" if event.deinterlace else ""
                rate = f"crf {event.crf}"
                if event.target_vmaf is not None and event.crf_range is not None:
                    low, high = event.crf_range
                    rate = f"target VMAF {event.target_vmaf:g} (crf {low}-{high})"
                return (
                    f"[{event.job}] {event.dynamic_range}{dv}, {event.width}x{event.height}, "
                    f"{event.frames} frames, {crop}, {rate}, {event.encoder}{deinterlace}"
                )
            case SegmentPlanned():
                self.planned[event.job] = self.planned.get(event.job, 0) + 1
                return None
            case SegmentsPlanned(count=count):
                self.planned[event.job] = count
                self.whole.add(event.job)
                text = f"[{event.job}] {counted(count, 'segment')} planned"
                share = self._share(event.job) if self.every_percent is not None else None
                return f"{text}\n{share}" if share else text
            case SegmentDone():
                return self._segment_done(event)
            case SegmentFailed():
                retry = ", retrying" if event.will_retry else ""
                return f"[{event.job}] segment {event.index} failed (attempt {event.attempt}{retry}): {event.error}"
            case AudioDone():
                return f"[{event.job}] audio #{event.stream}: opus {event.channels} ch {event.bitrate_kbps}k"
            case WarningEvent(message=message):
                return f"[{event.job or 'engine'}] warning: {message}"
            case JobFinished():
                return "\n".join(summary_lines(event))
            case JobFailed():
                return f"[{event.job}] failed while {event.stage}: {event.error}"
            case Alert():
                return f"[{event.job or 'engine'}] alert ({event.kind}): {event.message}"
            case RolledBack():
                return (
                    f"[{event.job}] rollback: {event.stage} failed ({event.error}); "
                    f"retrying with {event.flag} off"
                )
            case Discrepancy():
                return (
                    f"[{event.job}] shadow {event.flag}: {event.metric:.1%} differ "
                    f"(used: {event.used}; shadow: {event.shadow})"
                )
            case FlagChanged():
                why = f": {event.reason}" if event.reason else ""
                return (
                    f"flag {event.flag.name}: {event.previous.value} -> {event.flag.state.value}"
                    f" ({event.flag.source.value}{why})"
                )
            case EntryChanged():
                return self._entry(event)
        return None

    def _segment_done(self, event: SegmentDone) -> str | None:
        job = event.job
        self.finished[job] = self.finished.get(job, 0) + 1
        if event.resumed:  # counted; said once, when encoding is over (see describe)
            self.kept[job] = self.kept.get(job, 0) + 1
            return None
        if self.every_percent is not None:
            return self._share(job)
        done, total = self.finished[job], self.planned.get(job, 0)
        share = f"{done}/{total}" if job in self.whole else f"{done} done, more being planned"
        return (
            f"[{job}] segment {event.index} done ({share}): "
            f"{event.frames} frames, {event.fps:.1f} fps, {event.size_bytes / 1e3:.0f} kB"
        )

    def _share(self, job: str) -> str | None:
        """`[job] 3/10 segments done (30%)` when the share crosses the next step; nothing
        while the plan is not whole (its total is not known yet)."""
        assert self.every_percent is not None
        done, total = self.finished.get(job, 0), self.planned.get(job, 0)
        if job not in self.whole or not total or not done:
            return None
        percent = 100.0 * done / total
        step = self.reported.get(job, 0.0) + self.every_percent
        if percent < step and done < total:
            return None
        self.reported[job] = percent - percent % self.every_percent
        return f"[{job}] {done}/{total} segments done ({percent:.0f}%)"

    @staticmethod
    def _entry(event: EntryChanged) -> str | None:
        e = event.entry
        if e.status.value == "running" and e.stage is None and e.job is None:
            return f"start: {e.input} -> {e.output}"
        if e.status.value == "skipped":
            return f"skipped: {e.input} ({e.note})"
        if e.status.value == "cancelled":
            return f"cancelled: {e.input}"
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


def make_printer(kind: str | None, out: TextIO, every_percent: float | None = None) -> Printer:
    if kind == "json":
        return JsonPrinter(out)
    if kind is None and out.isatty():
        return LivePrinter(out)
    return PlainPrinter(out, every_percent)
