"""What drapto says about a job must be true: AV1 sources are not re-encoded by
accident, a resumed job's figures count only this run's work, the plan is announced
when it is whole, whole-file encodes are measured, and an output that grew says so.
All on real runs of `drapto encode` / `drapto --batch` with small lavfi media."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
from encode_helpers import DRAPTO, FAST, encode, inspect
from forked import run_forked, warm_imports
from inbox import Inbox, inbox_fixture  # noqa: F401 (the `inbox` fixture)
from test_dolby_vision import dovi_record

pytestmark = pytest.mark.slow

SEGMENTS = ["--min-segment", "0.5", "--max-segment", "1"]


def av1_source(make_media: object, name: str, duration: float = 3.0) -> Path:
    """A real AV1 file (SVT-AV1, as drapto's own outputs are)."""
    return make_media(name, codec="libsvtav1", size=(160, 90), duration=duration, gop=25)  # type: ignore[operator,no-any-return]


def batch(queue: Path, state: Path, config: Path) -> subprocess.CompletedProcess[str]:
    """`drapto --batch` to its end, forked (forked.py: a real process without a fresh
    interpreter's imports)."""
    warm_imports()
    argv = ["--config", str(config), "--batch", str(queue), "--state-dir", str(state)]
    return run_forked(argv, Path.cwd(), dict(os.environ), timeout=300)


def test_encode_refuses_an_av1_source_unless_forced(make_media: object, tmp_path: Path) -> None:
    source = av1_source(make_media, "film.mkv")
    output = tmp_path / "out.mkv"
    refused = encode(source, output)
    assert refused.returncode == 1
    assert refused.stderr.splitlines() == [
        f"drapto: {source}: already AV1 (use --force to encode it again)"
    ]
    assert refused.events == [] and not output.exists()

    forced = encode(source, output, "--force", *SEGMENTS)
    assert forced.returncode == 0, forced.stderr
    video = inspect(output, decode=False).of("video")[0]
    assert video.codec == "av1" and video.packets == 75
    # The plan is announced when segmentation ends, not after the last encode.
    types = [e["type"] for e in forced.events]
    planned = types.index("segments_planned")
    last_done = len(types) - 1 - types[::-1].index("segment_done")
    assert forced.of("segments_planned")[0]["count"] >= 3
    assert planned < last_done, types


def test_batch_skips_av1_sources_in_folders_and_queue_files(
    make_media: object, tmp_path: Path
) -> None:
    library = tmp_path / "lib"
    av1_source(make_media, "lib/encoded before.mkv", duration=1.0)
    make_media("lib/new.mkv", size=(128, 72), duration=1.0, gop=25)  # type: ignore[operator]
    single = av1_source(make_media, "single.mkv", duration=1.0)
    forced = av1_source(make_media, "forced.mkv", duration=1.0)
    config = tmp_path / "config.toml"
    config.write_text("")
    queue = tmp_path / "queue.toml"
    queue.write_text(
        f"""
[defaults]
preset = 12
output_dir = "{tmp_path / "av1"}"
[[job]]
input = "{library}"
[[job]]
input = "{single}"
[[job]]
input = "{forced}"
force = true
"""
    )
    state = tmp_path / "state"
    run = batch(queue, state, config)
    assert run.returncode == 0, run.stderr + run.stdout
    jobs = json.loads((state / "last-batch.json").read_text())["jobs"]
    by_name = {Path(j["input"]).name: j for j in jobs}
    assert set(by_name) == {"encoded before.mkv", "new.mkv", "single.mkv", "forced.mkv"}
    for name in ("encoded before.mkv", "single.mkv"):
        assert (by_name[name]["status"], by_name[name]["note"]) == ("skipped", "already AV1")
    assert by_name["new.mkv"]["status"] == by_name["forced.mkv"]["status"] == "done"
    assert f"skipped: {single} (already AV1)" in run.stdout
    outputs = sorted(p.name for p in (tmp_path / "av1").rglob("*.mkv"))
    assert outputs == ["forced.mkv", "new.mkv"]


def test_a_forced_dolby_vision_av1_source_keeps_its_dolby_vision(
    ffmpeg: str, shared_media: Path, tmp_path: Path
) -> None:
    """drapto's own Dolby Vision output (AV1 profile 10) encoded again with --force,
    whole-file: its RPUs are kept, and the one encoder (under a second) is measured."""
    first, second = tmp_path / "dv.mkv", tmp_path / "dv-again.mkv"
    whole = ["--flag", "segmented_dolby_vision=off"]
    made = encode(shared_media / "dv-p81-regular.mkv", first, *whole)
    assert made.returncode == 0, made.stderr
    assert dovi_record(ffmpeg, first) == (10, 1)
    assert (
        encode(first, second, *whole)
        .stderr.strip()
        .endswith("already AV1 (use --force to encode it again)")
    )
    again = encode(first, second, "--force", *whole)
    assert again.returncode == 0, again.stderr
    assert "profile 10 cannot be kept" not in again.stderr
    assert again.of("analysis")[0]["dolby_vision_profile"] == 10
    assert dovi_record(ffmpeg, second) == (10, 1)
    for run in (made, again):
        assert run.of("segments_planned")[0]["count"] == 1
        metrics = run.of("job_finished")[0]["summary"]["metrics"]
        assert metrics["peak_rss_bytes"] > 1_000_000, metrics
        assert metrics["mean_cpu_percent"] > 0, metrics


def _start(source: Path, output: Path, state: Path, *extra: str) -> subprocess.Popen[str]:
    argv = [*DRAPTO, "encode", str(source), "-o", str(output), *FAST, *SEGMENTS]
    argv += ["--workers", "1", "--preset", "10", "--state-dir", str(state), *extra]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


SUMMARY = re.compile(
    r"(?P<wall>[\d.]+) s, (?P<fps>[\d.]+) fps over the (?P<encoded>\d+) of (?P<total>\d+) "
    r"frames encoded in this run; (?P<segments>\d+) segments, (?P<kept>\d+) kept from the "
    r"interrupted run"
)


def test_a_resumed_job_reports_only_this_runs_work(make_media: object, tmp_path: Path) -> None:
    source = make_media("long.mkv", duration=6.0, size=(640, 360))  # type: ignore[operator]
    output, state = tmp_path / "long.av1.mkv", tmp_path / "state"
    first = _start(source, output, state)
    assert first.stdout is not None
    done = 0
    for line in first.stdout:
        if json.loads(line)["type"] == "segment_done":
            done += 1
            if done == 2:
                break
    first.kill()
    first.communicate(timeout=30)
    assert done == 2, "the first run ended before two segments were done"

    second = _start(source, output, state, "--progress", "plain")
    stdout, stderr = second.communicate(timeout=300)
    assert second.returncode == 0, stderr
    match = SUMMARY.search(stdout)
    assert match, stdout
    kept, total, encoded = int(match["kept"]), int(match["total"]), int(match["encoded"])
    assert kept >= 2 and total == 150 and 0 < encoded < total
    assert re.search(rf"\] {kept} segments kept from the interrupted run\n", stdout), stdout
    # Only segments this run encoded get a "done" line (with their own fps).
    done_lines = re.findall(r"segment \d+ done \(", stdout)
    assert len(done_lines) == int(match["segments"]) - kept, stdout
    # The job's rate is over this run's frames: the old figure counted the kept ones too.
    fps, wall = float(match["fps"]), float(match["wall"])
    assert fps == pytest.approx(encoded / wall, rel=0.1, abs=0.5)
    assert fps < total / wall * 0.95


def test_an_output_larger_than_its_source_says_so(
    make_media: object, tmp_path: Path, inbox: Inbox
) -> None:
    """A tiny source compressed to CRF 51 grows when encoded at CRF 1."""
    make_media("lib/tiny.mkv", size=(160, 90), duration=1.0, output_args=["-crf", "51"])  # type: ignore[operator]
    config = tmp_path / "config.toml"
    config.write_text(f'notify_url = "{inbox.url}"\n')
    queue = tmp_path / "queue.toml"
    queue.write_text(f'[defaults]\npreset = 12\ncrf = 1\n[[job]]\ninput = "{tmp_path / "lib"}"\n')
    state = tmp_path / "state"
    run = batch(queue, state, config)
    assert run.returncode == 0, run.stderr + run.stdout
    (job,) = json.loads((state / "last-batch.json").read_text())["jobs"]
    assert job["output_bytes"] > job["input_bytes"]
    grown = -job["reduction_percent"]
    assert f"({grown:.1f}% larger)" in run.stdout
    assert "the output is larger than the source" in run.stdout
    assert "% smaller" not in run.stdout
    deadline = time.monotonic() + 10
    while not any(t == "drapto: job done" for t, _ in inbox.received):
        assert time.monotonic() < deadline, inbox.received
        time.sleep(0.05)
    (body,) = [b for t, b in inbox.received if t == "drapto: job done"]
    assert re.fullmatch(rf"tiny\.mkv: done, {grown:.0f}% larger in \d+ s", body), body
    while not any(t == "drapto: batch finished" for t, _ in inbox.received):
        assert time.monotonic() < deadline, inbox.received
        time.sleep(0.05)
    (last,) = [b for t, b in inbox.received if t == "drapto: batch finished"]
    assert last.endswith("% larger)") and "smaller" not in last, last


async def test_a_job_resumed_in_the_same_engine_counts_only_this_runs_segments(
    make_media: object, tmp_path: Path, ffmpeg: str
) -> None:
    """Interrupted and retried in one engine (the service, the TUI): the summary's
    segments and frames are the second run's, not the first run's added to them."""
    import asyncio

    from engine_helpers import FAST as ENGINE_FAST
    from engine_helpers import make_engine

    from drapto_engine.cli.printers import summary_lines
    from drapto_engine.core.events import JobFinished, SegmentDone

    source = make_media("r.mkv", size=(160, 90), duration=6.0, gop=25)  # type: ignore[operator]
    session = make_engine(tmp_path, ffmpeg, workers=1)
    engine = session.engine
    async with engine.running():
        [entry] = await engine.add([(source, tmp_path / "r.av1.mkv")], options=ENGINE_FAST)
        runner = asyncio.create_task(engine.run(only={entry.id}))
        deadline = time.monotonic() + 60
        while not session.of(SegmentDone):
            assert time.monotonic() < deadline, "no segment finished"
            await asyncio.sleep(0.02)
        await engine.interrupt([entry.id])
        await asyncio.wait_for(runner, 30)
        first_run = {e.index for e in session.of(SegmentDone)}
        session.events.clear()
        await engine.retry(entry.id)
        await engine.run(only={entry.id}, ignore_pause=True)
    engine.close()
    (finished,) = session.of(JobFinished)
    kept = {e.index for e in session.of(SegmentDone) if e.resumed}
    encoded = {e.index for e in session.of(SegmentDone) if not e.resumed}
    assert first_run <= kept and encoded and not kept & encoded
    m = finished.summary.metrics
    assert m is not None
    assert {s.index for s in m.segments} == encoded
    assert (m.encoded_segments, m.resumed_segments) == (len(encoded), len(kept))
    frames = sum(e.frames for e in session.of(SegmentDone) if not e.resumed)
    assert sum(s.frames for s in m.segments) == frames < finished.summary.frames
    assert f"over the {frames} of {finished.summary.frames} frames" in summary_lines(finished)[1]


async def test_plain_progress_never_counts_segments_against_a_plan_still_being_made(
    make_media: object, tmp_path: Path, ffmpeg: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Segments are encoded while the scene scan still plans the rest (held back at a
    film's pace by slow_luma.py): no "done" line may give a total before the plan is
    whole, and the plan's line comes before any share of it."""
    import io

    from engine_helpers import FAST as ENGINE_FAST
    from engine_helpers import make_engine
    from mediagen import Cut

    from drapto_engine.cli.printers import PlainPrinter
    from drapto_engine.core.events import SegmentsPlanned
    from drapto_engine.services.segmentation import scenes

    monkeypatch.setattr(scenes, "DECODER", Path(__file__).with_name("slow_luma.py"))
    cuts = [Cut(1.5, "testsrc2"), Cut(1.5, "smptebars"), Cut(1.5, "mandelbrot")] * 3
    source = make_media("cuts.mkv", size=(160, 90), cuts=cuts, gop=25)  # type: ignore[operator]
    stepped, every = io.StringIO(), io.StringIO()
    session = make_engine(tmp_path, ffmpeg, workers=2)
    session.engine.bus.subscribe(PlainPrinter(stepped, every_percent=10.0).handle)
    session.engine.bus.subscribe(PlainPrinter(every).handle)
    async with session.engine.running():
        await session.run([(source, tmp_path / "cuts.av1.mkv")], ENGINE_FAST)
    session.engine.close()
    (planned,) = session.of(SegmentsPlanned)
    assert planned.count >= 4, every.getvalue()
    for text in (stepped.getvalue(), every.getvalue()):
        lines = text.splitlines()
        at = next(i for i, line in enumerate(lines) if line.endswith("segments planned"))
        for i, line in enumerate(lines):
            shares = re.findall(r"\b(\d+)/(\d+)\b", line)
            assert all(int(total) == planned.count for _, total in shares), text
            if shares:
                assert i > at, text
