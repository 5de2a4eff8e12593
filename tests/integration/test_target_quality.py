"""Target quality (`--target-vmaf`): real encodes of a clip whose two scenes differ
greatly in difficulty, each segment scored again here by the test's own libvmaf run."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from encode_helpers import DRAPTO, FAST, encode
from forked import run_forked
from mediagen import Cut

from drapto_engine.cli.printers import summary_lines
from drapto_engine.cli.summary import print_summary, summary_rows
from drapto_engine.core.errors import DraptoError
from drapto_engine.core.events import JobFinished
from drapto_engine.core.jobs import EntryStatus, QueueEntry
from drapto_engine.core.metrics import JobSummary
from drapto_engine.core.models import EncodeSettings, Segment
from drapto_engine.infrastructure.paths import state_db
from drapto_engine.services.batch_file import load_batch
from drapto_engine.services.detection import analyze_video
from drapto_engine.services.encoding.plan import VideoPlan
from drapto_engine.services.quality.vmaf import FILTER_ENV

TARGET = 90.0
EASY = Cut(2.0, "testsrc2")
HARD = Cut(2.0, "mandelbrot")
SEGMENTS = ["--min-segment", "1", "--max-segment", "4", "--workers", "2"]
"""Two segments, cut at the scene change."""


def two_scenes(make_media, name: str = "two scenes.mkv") -> Path:
    return make_media(name, size=(320, 180), cuts=[EASY, HARD], gop=25)


def own_vmaf(
    ffmpeg: str, source: Path, output: Path, start: int, frames: int, reference_from: int = -1
) -> float:
    """The mean VMAF of `frames` frames of the output from `start` (from its first with
    `reference_from`, a segment file), against the source frames from `start` (10-bit,
    paired by frame number): measured here, not by drapto."""
    first = start if reference_from < 0 else 0
    graph = (
        f"[0:v]trim=start_frame={first}:end_frame={first + frames},format=yuv420p10le,"
        "settb=AVTB,setpts=N[d];"
        f"[1:v]trim=start_frame={start}:end_frame={start + frames},format=yuv420p10le,"
        "settb=AVTB,setpts=N[r];"
        "[d][r]libvmaf=log_fmt=json:log_path=/dev/stdout:n_threads=2"
    )
    done = subprocess.run(
        [
            ffmpeg,
            "-hide_banner",
            "-nostdin",
            "-loglevel",
            "error",
            "-i",
            str(output),
            "-i",
            str(source),
            "-filter_complex",
            graph,
            "-f",
            "null",
            "-",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    log = json.loads(done.stdout[done.stdout.index("{") :])
    return float(log["pooled_metrics"]["vmaf"]["mean"])


def test_each_scene_gets_its_crf_and_lands_in_the_band(
    make_media, ffmpeg: str, tmp_path: Path
) -> None:
    source = two_scenes(make_media)
    output = tmp_path / "out.mkv"
    run = encode(source, output, "--target-vmaf", str(TARGET), "--crf-range", "20-55", *SEGMENTS)
    assert run.returncode == 0, run.stderr
    done = sorted(run.of("segment_done"), key=lambda e: e["index"])
    assert [e["frames"] for e in done] == [50, 50]
    easy, hard = done
    assert easy["crf"] - hard["crf"] >= 4, done
    for event in done:
        assert event["target"] == "met", [
            (e["crf"], e["vmaf"], e["probes"], e["target"]) for e in done
        ]
        assert abs(event["vmaf"] - TARGET) <= 1.0
        assert event["vmaf_low5"] <= event["vmaf"]
        assert len(event["probes"]) >= 1
        start = 0 if event["index"] == 0 else 50
        measured = own_vmaf(ffmpeg, source, output, start, 50)
        assert abs(measured - TARGET) <= 1.0, (event, measured)
        assert abs(measured - event["vmaf"]) < 0.5
    (finished,) = run.of("job_finished")
    spread = finished["summary"]["quality"]
    assert [(q["crf"], q["vmaf"]) for q in spread["segments"]] == [
        (e["crf"], e["vmaf"]) for e in done
    ]
    assert spread["vmaf_min"] == min(e["vmaf"] for e in done)
    assert spread["vmaf_max"] == max(e["vmaf"] for e in done)
    assert (spread["crf_min"], spread["crf_max"], spread["in_band"]) == (
        hard["crf"],
        easy["crf"],
        2,
    )
    text = "\n".join(summary_lines(JobFinished.model_validate(finished)))
    assert "target VMAF 90: 2 of 2 segments in the band" in text
    assert f"#0 crf{easy['crf']} {easy['vmaf']:.1f}, #1 crf{hard['crf']} {hard['vmaf']:.1f}" in text
    entry = QueueEntry(
        id=1, input=str(source), output=str(output), position=0, status=EntryStatus.DONE,
        summary=JobSummary.model_validate(finished["summary"]),
    )  # fmt: skip
    table = io.StringIO()
    print_summary(summary_rows([entry]), table)
    assert "target VMAF 90: 2 of 2 segments in the band" in table.getvalue()
    with sqlite3.connect(state_db()) as db:
        rows = db.execute(
            "SELECT idx, crf, vmaf, probes, target FROM segments WHERE job_id = ? ORDER BY idx",
            (easy["job"],),
        ).fetchall()
    assert [(r[0], r[1], r[2], r[4]) for r in rows] == [
        (0, easy["crf"], easy["vmaf"], "met"),
        (1, hard["crf"], hard["vmaf"], "met"),
    ]
    assert json.loads(rows[1][3]) == [list(p) for p in hard["probes"]]


def test_an_unreachable_target_ends_at_the_bound_and_says_so(make_media, tmp_path: Path) -> None:
    source = make_media("hard.mkv", size=(192, 108), duration=1.0, source="mandelbrot")
    output = tmp_path / "out.mkv"
    run = encode(source, output, "--target-vmaf", "99", "--crf-range", "40-50", *SEGMENTS)
    assert run.returncode == 0, run.stderr
    (done,) = run.of("segment_done")
    assert (done["crf"], done["target"]) == (40, "bound")
    assert done["vmaf"] < 98
    (warning,) = [w for w in run.of("warning") if "out of reach" in w["message"]]
    assert "CRF 40-50" in warning["message"] and "at CRF 40" in warning["message"]
    assert output.is_file()


def test_a_still_picture_ends_at_the_top_bound_and_says_so(make_media, tmp_path: Path) -> None:
    """A flat grey clip scores the same at every CRF (97.4): the segment is encoded at the
    range's top, the smallest file, and reported as out of reach there (it was kept at
    CRF 52 and called `missed`, with 11 CRFs left untried)."""
    source = make_media("still.mkv", size=(192, 108), duration=2.0, source="color")
    output = tmp_path / "out.mkv"
    run = encode(source, output, "--target-vmaf", "93", *SEGMENTS)
    assert run.returncode == 0, run.stderr
    (done,) = run.of("segment_done")
    assert (done["crf"], done["target"]) == (63, "bound")
    (warning,) = [w for w in run.of("warning") if "out of reach" in w["message"]]
    assert "at CRF 63" in warning["message"]
    assert output.is_file()


def test_failing_libvmaf_rolls_back_to_the_fixed_crf_with_a_warning(
    make_media, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(FILTER_ENV, "no_such_vmaf")  # ffmpeg: "No such filter"
    source = two_scenes(make_media)
    output = tmp_path / "out.mkv"
    run = encode(source, output, "--target-vmaf", "90", *SEGMENTS)
    assert run.returncode == 0, run.stderr
    (analysis,) = run.of("analysis")
    done = run.of("segment_done")
    assert len(done) == 2
    assert all(e["crf"] == analysis["crf"] and e["vmaf"] is None for e in done), done
    assert {e["target"] for e in done} <= {"fallback", None}
    (warning,) = [w for w in run.of("warning") if "rolled back" in w["message"]]
    assert "target_quality rolled back to the fixed CRF" in warning["message"]
    assert "VMAF measurement failed" in warning["message"]
    [rollback] = run.of("rollback")  # counted towards the session's flag, as other flags'
    assert (rollback["flag"], rollback["stage"]) == ("target_quality", "encoding")
    assert "VMAF measurement failed" in rollback["error"]
    assert output.is_file()


async def test_jobs_rolled_back_past_the_limit_turn_target_quality_off_for_the_session(
    make_media, ffmpeg: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """libvmaf failing in every job: past `rollback_limit` jobs the engine turns the
    flag off, and the next job does not search at all (its plan says so)."""
    from engine_helpers import FAST as ENGINE_FAST
    from engine_helpers import make_engine

    from drapto_engine.config import Config
    from drapto_engine.core.events import (
        AnalysisReady,
        FlagChanged,
        RolledBack,
        SegmentDone,
        WarningEvent,
    )
    from drapto_engine.core.flags import FlagSource, FlagState

    monkeypatch.setenv(FILTER_ENV, "no_such_vmaf")
    first = make_media("one.mkv", size=(192, 108), duration=2.0, source="testsrc2")
    second = make_media("two.mkv", size=(192, 108), duration=2.0, source="testsrc2")
    options = ENGINE_FAST.model_copy(update={"target_vmaf": 90.0})
    session = make_engine(tmp_path, ffmpeg, config=Config(rollback_limit=1))
    async with session.engine.running():
        [one] = await session.run([(first, tmp_path / "one.av1.mkv")], options)
        [two] = await session.run([(second, tmp_path / "two.av1.mkv")], options)
    assert (one.status, two.status) == (EntryStatus.DONE, EntryStatus.DONE)
    [rollback] = session.of(RolledBack)
    assert (rollback.flag, rollback.job) == ("target_quality", one.job)
    [off] = session.of(FlagChanged)
    assert (off.flag.name, off.flag.state, off.flag.source) == (
        "target_quality",
        FlagState.OFF,
        FlagSource.ROLLBACK,
    )
    assert {d.target for d in session.of(SegmentDone, one.job)} == {"fallback"}
    assert {d.target for d in session.of(SegmentDone, two.job)} == {None}  # not searched
    [analysis] = session.of(AnalysisReady, two.job)
    assert analysis.target_vmaf is None  # its plan: the fixed CRF
    said = [w.message for w in session.of(WarningEvent, two.job)]
    assert any("the target_quality flag is off" in m for m in said), said
    session.engine.close()


def test_target_vmaf_with_crf_is_refused_in_one_line(make_media, tmp_path: Path) -> None:
    source = make_media("any.mkv", duration=0.2)
    run = encode(source, tmp_path / "out.mkv", "--target-vmaf", "93", "--crf", "30")
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1
    assert "--target-vmaf" in run.stderr and "do not go together" in run.stderr
    assert not (tmp_path / "out.mkv").exists()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[defaults]\ntarget_vmaf = 100\n", "2: defaults.target_vmaf: must be at most 99"),
        ("[defaults]\ntarget_vmaf = true\n", "2: defaults.target_vmaf: must be a number"),
        ("[defaults]\ncrf_range = '50-20'\n", "2: defaults.crf_range: must be two CRFs"),
        ("[defaults]\ncrf_range = 20\n", '2: defaults.crf_range: must be "MIN-MAX"'),
        ("[defaults]\ntarget_vmf = 93\n", "did you mean 'target_vmaf'?"),
        ("[defaults]\ncrf = 30\ntarget_vmaf = 93\n", "crf and target_vmaf do not go together"),
    ],
)
def test_config_checks_the_new_keys(tmp_path: Path, text: str, problem: str) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    done = run_forked(["--config", str(bad), "config"], Path.cwd(), dict(os.environ), 60)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"drapto: {bad}:") and problem in done.stderr, done.stderr
    assert done.stderr.count("\n") == 1


def test_good_keys_in_config_and_queue_file_are_taken(make_media, tmp_path: Path) -> None:
    source = make_media("in.mkv", duration=0.2)
    config = tmp_path / "good.toml"
    config.write_text("[defaults]\ntarget_vmaf = 93.5\ncrf_range = [20, 40]\n")
    done = run_forked(["--config", str(config), "config"], Path.cwd(), dict(os.environ), 60)
    assert done.returncode == 0, done.stderr
    queue = tmp_path / "queue.toml"
    queue.write_text(
        f"[[job]]\ninput = '{source}'\ntarget_vmaf = 93\ncrf_range = '22-44'\n"
        f"[[job]]\ninput = '{source}'\ntarget_vmaf = 49\n"
    )
    batch = load_batch_problems(queue)
    assert "job[2].target_vmaf" in batch and "at least 50" in batch
    assert "job[1]" not in batch


def load_batch_problems(queue: Path) -> str:
    import imageio_ffmpeg

    try:
        load_batch(queue, imageio_ffmpeg.get_ffmpeg_exe())
    except DraptoError as exc:
        return str(exc)
    return ""


def test_killed_while_probing_resumes_without_probing_again(
    make_media, ffmpeg: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kill -9 once the second segment has a probe: the rerun keeps the first segment
    (with its CRF, score and probes) and starts the second from the probe it kept."""
    source = two_scenes(make_media)
    output, state, calls = tmp_path / "out.mkv", tmp_path / "state", tmp_path / "calls"
    wrapper = tmp_path / "ffmpeg"
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> "{calls}"\nexec "{ffmpeg}" "$@"\n')
    wrapper.chmod(0o755)
    env = {**os.environ, "DRAPTO_FFMPEG": str(wrapper)}
    args = ["--target-vmaf", "90", "--crf-range", "20-55", "--preset", "8"]
    args += [*SEGMENTS[:-1], "1", "--state-dir", str(state), "--no-daemon"]
    argv = [*DRAPTO, "encode", str(source), "-o", str(output), *FAST, *args]
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
    )
    assert proc.stdout is not None
    first = next(json.loads(line) for line in proc.stdout if '"segment_done"' in line)
    assert first["index"] == 0
    deadline = time.monotonic() + 60
    kept = None
    while kept is None and time.monotonic() < deadline:
        with sqlite3.connect(state / "drapto.db") as db:
            row = db.execute("SELECT probes, state FROM segments WHERE idx = 1").fetchone()
        if row and row[1] == "done":
            pytest.fail("the second segment finished before it could be killed")
        kept = json.loads(row[0]) if row and row[0] else None
        time.sleep(0.02)
    proc.kill()
    proc.wait(10)
    assert kept, "no probe of the second segment was kept"
    calls.unlink()
    monkeypatch.setenv("DRAPTO_FFMPEG", str(wrapper))

    run = encode(source, output, *args[:-1])
    assert run.returncode == 0, run.stderr
    done = {e["index"]: e for e in run.of("segment_done")}
    assert done[0]["resumed"] and done[0]["crf"] == first["crf"]
    assert done[0]["vmaf"] == first["vmaf"] and done[0]["probes"] == first["probes"]
    assert [list(p) for p in done[1]["probes"][: len(kept)]] == kept
    again = [
        line
        for line in calls.read_text().splitlines()
        if "libsvtav1" in line and "segment-00001." in line and "/probe-" in line
    ]
    probed_again = {int(line.split(" -crf ")[1].split()[0]) for line in again}
    assert not probed_again & {int(c) for c, _ in kept}, again
    assert len(again) == len(done[1]["probes"]) - len(kept), calls.read_text()


def test_a_worker_searches_and_measures_a_shipped_segment_and_sends_plain_data(
    make_media, ffmpeg: str, tmp_path: Path
) -> None:
    """The cluster task, run in-process: a segment shipped from mid-GOP (10 frames of
    pre-roll) comes back with its bytes and the search's figures, as msgpack carries
    them; the test's own libvmaf run agrees with the figure."""
    msgpack = pytest.importorskip("msgpack", reason="the cluster extra is not installed")
    from drapto_engine.cluster.tasks import (
        encode_shipped_segment,
        packet_index,
        segment_quality,
        segment_result,
        segment_task,
        ship_segment,
    )

    source = two_scenes(make_media)
    settings = EncodeSettings(preset=12, target_vmaf=TARGET, crf_range=(20, 55))
    plan = VideoPlan.make(ffmpeg, asyncio.run(analyze_video(source, ffmpeg)), settings)
    segment = Segment(index=1, start_frame=60, end_frame=100, start_s=2.4, end_s=4.0)
    packets, preroll = ship_segment(source, 60, 100)
    assert preroll == 10
    time_base = packet_index(source).time_base
    record = segment_task(encode_shipped_segment, packets, preroll, plan, segment, 1, time_base)
    record = msgpack.unpackb(msgpack.packb(record), use_list=False)  # as Dask reads it
    quality = segment_quality(record)
    assert quality is not None and quality.vmaf is not None, record.get("problem")
    assert quality.status == "met" and len(quality.probes) >= 2
    encoded = tmp_path / "remote.mp4"
    encoded.write_bytes(segment_result(record))
    measured = own_vmaf(ffmpeg, source, encoded, 60, 40, reference_from=60)
    assert abs(measured - TARGET) <= 1.0
    assert abs(measured - quality.vmaf) < 0.5
    # a resumed job hands the worker the probes it kept: none is encoded again
    again = segment_task(
        encode_shipped_segment, packets, preroll, plan, segment, 1, time_base,
        known_probes=quality.probes,
    )  # fmt: skip
    resumed = segment_quality(msgpack.unpackb(msgpack.packb(again), use_list=False))
    assert resumed is not None and resumed.probes == quality.probes
    assert resumed.encodes < quality.encodes and resumed.encodes <= 2  # finals only


def test_status_json_of_a_running_engine_shows_crf_score_and_spread(
    make_media, tmp_path: Path
) -> None:
    """Through `drapto serve`: the job's segments in `drapto status --json` carry CRF
    and score, and the finished entry's summary the spread."""
    source = make_media("one scene.mkv", size=(192, 108), duration=1.0, source="testsrc2")
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "XDG_STATE_HOME": str(tmp_path / "s")}
    server = subprocess.Popen([*DRAPTO, "serve"], env=env, stderr=subprocess.DEVNULL)
    try:
        socket = runtime / "drapto" / "engine.sock"
        deadline = time.monotonic() + 20
        while not socket.exists():
            assert time.monotonic() < deadline and server.poll() is None, "no engine"
            time.sleep(0.05)
        argv = ["encode", str(source), "-o", str(tmp_path / "o.mkv"), *FAST, "--target-vmaf"]
        done = subprocess.run(
            [*DRAPTO, *argv, "92", "--crf-range", "20-55"],
            env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        status = subprocess.run(
            [*DRAPTO, "status", "--json"], env=env, capture_output=True, text=True, check=True
        )
        snapshot = json.loads(status.stdout)
        (entry,) = snapshot["entries"]
        spread = entry["summary"]["quality"]
        assert spread["target_vmaf"] == 92 and spread["in_band"] == 1
        (segment,) = snapshot["jobs"][entry["job"]]["segments"].values()
        assert (segment["crf"], segment["vmaf"]) == (
            spread["segments"][0]["crf"],
            spread["segments"][0]["vmaf"],
        )
        assert 20 <= segment["crf"] <= 55 and abs(segment["vmaf"] - 92) <= 1.0
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=10) == 0


def test_a_fixed_crf_stays_fixed_and_unmeasured(make_media, tmp_path: Path) -> None:
    """--crf (over a config whose [defaults] set a target) is the CRF every segment is
    encoded at; nothing is probed or measured."""
    source = make_media("fixed.mkv", size=(192, 108), duration=1.0)
    config = tmp_path / "config.toml"
    config.write_text("[defaults]\ntarget_vmaf = 95\n")
    run = encode(source, tmp_path / "out.mkv", "--crf", "40", config=config)
    assert run.returncode == 0, run.stderr
    (analysis,) = run.of("analysis")
    (done,) = run.of("segment_done")
    assert analysis["crf"] == 40
    assert (done["crf"], done["vmaf"], done["probes"], done["target"]) == (40, None, [], None)
    assert run.of("job_finished")[0]["summary"]["quality"] is None


def test_dolby_vision_keeps_every_rpu_through_the_search(
    ffmpeg: str, shared_media: Path, tmp_path: Path
) -> None:
    """The real profile 8.1 sample (a test picture laid over it, RPUs kept by x265): every
    probe and final is the Dolby Vision encoder's, so the output has an RPU on every frame."""
    from test_dolby_vision import dovi_record, frame_side_data, make_dv

    source = make_dv(ffmpeg, shared_media / "dv-p81-regular.mkv", tmp_path / "dv.mkv")
    output = tmp_path / "out.mkv"
    run = encode(
        source, output, "--target-vmaf", "90", "--crf-range", "20-55",
        "--min-segment", "3", "--max-segment", "6",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.of("analysis")[0]["encoder"] == "svt-av1 dolby-vision"
    done = run.of("segment_done")
    assert len(done) >= 2 and all(e["vmaf"] is not None for e in done), done
    assert all(len(e["probes"]) >= 2 for e in done)
    assert dovi_record(ffmpeg, output) == (10, 1)
    frames, with_rpu, _, _ = frame_side_data(output)
    assert (frames, with_rpu) == (259, 259)


def test_the_flag_off_encodes_at_the_fixed_crf_and_says_so(make_media, tmp_path: Path) -> None:
    source = make_media("flag.mkv", size=(192, 108), duration=1.0)
    run = encode(
        source, tmp_path / "out.mkv", "--target-vmaf", "90", "--flag", "target_quality=off"
    )
    assert run.returncode == 0, run.stderr
    (analysis,) = run.of("analysis")
    (done,) = run.of("segment_done")
    assert (done["crf"], done["vmaf"], done["probes"]) == (analysis["crf"], None, [])
    (warning,) = [w for w in run.of("warning") if "target_quality flag is off" in w["message"]]
    assert f"encoded at CRF {analysis['crf']}" in warning["message"]


def test_the_first_final_goes_where_the_jobs_learned_offset_says(
    make_media, ffmpeg: str, tmp_path: Path
) -> None:
    """A segment whose probes an earlier run measured: its first final, a real encode,
    runs at the CRF of the probes' line shifted by the job's learned offset."""
    from drapto_engine.infrastructure.ffmpeg.runner import run_checked
    from drapto_engine.services.encoding.svt import encoder_for
    from drapto_engine.services.quality.runner import Machine, reach_target
    from drapto_engine.services.quality.search import Target

    source = make_media("one scene.mkv", size=(192, 108), duration=1.0, source="testsrc2")
    plan = VideoPlan.make(
        ffmpeg, asyncio.run(analyze_video(source, ffmpeg)), EncodeSettings(preset=12)
    )
    segment = Segment(index=0, start_frame=0, end_frame=25, start_s=0.0, end_s=1.0)
    ran: list[list[str]] = []

    def argv_at(crf: int, preset: int, output: Path) -> list[str]:
        at = dataclasses.replace(plan, crf=crf, preset=preset)
        return encoder_for(at).segment_argv(at, segment, output, 1)

    async def run(argv: list[str]) -> None:
        ran.append(argv)
        await run_checked(argv, "segment 0 encode", source)

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    outcome = asyncio.run(
        reach_target(
            Target(93.0, 15, 50, offset=1.2),
            preset=12,
            fallback_crf=30,
            frames=25,
            machine=Machine(argv_at, run, 1, source),
            output=tmp_path / "seg.mp4",
            scratch=scratch,
            known_probes=[(30, 95.0), (40, 91.0)],  # 93 at CRF 35; less 1.2: at CRF 38
        )
    )
    first = ran[0]
    assert first[first.index("-crf") + 1] == "38"
    assert outcome.vmaf is not None and (tmp_path / "seg.mp4").is_file()


def test_a_later_segment_uses_what_the_earlier_finals_learned(make_media, tmp_path: Path) -> None:
    """One segment at a time: the second segment is probed first at the CRF the first
    segment was kept at, and its first final is placed with the offset the first
    segment's kept final showed against its probes' line (its run log says)."""
    from drapto_engine.infrastructure.paths import log_dir
    from drapto_engine.services.quality.search import residual

    source = make_media("one scene.mkv", size=(192, 108), duration=2.0, source="testsrc2")
    run = encode(
        source, tmp_path / "out.mkv", "--target-vmaf", "92", "--crf-range", "20-55",
        "--min-segment", "1", "--max-segment", "1", "--workers", "1",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    first, second = sorted(run.of("segment_done"), key=lambda e: e["index"])
    assert first["target"] in ("met", "missed") and second["target"] in ("met", "missed")
    assert first["probes"][0][0] == (20 + 55) // 2  # nothing learned yet: the middle
    assert second["probes"][0][0] == first["crf"]
    learned = residual([tuple(p) for p in first["probes"]], first["crf"], first["vmaf"])
    assert learned is not None and abs(learned) > 0.0005
    log = max(log_dir().glob("drapto-*.log"), key=lambda p: p.stat().st_mtime_ns)  # this run's
    shifts = [
        line.rsplit(" ", 1)[1] for line in log.read_text().splitlines() if "first final at" in line
    ]
    assert shifts == ["+0.000", f"{learned:+.3f}"]
