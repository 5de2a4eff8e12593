"""Safety nets, each proved end to end on real runs: break the net and its test fails.

- an output that fails validation is never put in place (the job fails, nothing renamed);
- a damaged finished segment is encoded again on resume, not reused;
- the source is never written, not even by a SIGKILLed run, and an output that names
  the input (directly, through `./`, through a symlink) is refused;
- closing the segment stream stops the scene scan's decoder;
- the encode settings reach SVT-AV1, as SVT-AV1 itself reports them.
"""

from __future__ import annotations

import ast
import asyncio
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from encode_helpers import DRAPTO, FAST, encode, ffmpeg_processes_touching, inspect, parse_events
from forked import run_forked, warm_imports
from mediagen import Cut, MakeMedia

from drapto_engine.config import Config
from drapto_engine.core.models import DEFAULTS
from drapto_engine.engine import Engine
from drapto_engine.infrastructure.workers import cpu_count, threads_per_worker
from drapto_engine.server.server import EngineServer
from drapto_engine.services.encoding.svt import SEGMENT_SUFFIX
from drapto_engine.services.outputs import partial_name
from drapto_engine.services.segmentation import scenes as scenes_module
from drapto_engine.services.segmentation import stream_segments
from drapto_engine.services.segmentation.scenes import DECODER as SCAN_DECODER

pytestmark = pytest.mark.slow

SABOTAGE = Path(__file__).with_name("sabotage.py")
SEGMENTING = ["--min-segment", "0.5", "--max-segment", "1", "--workers", "1"]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def one_line_error(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


# -- an output that fails validation is never renamed into place --


def test_an_output_that_fails_validation_fails_the_job_and_is_never_renamed(
    make_media: MakeMedia, tmp_path: Path
) -> None:
    """Every finished segment is swapped for a shorter real AV1 file before the join: the
    joined output lacks frames, so validation must fail it, the segmented rollback's
    whole-file run too, and nothing may appear under the output's name."""
    source = make_media("s.mkv", size=(160, 90), duration=3, gop=25, audio=["stereo"])
    before = sha256(source)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    output = out_dir / "s.av1.mkv"
    done = subprocess.run(
        [
            sys.executable,
            str(SABOTAGE),
            "shorten",
            "encode",
            str(source),
            "-o",
            str(output),
            *FAST,
            "--min-segment",
            "1",
            "--max-segment",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    events = parse_events(done.stdout)
    assert done.returncode == 1, done.stderr
    error = one_line_error(done.stderr)
    assert "validation failed" in error and "video frames, source has 75" in error
    kinds = [e["type"] for e in events]
    assert "rollback" in kinds and kinds[-1] == "job_failed"
    assert events[-1]["stage"] == "validating"
    assert list(out_dir.iterdir()) == [], "a partial or unvalidated output was left"
    assert not partial_name(output).exists()
    assert sha256(source) == before


# -- a damaged finished segment is not reused --


def _start(source: Path, output: Path, state: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            *DRAPTO,
            "encode",
            str(source),
            "-o",
            str(output),
            *FAST,
            *SEGMENTING,
            "--preset",
            "10",
            "--state-dir",
            str(state),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _first_done_segment(proc: subprocess.Popen[str]) -> dict[str, Any]:
    assert proc.stdout is not None
    for line in proc.stdout:
        event = json.loads(line)
        if event["type"] == "segment_done":
            return event
    raise AssertionError("the encode ended before a segment was done")


def _kill(proc: subprocess.Popen[str], folder: Path) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)
    deadline = time.monotonic() + 10
    while ffmpeg_processes_touching(folder) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ffmpeg_processes_touching(folder) == [], "ffmpeg children outlived drapto"


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_a_damaged_finished_segment_is_encoded_again_on_resume(
    make_media: MakeMedia, tmp_path: Path, damage: str
) -> None:
    source = make_media("s.mkv", size=(160, 90), duration=4, gop=25)
    before = sha256(source)
    out_dir, state = tmp_path / "out", tmp_path / "state"
    out_dir.mkdir()
    output = out_dir / "s.av1.mkv"
    proc = _start(source, output, state)
    done = _first_done_segment(proc)
    _kill(proc, tmp_path)
    assert sha256(source) == before, "a SIGKILLed run changed the source"
    [work] = out_dir.glob(".drapto-work-*")
    segment = work / f"segment-{done['index']:05d}{SEGMENT_SUFFIX}"
    assert segment.stat().st_size == done["size_bytes"]
    if damage == "truncate":
        os.truncate(segment, segment.stat().st_size // 2)
    else:
        segment.unlink()

    run = encode(source, output, *SEGMENTING, "--preset", "10", "--state-dir", str(state))
    assert run.returncode == 0, run.stderr
    assert run.of("rollback") == [], "the damaged segment reached the join"
    again = [e for e in run.of("segment_done") if e["index"] == done["index"]]
    assert [e["resumed"] for e in again] == [False], "the damaged segment was reused"
    assert done["index"] in {e["index"] for e in run.of("segment_started")}
    assert inspect(output).frames_decoded == 100  # the source's frame count
    assert sorted(p.name for p in out_dir.iterdir()) == [output.name]
    assert sha256(source) == before


# -- the source is never written; an output naming the input is refused --


@pytest.mark.parametrize("spelling", ["same", "dot-slash", "symlink"])
def test_an_output_that_names_the_input_is_refused(
    tiny_video: Path, tmp_path: Path, spelling: str
) -> None:
    source = tmp_path / "s.mkv"  # a real 64x64 1 s video (conftest.py)
    shutil.copyfile(tiny_video, source)
    before, inode = sha256(source), source.stat().st_ino
    output = {
        "same": str(source),
        "dot-slash": "./s.mkv",
        "symlink": str(tmp_path / "link.mkv"),
    }[spelling]
    if spelling == "symlink":
        (tmp_path / "link.mkv").symlink_to(source)
    warm_imports()  # forked (forked.py): a real process without a fresh interpreter's imports
    argv = ["encode", "s.mkv", "-o", output, "--overwrite", *FAST]
    done = run_forked(argv, tmp_path, dict(os.environ), timeout=60)
    assert done.returncode == 2, done.stderr  # an -o naming the input is a usage error
    assert "would overwrite the input" in one_line_error(done.stderr)
    assert not any(e["type"] == "segment_started" for e in parse_events(done.stdout))
    assert sha256(source) == before and source.stat().st_ino == inode
    if spelling == "symlink":
        assert (tmp_path / "link.mkv").is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["s.mkv", *(["link.mkv"] if spelling == "symlink" else [])]
    )


# -- closing the segment stream stops the scene scan --


SLOW_DECODER = Path(__file__).with_name("slow_luma.py")


def _scan_processes(source: Path, decoder: Path = SCAN_DECODER) -> list[psutil.Process]:
    return [
        p
        for p in psutil.process_iter(["cmdline"])
        if str(decoder) in (p.info["cmdline"] or []) and str(source) in (p.info["cmdline"] or [])
    ]


async def test_closing_the_segment_stream_kills_the_scene_scan(
    ffmpeg: str, make_media: MakeMedia, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scan is stopped (SIGSTOP) once the first segment is out, as a slow decode of a
    long film would still be running; closing the stream must leave no decoder behind.
    The decoder child runs at a film's pace (slow_luma.py): this file alone would be
    decoded before the first segment is out."""
    monkeypatch.setattr(scenes_module, "DECODER", SLOW_DECODER)
    scenes = [Cut(1.5, "testsrc2"), Cut(1.5, "smptebars"), Cut(1.5, "mandelbrot")] * 4
    source = make_media("many.mkv", size=(160, 90), cuts=scenes)
    stream = stream_segments(source, min_s=1.0, max_s=5.0)
    first = await anext(stream)
    scans = _scan_processes(source, SLOW_DECODER)
    assert len(scans) == 1, "the scan should still be running after the first segment"
    scan = scans[0]
    scan.suspend()
    try:
        await asyncio.wait_for(stream.aclose(), 20)
        assert not scan.is_running(), "the scan's decoder outlived the closed stream"
    finally:
        if scan.is_running():
            scan.kill()
    assert first.start_frame == 0


# -- the encode settings reach SVT-AV1 --


def _encoder_argvs(debug_log: str) -> list[list[str]]:
    """Every ffmpeg command line drapto ran, as it logs them with --debug."""
    found = []
    for line in debug_log.splitlines():
        if " run: [" in line:
            argv = ast.literal_eval(line.split(" run: ", 1)[1])
            if "libsvtav1" in argv:
                found.append(argv)
    return found


def _svt_report(argv: list[str], output: Path) -> str:
    """SVT-AV1's own account of its configuration, from the very argv drapto ran."""
    rerun = [*argv[:-1], str(output)]
    done = subprocess.run(
        rerun,
        env={**os.environ, "SVT_LOG": "3"},  # info: the configuration SVT-AV1 settled on
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stderr


@pytest.fixture(scope="module")
def default_encode(tmp_path_factory: pytest.TempPathFactory, ffmpeg: str) -> Iterator[Any]:
    from mediagen import make_video

    folder = tmp_path_factory.mktemp("svt")
    source = make_video(ffmpeg, folder / "s.mkv", size=(160, 90), duration=2, gop=25)
    output = folder / "s.av1.mkv"
    done = subprocess.run(
        [
            *DRAPTO,
            "--debug",
            "encode",
            str(source),
            "-o",
            str(output),
            "--progress",
            "json",
            "--workers",
            "2",
            "--min-segment",
            "0.5",
            "--max-segment",
            "1",
            "--flag",
            "tail_threads=off",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    yield folder, _encoder_argvs(done.stderr)


def test_default_settings_reach_svt_av1_as_it_reports_them(default_encode: Any) -> None:
    folder, argvs = default_encode
    assert len(argvs) >= 2, "expected a segmented encode"
    lp = threads_per_worker(2, cpu_count())
    for n, argv in enumerate(argvs):
        report = _svt_report(argv, folder / f"rerun-{n}.mkv")
        config = {
            key.strip(): value.strip()
            for key, value in re.findall(r"SVT \[config\]: ([^:\n]+?)\s*:\s*([^\n]+)", report)
        }
        preset, tune, _ = (v.strip() for v in config["preset / tune / pred struct"].split("/"))
        assert preset == str(DEFAULTS.preset) == "6"
        assert tune == "VQ"  # tune=0
        assert config["bit-depth / color format"].replace(" ", "") == "10/YUV420"
        assert config["AQ mode / Variance Boost"].replace(" ", "").endswith("/0")
        assert config["AC Bias Strength"] == "0.10"
        gop = int(config["gop size / mini-gop size / key-frame type"].split("/")[0])
        assert gop == 10 * 25 + 1  # keyint=10s at 25 fps
        rate = config["BRC mode / rate factor"].replace(" ", "")
        assert rate.startswith("CRF/") and float(rate[4:]) == DEFAULTS.crf_sd
        assert re.search(rf"Level of Parallelism: {lp}\n", report), report


# -- the engine service refuses another user --

CLIENT = """
import asyncio, sys
from pathlib import Path
from drapto_engine.core.errors import DraptoError
from drapto_engine.server.client import EngineClient, _hello

async def main() -> int:
    path = Path(sys.argv[1])
    try:
        if sys.argv[2:] == ["raw"]:  # a client that skips drapto's own checks
            reader, writer = await asyncio.open_unix_connection(str(path))
            await _hello(reader, writer, "other-user", path)
        client = await EngineClient.connect(path, client_name="other-user")
    except DraptoError as exc:
        print(exc.problem)
        return 1
    snapshot = await client.get_snapshot()
    print("served", snapshot.workers)
    await client.close()
    return 0

sys.exit(asyncio.run(main()))
"""
AS_NOBODY = [
    "setpriv",
    "--reuid=nobody",
    "--regid=nogroup",
    "--clear-groups",
    # read and search only (to reach this interpreter under /root): connecting still
    # needs the socket's own mode, which the test opens up below
    "--inh-caps=+dac_read_search",
    "--ambient-caps=+dac_read_search",
]


async def _client(*prefix: str, socket_path: Path, raw: bool = False) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *prefix,
        sys.executable,
        "-c",
        CLIENT,
        str(socket_path),
        *(["raw"] if raw else []),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


@pytest.mark.skipif(os.geteuid() != 0, reason="running a client as another user needs root")
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) is missing")
async def test_a_client_run_by_another_user_is_refused(tmp_path: Path, ffmpeg: str) -> None:
    folder = Path(tempfile.mkdtemp(prefix="drn-", dir="/tmp"))  # short socket path
    engine = Engine(
        ffmpeg,
        config=Config(),
        state_dir=tmp_path / "state",
        config_path=tmp_path / "config" / "config.toml",
        workers=2,
    )
    server = EngineServer(engine, folder / "engine.sock")
    await engine.start()
    await server.start()
    try:
        os.chmod(folder, 0o711)
        os.chmod(server.socket_path, 0o666)  # another user may connect; only the uid check stops it
        code, out = await _client(socket_path=server.socket_path)
        assert (code, out.strip()) == (0, "served 2"), out  # the same client, as the owner
        code, out = await _client(*AS_NOBODY, socket_path=server.socket_path)
        assert code == 1, out  # drapto's client does not trust another user's engine
        assert out.strip() == (
            f"refusing the engine socket {server.socket_path}: its folder {folder} is owned"
            f" by uid {os.getuid()}, not you"
        ), out
        code, out = await _client(*AS_NOBODY, socket_path=server.socket_path, raw=True)
        assert code == 1, out  # and the engine does not serve another user's client
        # the reason itself, not a reset connection ("Connection lost")
        assert out.strip() == (
            f"the engine refused the connection: refused: this engine serves uid {os.getuid()} only"
        ), out
        code, out = await _client(socket_path=server.socket_path)  # still serving its owner
        assert (code, out.strip()) == (0, "served 2"), out
    finally:
        await engine.stop()
        await server.close()
        engine.close()
        shutil.rmtree(folder, ignore_errors=True)
