"""The summary that ends a `drapto --batch` run: one row per job (its status, sizes,
speed), printed as a table and written whole as JSON in the state directory."""

from __future__ import annotations

import contextlib
import itertools
import os
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from drapto_engine.core.api import INTERRUPTED_NOTE
from drapto_engine.core.jobs import FINAL_STATUSES, EntryStatus, QueueEntry
from drapto_engine.core.metrics import size_change
from drapto_engine.core.text import dumps

INTERRUPTED = "interrupted"


def summary_rows(entries: Iterable[QueueEntry]) -> list[dict[str, Any]]:
    rows = []
    for e in entries:
        s = e.summary
        out = Path(e.output)
        rows.append(
            {
                "status": summary_status(e),
                "input": e.input,
                "output": e.output,
                "input_bytes": s.input_bytes if s else _size(Path(e.input)),
                "output_bytes": s.output_bytes
                if s
                else (_size(out) if e.status is EntryStatus.SKIPPED else None),
                "reduction_percent": round(s.reduction_percent, 2) if s else None,
                "wall_s": round(s.wall_s, 2) if s else None,
                "fps": round(s.encode_fps, 2) if s else None,
                "note": e.error or e.note,
                "rollbacks": e.rollbacks,
                "quality": s.quality.model_dump(mode="json") if s and s.quality else None,
            }
        )
    return rows


def summary_status(entry: QueueEntry) -> str:
    """The entry's status, or "interrupted" when the run ended before the entry did."""
    if entry.status not in FINAL_STATUSES:
        return INTERRUPTED
    if entry.status is EntryStatus.CANCELLED and entry.note == INTERRUPTED_NOTE:
        return INTERRUPTED
    return entry.status.value


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


STATUS_WIDTH = max(len(INTERRUPTED), *(len(s.value) for s in EntryStatus))
"""The status column fits every status a row can have."""


def print_summary(rows: list[dict[str, Any]], out: Any) -> None:
    w = STATUS_WIDTH
    header = f"{'status':<{w}} {'input':<40} {'in MB':>8} {'out MB':>8} {'saved':>7} {'wall s':>8} {'fps':>7}"
    print("\n" + header, file=out)
    for row in rows:
        name = Path(row["input"]).name
        name = name if len(name) <= 40 else name[:37] + "..."
        print(
            f"{row['status']:<{w}} {name:<40} {_mb(row['input_bytes']):>8} {_mb(row['output_bytes']):>8} "
            f"{_num(row['reduction_percent'], '%'):>7} {_num(row['wall_s']):>8} {_num(row['fps']):>7}",
            file=out,
        )
        if row["status"] == EntryStatus.FAILED.value and row["note"]:
            print(f"{'':<{w}} {row['note']}", file=out)
        if row.get("quality"):
            print(f"{'':<{w}} {_quality(row['quality'])}", file=out)
    out.flush()


def _quality(q: dict[str, Any]) -> str:
    """A target-quality job's spread in one line (its segments are in the JSON)."""
    if q["vmaf_min"] is None:
        return f"target VMAF {q['target_vmaf']:g}: not measured"
    return (
        f"target VMAF {q['target_vmaf']:g}: {q['in_band']} of {len(q['segments'])} segments "
        f"in the band, VMAF {q['vmaf_min']:.2f} / {q['vmaf_mean']:.2f} / {q['vmaf_max']:.2f}"
        f" (min / mean / max), CRF {q['crf_min']}-{q['crf_max']}"
    )


def _mb(size: int | None) -> str:
    return "-" if size is None else f"{size / 1e6:.1f}"


def _num(value: float | None, unit: str = "") -> str:
    return "-" if value is None else f"{value:.1f}{unit}"


def write_summary(state_dir: Path, label: str, rows: list[dict[str, Any]], wall: float) -> Path:
    """The summary as JSON: one file per run (never another run's, even one that ended
    in the same second) and `last-batch.json` beside them, each written whole under a
    temporary name first."""
    folder = state_dir / "batches"
    folder.mkdir(parents=True, exist_ok=True)
    data = {"batch": label, "wall_s": round(wall, 2), "jobs": rows}
    text = dumps(data, indent=2)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in itertools.count(1):
        path = folder / (f"batch-{stamp}.json" if n == 1 else f"batch-{stamp}-{n}.json")
        with contextlib.suppress(FileExistsError):
            _write_whole(path, text, replace=False)
            break
    _write_whole(state_dir / "last-batch.json", text, replace=True)
    return path


def _write_whole(path: Path, text: str, *, replace: bool) -> None:
    """`text` in `path`, never half written: a hidden temporary file beside it, then a
    rename (os.replace) or, with replace=False, a hard link that fails if `path` exists."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    temporary = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
        if replace:
            os.replace(temporary, path)
        else:
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def size_text(rows: list[dict[str, Any]]) -> str:
    """ "; 120.0 MB -> 80.0 MB (33% smaller)" over the jobs this run encoded, or ""."""
    done = [r for r in rows if r["status"] == EntryStatus.DONE.value and r["input_bytes"]]
    source = sum(r["input_bytes"] for r in done)
    output = sum(r["output_bytes"] or 0 for r in done)
    if not source:
        return ""
    change = size_change(100.0 * (1 - output / source), 0)
    return f"; encoded {source / 1e6:.1f} MB -> {output / 1e6:.1f} MB ({change})"
