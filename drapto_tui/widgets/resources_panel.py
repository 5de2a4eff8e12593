"""System CPU and RAM over the last minutes, the reserve, the worker bound, each encoder."""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Label, Static

from drapto_engine.core.api import EngineSnapshot
from drapto_tui import presentation

GIB = 1 << 30
BLOCKS = " ▁▂▃▄▅▆▇█"
NAME_WIDTH = 40


def _short(name: str) -> str:
    return name if len(name) <= NAME_WIDTH else name[: NAME_WIDTH - 1] + "…"


def sparkline(values: list[float], width: int) -> str:
    """The last `width` values (percentages) as block characters on a fixed 0-100 scale,
    so that 2% looks like 2% (a self-scaling sparkline would blow noise up)."""
    shown = values[-width:] if width > 0 else []
    return "".join(_block(v) for v in shown)


def _block(value: float) -> str:
    """Anything above zero shows (as the lowest block at least)."""
    level = round(max(0.0, min(100.0, value)) / 100 * (len(BLOCKS) - 1))
    return BLOCKS[max(level, 1 if value > 0 else 0)]


def worker_memory(total: int, available: int) -> str:
    if total <= 0:
        return "-"
    return f"{(total - available) / GIB:.1f} of {total / GIB:.1f} GiB"


class ResourcesPanel(VerticalScroll):
    def compose(self) -> ComposeResult:
        yield Label("CPU", id="cpu-label")
        yield Static(id="cpu", classes="spark")
        yield Label("RAM", id="ram-label")
        yield Static(id="ram", classes="spark")
        yield Static(id="limits")
        yield DataTable[str](id="encoders", cursor_type="none")
        cluster = Static(id="cluster")
        workers = DataTable[str](id="cluster-workers", cursor_type="none")
        cluster.display = workers.display = False  # shown while the engine hosts a cluster
        yield cluster
        yield workers

    def on_mount(self) -> None:
        table = self.query_one("#encoders", DataTable)
        for key, label in (
            ("pid", "PID"),
            ("job", "File"),
            ("segment", "Seg"),
            ("cpu", "CPU %"),
            ("rss", "RSS"),
            ("state", "State"),
        ):
            table.add_column(label, key=key)
        workers = self.query_one("#cluster-workers", DataTable)
        for key, label in (
            ("name", "Worker"),
            ("host", "Host"),
            ("slots", "Slots"),
            ("running", "Running"),
            ("cpu", "CPU %"),
            ("ram", "RAM used"),
        ):
            workers.add_column(label, key=key)

    def show_cluster(self, snapshot: EngineSnapshot) -> None:
        """The engine's cluster workers, as `drapto status` lists them."""
        label = self.query_one("#cluster", Static)
        table = self.query_one("#cluster-workers", DataTable)
        label.display = table.display = snapshot.cluster is not None
        if snapshot.cluster is None:
            return
        workers = snapshot.cluster_workers
        label.update(f"cluster {snapshot.cluster}: {len(workers)} workers")
        table.clear()
        for w in workers:
            table.add_row(
                _short(w.name),
                w.host,
                str(w.slots),
                str(w.running),
                f"{w.cpu_percent:.0f}",
                worker_memory(w.memory_total, w.memory_available),
            )

    def show(
        self, snapshot: EngineSnapshot, name_of: Callable[[str], str | None] = lambda _: None
    ) -> None:
        """`name_of` gives a job's file name (job ids are hashes, for machines)."""
        self.show_cluster(snapshot)
        samples = snapshot.resources
        latest = samples[-1] if samples else None
        width = max(10, self.size.width - 4)
        cpu = sparkline([s.cpu_percent for s in samples], width)
        used = [100 * (1 - s.memory_available / s.memory_total) for s in samples if s.memory_total]
        self.query_one("#cpu", Static).update(Text(cpu or " "))
        self.query_one("#ram", Static).update(Text(sparkline(used, width) or " "))
        minutes = len(samples) / 60
        if latest is None:
            self.query_one("#cpu-label", Label).update("CPU: no sample yet")
            self.query_one("#limits", Static).update(f"workers {snapshot.workers}")
            return
        self.query_one("#cpu-label", Label).update(
            f"CPU {latest.cpu_percent:.0f}% (last {minutes:.1f} min)"
        )
        in_use = latest.memory_total - latest.memory_available
        self.query_one("#ram-label", Label).update(
            f"RAM {in_use / GIB:.1f} of {latest.memory_total / GIB:.1f} GiB used"
        )
        paused = "  queue paused" if snapshot.paused else ""
        self.query_one("#limits", Static).update(
            f"memory reserve {latest.reserve_bytes / GIB:.1f} GiB   "
            f"workers {snapshot.workers} ([b]+[/]/[b]-[/] to change)   "
            f"running {latest.running}, suspended {latest.suspended}{paused}"
        )
        table = self.query_one("#encoders", DataTable)
        table.clear()
        for e in latest.encoders:
            table.add_row(
                str(e.pid),
                _short((name_of(e.job) or e.job) if e.job else "-"),
                "-" if e.segment is None else str(e.segment),
                f"{e.cpu_percent:.0f}",
                presentation.size(e.rss_bytes),
                "suspended" if e.suspended else "running",
            )
